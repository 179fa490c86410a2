"""Tina's small CNN (the "2-layer CNN, ~5K parameters" of the model card; paper sheet section 2).

The Tina code's `ConvNet`: Conv(3->16, 3x3, stride 2, no bias) -> ReLU -> Conv(16->32, 3x3, no bias) -> ReLU ->
global average pooling -> Linear(32 -> classes); 5,370 parameters for 10 classes ([Tina-repo
`data_gen/train_cifar10.py`], counted in the sheet). Widths are configurable; `embed` gives the pooled features and
`classifier` the head, as in `repro.common.nets.ConvNet`.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class TinaCNN(nn.Module):
    def __init__(self, num_classes: int, widths: tuple[int, int] = (16, 32), channel: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(channel, widths[0], 3, stride=2, bias=False)
        self.conv2 = nn.Conv2d(widths[0], widths[1], 3, bias=False)
        self.num_feat = widths[1]
        self.classifier = nn.Linear(widths[1], num_classes)

    def embed(self, x: Tensor) -> Tensor:
        x = F.relu(self.conv2(F.relu(self.conv1(x))))
        return x.mean(dim=(2, 3))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.embed(x))
