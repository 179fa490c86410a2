"""The suite's self-check: FID and KID between two disjoint halves of one dataset split (same distribution)."""
