"""Li & Yan (NeurIPS 2024, arXiv 2405.14861): DDPM-type samplers adapt to unknown low-dimensional structure
only with the right coefficient design. Exact (Gaussian on a subspace) and curved (empirical manifold) tiers."""
