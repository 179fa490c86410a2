"""Small image classifiers shared by the papers, with a functional forward pass over one flat parameter vector.

`ConvNet` is the ConvNet-D{depth} of the dataset-distillation literature (DC/DSA/MTT/DATM/AutoPalette): `depth`
blocks of [3x3 conv (width filters) -> norm -> ReLU -> 2x2 average pooling], then one linear classifier.
"instancenorm" is a GroupNorm with one group per channel and affine parameters, as the MTT code builds it
(mtt-distillation `networks.py`, `ConvNet._get_normlayer`); AutoPalette uses depth 3 and width 128 on 32x32 images
and depth 5 on 128x128 ImageNet subsets (paper sheet autopalette.md, section 2).

Trajectory matching differentiates through many SGD steps of a student network, so the student's parameters are
one flat tensor that each step replaces (theta <- theta - lr * grad). `ConvNet.forward_flat(flat, x)` runs the
network with weights that are *views* into `flat` (no copy); `flatten_params` / `load_flat` convert between the
module's parameters and that vector; `functional_forward` does the same for any module via `torch.func`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NORMS = ("instancenorm", "batchnorm", "none")
POOLINGS = ("avgpool", "maxpool", "none")


class ConvNet(nn.Module):
    """ConvNet-D`depth` with `width` filters per layer.

    Parameters are registered in a fixed order (conv weight, conv bias, norm weight, norm bias per block, then the
    classifier weight and bias); `forward_flat` relies on that order.
    """

    def __init__(self, channel: int, num_classes: int, width: int = 128, depth: int = 3,
                 norm: str = "instancenorm", pooling: str = "avgpool", im_size: Sequence[int] = (32, 32)):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"ConvNet norm '{norm}' unknown; use one of {NORMS}")
        if pooling not in POOLINGS:
            raise ValueError(f"ConvNet pooling '{pooling}' unknown; use one of {POOLINGS}")
        self.channel, self.num_classes, self.width, self.depth = channel, num_classes, width, depth
        self.norm, self.pooling, self.im_size = norm, pooling, tuple(int(s) for s in im_size)
        h, w = self.im_size
        blocks: list[nn.Module] = []
        in_ch = channel
        for d in range(depth):
            # MTT pads the first layer of 1-channel (28x28 MNIST-like) inputs by 3 so the maps stay divisible.
            pad = 3 if channel == 1 and d == 0 else 1
            layers: list[nn.Module] = [nn.Conv2d(in_ch, width, 3, padding=pad)]
            h, w = h + 2 * pad - 2, w + 2 * pad - 2
            if norm == "instancenorm":
                layers.append(nn.GroupNorm(width, width, affine=True))
            elif norm == "batchnorm":
                layers.append(nn.BatchNorm2d(width))
            layers.append(nn.ReLU(inplace=False))
            if pooling != "none":
                layers.append(nn.AvgPool2d(2, 2) if pooling == "avgpool" else nn.MaxPool2d(2, 2))
                h, w = h // 2, w // 2
            blocks.append(nn.Sequential(*layers))
            in_ch = width
        if h < 1 or w < 1:
            raise ValueError(f"ConvNet depth {depth} pools a {self.im_size} image below 1x1; use a smaller depth")
        self.features = nn.Sequential(*blocks)
        self.num_feat = width * h * w
        self.classifier = nn.Linear(self.num_feat, num_classes)
        self._pads = [3 if channel == 1 and d == 0 else 1 for d in range(depth)]

    def embed(self, x: Tensor) -> Tensor:
        """The flattened features fed to the classifier."""
        return self.features(x).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.embed(x))

    # -- functional pass over a flat parameter vector -------------------------------------------------------------
    def param_shapes(self) -> list[torch.Size]:
        return [p.shape for p in self.parameters()]

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward_flat(self, flat: Tensor, x: Tensor) -> Tensor:
        """Run the network with parameters taken (as views, without copying) from the 1-D tensor `flat`.

        Differentiable in `flat` and `x`; BatchNorm uses batch statistics (no running buffers are touched).
        """
        views = unflatten(flat, self.param_shapes())
        i = 0
        for d in range(self.depth):
            x = F.conv2d(x, views[i], views[i + 1], padding=self._pads[d])
            i += 2
            if self.norm == "instancenorm":
                x = F.group_norm(x, self.width, views[i], views[i + 1])
                i += 2
            elif self.norm == "batchnorm":
                x = F.batch_norm(x, None, None, views[i], views[i + 1], training=True)
                i += 2
            x = F.relu(x)
            if self.pooling == "avgpool":
                x = F.avg_pool2d(x, 2, 2)
            elif self.pooling == "maxpool":
                x = F.max_pool2d(x, 2, 2)
        return F.linear(x.flatten(1), views[i], views[i + 1])


def convnet_d(depth: int, channel: int, num_classes: int, im_size: Sequence[int], width: int = 128,
              norm: str = "instancenorm", pooling: str = "avgpool") -> ConvNet:
    """ConvNetD3 for 32x32 inputs, ConvNetD4 for 64x64, ConvNetD5 for 128x128 (AutoPalette App. A.2)."""
    return ConvNet(channel, num_classes, width=width, depth=depth, norm=norm, pooling=pooling, im_size=im_size)


class VGG11(nn.Module):
    """VGG-11 of the dataset-distillation code (`get_network('VGG11')`: DC/MTT/DATM/AutoPalette `networks.py`, class
    `VGG` with cfg [64, M, 128, M, 256, 256, M, 512, 512, M, 512, 512, M]): every 3x3 conv (padding 1) is followed by
    an instance norm (GroupNorm with one group per channel, affine) and a ReLU; five 2x2 max pools take 32x32 to
    1x1; one linear classifier on the 512 features. `norm="batchnorm"` gives their `VGG11BN`."""

    CFG = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")

    def __init__(self, channel: int, num_classes: int, norm: str = "instancenorm",
                 im_size: Sequence[int] = (32, 32)):
        super().__init__()
        if norm not in ("instancenorm", "batchnorm"):
            raise ValueError(f"VGG11 norm '{norm}' unknown; use instancenorm or batchnorm")
        layers: list[nn.Module] = []
        in_ch, h, w = channel, *(int(s) for s in im_size)
        for i, v in enumerate(self.CFG):
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
                h, w = h // 2, w // 2
                continue
            pad = 3 if channel == 1 and i == 0 else 1
            layers += [nn.Conv2d(in_ch, v, 3, padding=pad),
                       nn.GroupNorm(v, v, affine=True) if norm == "instancenorm" else nn.BatchNorm2d(v),
                       nn.ReLU(inplace=False)]
            h, w = h + 2 * pad - 2, w + 2 * pad - 2
            in_ch = v
        if h < 1 or w < 1:
            raise ValueError(f"VGG11 pools a {tuple(im_size)} image below 1x1; it needs at least 32x32")
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(512 * h * w, num_classes)

    def embed(self, x: Tensor) -> Tensor:
        return self.features(x).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.embed(x))


class AlexNet(nn.Module):
    """The AlexNet of the dataset-distillation code (`get_network('AlexNet')`, same `networks.py`): no norm layers;
    5x5 conv 128 (padding 2) -> ReLU -> max pool, 5x5 conv 192 (padding 2) -> ReLU -> max pool, 3x3 convs 256, 192,
    192 (padding 1) with ReLUs -> max pool, one linear classifier on 192 x 4 x 4 features at 32x32."""

    def __init__(self, channel: int, num_classes: int, im_size: Sequence[int] = (32, 32)):
        super().__init__()
        h, w = (int(s) for s in im_size)
        self.features = nn.Sequential(
            nn.Conv2d(channel, 128, 5, stride=1, padding=4 if channel == 1 else 2), nn.ReLU(inplace=False),
            nn.MaxPool2d(2, 2),
            nn.Conv2d(128, 192, 5, padding=2), nn.ReLU(inplace=False), nn.MaxPool2d(2, 2),
            nn.Conv2d(192, 256, 3, padding=1), nn.ReLU(inplace=False),
            nn.Conv2d(256, 192, 3, padding=1), nn.ReLU(inplace=False),
            nn.Conv2d(192, 192, 3, padding=1), nn.ReLU(inplace=False), nn.MaxPool2d(2, 2),
        )
        if channel == 1:
            h, w = h + 4, w + 4
        self.classifier = nn.Linear(192 * (h // 8) * (w // 8), num_classes)

    def embed(self, x: Tensor) -> Tensor:
        return self.features(x).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.embed(x))


def _norm2d(norm: str, ch: int) -> nn.Module:
    """Instance norm as the distillation code builds it (GroupNorm, one group per channel, affine) or BatchNorm."""
    return nn.GroupNorm(ch, ch, affine=True) if norm == "instancenorm" else nn.BatchNorm2d(ch)


class BasicBlock(nn.Module):
    """The two-conv residual block of ResNet18: 3x3 conv (stride `stride`, no bias) -> norm -> ReLU -> 3x3 conv
    (no bias) -> norm, plus the shortcut, then ReLU. The shortcut is the identity, or -- where the block changes
    the stride or the width -- a 1x1 conv (same stride, no bias) followed by a norm."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, norm: str):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.norm1 = _norm2d(norm, out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, stride=1, padding=1, bias=False)
        self.norm2 = _norm2d(norm, out_ch)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False),
                                          _norm2d(norm, out_ch))

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """The ResNet18 of the dataset-distillation code (`get_network('ResNet18')`: DC/MTT/DATM/AutoPalette
    `networks.py`, `ResNet(BasicBlock, [2, 2, 2, 2])` with its default norm, instance norm), the CIFAR form of
    ResNet-18: a 3x3 stem conv (64 filters, stride 1, no bias) -> norm -> ReLU with no max pool; four stages of two
    `BasicBlock`s with widths 64, 128, 256, 512 and first-block strides 1, 2, 2, 2 (32x32 -> 32, 16, 8, 4); a 4x4
    average pool (their `F.avg_pool2d(out, 4)`) and one linear classifier on the 512 features. `norm="batchnorm"`
    gives their `ResNet18BN`. Their `ResNet18_Tiny` (a stride-2 stem for 64x64) is not built here.

    The pool has a fixed 4x4 window before a 512-wide classifier, as theirs, so the input must reach 4x4 after the
    three stride-2 stages (32x32 or 28x28 inputs); any other size is refused rather than silently pooled."""

    WIDTHS = (64, 128, 256, 512)
    STRIDES = (1, 2, 2, 2)

    def __init__(self, channel: int, num_classes: int, norm: str = "instancenorm",
                 im_size: Sequence[int] = (32, 32)):
        super().__init__()
        if norm not in ("instancenorm", "batchnorm"):
            raise ValueError(f"ResNet18 norm '{norm}' unknown; use instancenorm or batchnorm")
        h, w = (int(s) for s in im_size)
        for stride in self.STRIDES[1:]:                       # 3x3, padding 1, stride 2: ceil(h / 2)
            h, w = (h - 1) // stride + 1, (w - 1) // stride + 1
        if (h, w) != (4, 4):
            raise ValueError(f"ResNet18 (the distillation code's: a 4x4 average pool before a 512-wide classifier) "
                             f"needs inputs that reach 4x4 after three stride-2 stages, e.g. 32x32; "
                             f"got {tuple(im_size)} -> {h}x{w}; resize the images to 32x32")
        self.stem = nn.Sequential(nn.Conv2d(channel, 64, 3, stride=1, padding=1, bias=False), _norm2d(norm, 64),
                                  nn.ReLU(inplace=False))
        stages: list[nn.Module] = []
        in_ch = 64
        for width, stride in zip(self.WIDTHS, self.STRIDES):
            stages.append(nn.Sequential(BasicBlock(in_ch, width, stride, norm), BasicBlock(width, width, 1, norm)))
            in_ch = width
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.classifier = nn.Linear(512, num_classes)

    def embed(self, x: Tensor) -> Tensor:
        out = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
        return F.avg_pool2d(out, 4).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.embed(x))


ARCHITECTURES = ("ConvNet", "VGG11", "AlexNet", "ResNet18")


def make_architecture(name: str, channel: int, num_classes: int, im_size: Sequence[int], *, width: int = 128,
                      depth: int = 3, norm: str = "instancenorm", pooling: str = "avgpool") -> nn.Module:
    """A network by its `get_network` name in the distillation code: "ConvNet" (ConvNet-D`depth`, the other
    keywords apply), "VGG11" (instance norm), "AlexNet" (no norm), "ResNet18" (instance norm) -- the
    cross-architecture nets of AutoPalette Table 6 (App. A.4)."""
    if name == "ConvNet":
        return ConvNet(channel, num_classes, width=width, depth=depth, norm=norm, pooling=pooling, im_size=im_size)
    if name == "VGG11":
        return VGG11(channel, num_classes, im_size=im_size)
    if name == "AlexNet":
        return AlexNet(channel, num_classes, im_size=im_size)
    if name == "ResNet18":
        return ResNet18(channel, num_classes, im_size=im_size)
    raise ValueError(f"unknown architecture '{name}'; use one of {ARCHITECTURES}")


def depth_for_resolution(res: int) -> int:
    """The depth the distillation literature pairs with a resolution: 32 -> 3, 64 -> 4, 128 -> 5."""
    return max(1, int(round(math.log2(res))) - 2)


def unflatten(flat: Tensor, shapes: Sequence[torch.Size]) -> list[Tensor]:
    """Views of `flat` shaped as `shapes` (in order); no data is copied."""
    sizes = [math.prod(s) for s in shapes]
    if flat.dim() != 1 or flat.numel() != sum(sizes):
        raise ValueError(f"flat parameter vector has shape {tuple(flat.shape)}, expected ({sum(sizes)},)")
    return [chunk.view(s) for chunk, s in zip(torch.split(flat, sizes), shapes)]


def flatten_params(module: nn.Module) -> Tensor:
    """All parameters of `module` concatenated (a detached copy) in registration order."""
    return torch.cat([p.detach().reshape(-1) for p in module.parameters()])


@torch.no_grad()
def load_flat(module: nn.Module, flat: Tensor) -> nn.Module:
    """Copy a flat vector (as made by `flatten_params`) into `module`'s parameters."""
    for p, v in zip(module.parameters(), unflatten(flat.to(next(module.parameters()).device),
                                                    [p.shape for p in module.parameters()])):
        p.copy_(v)
    return module


def functional_forward(module: nn.Module, flat: Tensor, x: Tensor) -> Tensor:
    """`module(x)` with its parameters replaced by views of `flat` (generic, via `torch.func.functional_call`)."""
    names = [n for n, _ in module.named_parameters()]
    views = unflatten(flat, [p.shape for p in module.parameters()])
    return torch.func.functional_call(module, dict(zip(names, views)), (x,))
