"""ResNet-20 for 32x32 images (He et al., "Deep Residual Learning", CVPR 2016, section 4.2).

Three stages of 3 basic blocks (16, 32, 64 filters; stride 2 at the start of stages 2 and 3), global average
pooling and a linear classifier: 0.27M parameters for 10 classes. Shortcuts that change shape use the paper's
option A (identity with stride-2 subsampling and zero-padded channels, no parameters), as CIFAR ResNet-20
implementations do. Tina generates only the classifier of a ResNet-20 (650 parameters for 10 classes: 64x10 weights
plus 10 biases; paper sheet tina.md section 2), so the model exposes `embed` (the 64-d pooled features) and
`classifier` separately, like `repro.common.nets.ConvNet`.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.stride = stride
        self.pad = planes - in_planes

    def shortcut(self, x: Tensor) -> Tensor:
        if self.stride == 1 and self.pad == 0:
            return x
        x = x[:, :, ::self.stride, ::self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNetCifar(nn.Module):
    """ResNet-(6n+2) for CIFAR; n = 3 gives ResNet-20."""

    def __init__(self, num_classes: int, n: int = 3, channel: int = 3, widths: tuple[int, int, int] = (16, 32, 64)):
        super().__init__()
        self.conv1 = nn.Conv2d(channel, widths[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        layers: list[nn.Module] = []
        in_planes = widths[0]
        for stage, planes in enumerate(widths):
            for b in range(n):
                layers.append(BasicBlock(in_planes, planes, 2 if stage > 0 and b == 0 else 1))
                in_planes = planes
        self.layers = nn.Sequential(*layers)
        self.num_feat = widths[-1]
        self.classifier = nn.Linear(self.num_feat, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def embed(self, x: Tensor) -> Tensor:
        """The pooled features the classifier reads ([B, 64] for ResNet-20)."""
        x = F.relu(self.bn1(self.conv1(x)))
        return F.adaptive_avg_pool2d(self.layers(x), 1).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.embed(x))


def resnet20(num_classes: int, channel: int = 3) -> ResNetCifar:
    return ResNetCifar(num_classes, n=3, channel=channel)
