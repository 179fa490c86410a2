"""Cross-architecture nets of AutoPalette Table 6 (App. A.4): VGG11 and AlexNet as the distillation code builds them
(`get_network('VGG11')`, `get_network('AlexNet')` in NUS-HPC-AI-Lab/DATM `networks.py` @ bdb24b31, the file the
AutoPalette fork carries). Parameter counts at 32x32 are worked out here by hand from the layer shapes."""

import pytest
import torch

from repro.common.nets import AlexNet, VGG11, make_architecture


def conv(cin: int, cout: int, k: int) -> int:
    return cout * cin * k * k + cout            # weight + bias


def vgg11_params(num_classes: int) -> int:
    # [64, M, 128, M, 256, 256, M, 512, 512, M, 512, 512, M]; each conv: 3x3 with bias, then an affine instance
    # norm (2 x channels); 32 -> 1 after five pools, classifier 512 -> C.
    shapes = [(3, 64), (64, 128), (128, 256), (256, 256), (256, 512), (512, 512), (512, 512), (512, 512)]
    return sum(conv(i, o, 3) + 2 * o for i, o in shapes) + 512 * num_classes + num_classes


def alexnet_params(num_classes: int) -> int:
    # 5x5 3->128, 5x5 128->192, 3x3 192->256, 3x3 256->192, 3x3 192->192 (all with bias, no norm);
    # 32 -> 16 -> 8 -> 4 after three pools, classifier 192*4*4 -> C.
    return (conv(3, 128, 5) + conv(128, 192, 5) + conv(192, 256, 3) + conv(256, 192, 3) + conv(192, 192, 3)
            + 192 * 16 * num_classes + num_classes)


def test_hand_counts_are_the_expected_numbers():
    # the sums written out: VGG11 1,792+128 + 73,856+256 + 295,168+512 + 590,080+512 + 1,180,160+1,024
    # + 3 x (2,359,808+1,024) + 5,130 = 9,231,114; AlexNet 9,728 + 614,592 + 442,624 + 442,560 + 331,968 + 30,730
    assert vgg11_params(10) == 9_231_114
    assert alexnet_params(10) == 1_872_202


@pytest.mark.parametrize("num_classes", [10, 100])
def test_vgg11_parameter_count_and_layout(num_classes):
    net = VGG11(3, num_classes)
    assert sum(p.numel() for p in net.parameters()) == vgg11_params(num_classes)
    norms = [m for m in net.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert len(norms) == 8 and all(m.num_groups == m.num_channels for m in norms)       # instance norm
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in net.modules()) == 5
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, num_classes)
    assert net.embed(torch.randn(2, 3, 32, 32)).shape == (2, 512)


@pytest.mark.parametrize("num_classes", [10, 100])
def test_alexnet_parameter_count_and_layout(num_classes):
    net = AlexNet(3, num_classes)
    assert sum(p.numel() for p in net.parameters()) == alexnet_params(num_classes)
    assert not any(isinstance(m, (torch.nn.GroupNorm, torch.nn.BatchNorm2d)) for m in net.modules())
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, num_classes)
    assert net.embed(torch.randn(2, 3, 32, 32)).shape == (2, 192 * 4 * 4)


def test_make_architecture_by_official_name():
    assert isinstance(make_architecture("VGG11", 3, 10, (32, 32)), VGG11)
    assert isinstance(make_architecture("AlexNet", 3, 10, (32, 32)), AlexNet)
    conv_net = make_architecture("ConvNet", 3, 10, (32, 32), width=8, depth=3)
    assert conv_net(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    with pytest.raises(ValueError, match="unknown architecture"):
        make_architecture("ResNet18", 3, 10, (32, 32))
