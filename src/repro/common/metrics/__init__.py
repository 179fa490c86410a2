"""Metrics shared by the papers (pure functions, tested against known values and reference libraries).

- `inception`: the FID Inception-v3 via torch-fidelity (weights, pool3 conversion, batched feature extraction)
- `fidelity`: FID / KID / IS from features, `FidStats` reference statistics (made once by the `fid_stats` rule)
- `image`: PSNR and SSIM on images in [0, 1]
- `classification`: top-k accuracy
- `aggregate`: mean ± std over seeds or evaluation runs
- `likelihood`: DDPM bits/dim helpers (written with the ddpm paper)
"""
