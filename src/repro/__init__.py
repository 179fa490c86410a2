"""repro: a reproducible benchmark and paper-replication suite for generative modelling."""

__version__ = "0.1.0"

PAPERS = ("lowdim", "ddpm", "autopalette", "tina", "strainer")
"""The papers in scope, by their short keys (DESIGN.md)."""
