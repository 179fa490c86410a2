"""Datasets for every paper: the registry, fetching (mirror first), parsers and the canonical prepared form.

Typical use in paper code::

    from repro.common.data import load_split, subset
    train = load_split(f"{data_dir}/prepared/cifar10/train.npz")
    small = subset(train, n_per_class=10, seed=0)

See `canonical` for the file format, `registry` for sources and checksums, `download` for fetching, `formats` and
`mri` for the parsers, and `cli` (`python -m repro.common.data`) for the commands the data rules run.
"""

from repro.common.data.canonical import Split, load_split, save_split, subset, subset_indices

__all__ = ["Split", "load_split", "save_split", "subset", "subset_indices"]
