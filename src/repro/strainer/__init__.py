"""STRAINER (Vyas et al., NeurIPS 2024): transferable SIREN encoders for implicit neural representations.

A SIREN's first sine layers are shared across a few training images (one linear decoder head per image) and
trained jointly; at test time the learned encoder initialises a network with a fresh head that is then fitted to an
unseen image. See `../shared/papers/strainer.md` (the paper sheet) for what is known of the paper and the code.
"""
