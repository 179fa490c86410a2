"""The released CIFAR-10 DDPM weights (EMA, step 790,000) in the PyTorch conversion of pesser/pytorch_diffusion.

The file (registry entry `ddpm_cifar10_ema`, MD5 1fa350b952534ae442b1d5235cce5cd3; ddpm sheet §6) is a plain
`state_dict` of pesser's `Model(ch=128, out_ch=3, ch_mult=(1,2,2,2), num_res_blocks=2, attn_resolutions=(16,),
dropout=0.1, resolution=32, in_channels=3)`. Our `UNet` uses the same module names, so the state dict maps one to
one; this loader checks that every key and shape matches (a wrong or truncated file fails with one message) and
returns the network and the configuration it must be sampled with: ε prediction, σ² = β_t ("fixedlarge"), T = 1000,
linear β from 1e-4 to 0.02 (pesser's `model_var_type_map` for cifar10; sheet §3, pitfall 2).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from repro.common.errors import UserError
from repro.ddpm.config import VARIANTS, DiffusionConfig, ModelConfig
from repro.ddpm.unet import UNet

RELEASED_MODEL = ModelConfig(ch=128, ch_mult=(1, 2, 2, 2), num_res_blocks=2, attn_resolutions=(16,), dropout=0.1,
                             resolution=32, in_channels=3, norm_groups=32)
RELEASED_DIFFUSION = DiffusionConfig(steps=1000, beta_start=1e-4, beta_end=0.02)
RELEASED_VARIANT = VARIANTS["eps_simple"]


def _state_dict(obj) -> dict[str, torch.Tensor]:
    """The tensors of a loaded checkpoint: a bare state dict, or one nested under a usual key."""
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj
    for key in ("ema", "state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            return _state_dict(obj[key])
    raise UserError("the released checkpoint holds no state dict of tensors; expected pesser/pytorch_diffusion's "
                    "ema_diffusion_cifar10_model/model-790000.ckpt")


def released_configs(cfg) -> tuple[ModelConfig, DiffusionConfig]:
    """The network and schedule the released row is evaluated with: the paper's (`released_net: paper`), or the
    scale's own (`released_net: scale`: a checkpoint of the same layout at another size, e.g. the smoke test's)."""
    if cfg.released_net == "scale":
        return cfg.model, cfg.diffusion
    return RELEASED_MODEL, RELEASED_DIFFUSION


def load_released(path: str | os.PathLike, map_location: str | torch.device = "cpu",
                  model_cfg: ModelConfig = RELEASED_MODEL) -> UNet:
    """Our UNet (`model_cfg`, by default the released CIFAR-10 network) with the released weights, in eval mode.
    Raises UserError on a file of another layout."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: released checkpoint not found; fetch it with the DAG (rule fetch, registry entry "
                        "ddpm_cifar10_ema) or put ema_diffusion_cifar10_model/model-790000.ckpt in the mirror")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same advice
        raise UserError(f"{path}: not a readable torch checkpoint ({err}); delete it and fetch it again") from None
    state = _state_dict(obj)
    model = UNet(model_cfg)
    ours = model.state_dict()
    missing = sorted(set(ours) - set(state))
    unexpected = sorted(set(state) - set(ours))
    wrong = sorted(k for k in set(ours) & set(state) if ours[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        detail = "; ".join(f"{name}: {keys[:4]}{' ...' if len(keys) > 4 else ''}" for name, keys in
                           (("missing", missing), ("unexpected", unexpected), ("shape mismatch", wrong)) if keys)
        raise UserError(f"{path}: does not match the DDPM CIFAR-10 U-Net ({detail}); is it the EMA CIFAR-10 "
                        "checkpoint of pesser/pytorch_diffusion?")
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model.eval()
