"""Cross-architecture nets of AutoPalette Table 6 (App. A.4): VGG11, AlexNet and ResNet18 as the distillation code
builds them (`get_network('VGG11')`, `get_network('AlexNet')`, `get_network('ResNet18')` in NUS-HPC-AI-Lab/DATM
`networks.py` @ bdb24b31; KeViNYuAn0314/AutoPalette `networks.py` @ 19893013 has the same classes). Parameter counts
at 32x32 are worked out here by hand from the layer shapes."""

import pytest
import torch

from repro.common.nets import AlexNet, ResNet18, VGG11, make_architecture


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


def resnet18_params(num_classes: int) -> int:
    # ResNet(BasicBlock, [2, 2, 2, 2]), norm 'instancenorm' (their default): every conv is bias-free and followed by
    # an affine GroupNorm(C, C) (2 x C parameters). Stem: 3x3 3->64. Stage s (widths 64, 128, 256, 512): block 1 is
    # 3x3 in->out, 3x3 out->out, and (stages 2-4, where stride 2 and the width changes) a 1x1 in->out shortcut conv
    # with its norm; block 2 is two 3x3 out->out. 4x4 average pool at 32x32 -> 512 features -> linear to C.
    def conv_nb(cin: int, cout: int, k: int) -> int:
        return cout * cin * k * k + 2 * cout   # bias-free conv + its norm

    total = conv_nb(3, 64, 3)
    for cin, cout in [(64, 64), (64, 128), (128, 256), (256, 512)]:
        total += conv_nb(cin, cout, 3) + conv_nb(cout, cout, 3)                    # block 1
        total += conv_nb(cin, cout, 1) if cin != cout else 0                        # projection shortcut
        total += 2 * conv_nb(cout, cout, 3)                                         # block 2
    return total + 512 * num_classes + num_classes


def test_hand_counts_are_the_expected_numbers():
    # the sums written out: VGG11 1,792+128 + 73,856+256 + 295,168+512 + 590,080+512 + 1,180,160+1,024
    # + 3 x (2,359,808+1,024) + 5,130 = 9,231,114; AlexNet 9,728 + 614,592 + 442,624 + 442,560 + 331,968 + 30,730
    assert vgg11_params(10) == 9_231_114
    assert alexnet_params(10) == 1_872_202
    # ResNet18: stem 1,728+128; stage 1: 4 x (36,864+128) = 147,968; stage 2: (73,728+256) + (147,456+256)
    # + (8,192+256) + 2 x (147,456+256) = 525,568; stage 3: (294,912+512) + (589,824+512) + (32,768+512)
    # + 2 x (589,824+512) = 2,099,712; stage 4: (1,179,648+1,024) + (2,359,296+1,024) + (131,072+1,024)
    # + 2 x (2,359,296+1,024) = 8,393,728; features 11,168,832; classifier 5,130 (C=10) or 51,300 (C=100)
    assert resnet18_params(10) == 11_173_962
    assert resnet18_params(100) == 11_220_132


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


@pytest.mark.parametrize("num_classes", [10, 100])
def test_resnet18_parameter_count_and_forward_shape(num_classes):
    net = ResNet18(3, num_classes)
    assert sum(p.numel() for p in net.parameters()) == resnet18_params(num_classes)
    x = torch.randn(2, 3, 32, 32)
    assert net(x).shape == (2, num_classes)
    assert net.embed(x).shape == (2, 512)


def test_resnet18_layout_norms_strides_and_shortcuts():
    net = ResNet18(3, 10)
    # instance norm (their default): one GroupNorm per conv, one group per channel -- stem 1 + 8 blocks x 2
    # + 3 projection shortcuts = 20; no BatchNorm, no conv bias, no max pool (the CIFAR stem)
    norms = [m for m in net.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert len(norms) == 20 and all(m.num_groups == m.num_channels and m.affine for m in norms)
    assert not any(isinstance(m, (torch.nn.BatchNorm2d, torch.nn.MaxPool2d)) for m in net.modules())
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 20 and all(c.bias is None for c in convs)
    stem = convs[0]
    assert (stem.kernel_size, stem.stride, stem.padding, stem.out_channels) == ((3, 3), (1, 1), (1, 1), 64)
    shortcuts = [c for c in convs if c.kernel_size == (1, 1)]
    assert [(c.in_channels, c.out_channels, c.stride) for c in shortcuts] == [
        (64, 128, (2, 2)), (128, 256, (2, 2)), (256, 512, (2, 2))]
    # the feature maps after each stage: 64x32x32, 128x16x16, 256x8x8, 512x4x4
    shapes = []
    hooks = [getattr(net, f"layer{i}").register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape[1:])))
             for i in range(1, 5)]
    net(torch.randn(1, 3, 32, 32))
    for h in hooks:
        h.remove()
    assert shapes == [(64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4)]


def test_resnet18_residual_path_and_batchnorm_variant():
    net = ResNet18(3, 10)
    block = net.layer1[0]                       # identity shortcut: zeroing the residual branch's last norm
    with torch.no_grad():                       # leaves relu(x) of a non-negative input, i.e. x itself
        block.norm2.weight.zero_()
        block.norm2.bias.zero_()
    x = torch.rand(2, 64, 32, 32)
    torch.testing.assert_close(block(x), x)
    bn = ResNet18(3, 10, norm="batchnorm")      # their ResNet18BN: the same shapes, BatchNorm in place of GroupNorm
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in bn.modules()) == 20
    assert not any(isinstance(m, torch.nn.GroupNorm) for m in bn.modules())
    assert sum(p.numel() for p in bn.parameters()) == resnet18_params(10)


def test_resnet18_refuses_inputs_its_fixed_pool_does_not_fit():
    assert ResNet18(1, 10, im_size=(28, 28))(torch.randn(1, 1, 28, 28)).shape == (1, 10)   # 28 -> 14 -> 7 -> 4
    with pytest.raises(ValueError, match="4x4 after three stride-2 stages"):
        ResNet18(3, 10, im_size=(64, 64))
    with pytest.raises(ValueError, match="norm 'layernorm' unknown"):
        ResNet18(3, 10, norm="layernorm")


def test_make_architecture_by_official_name():
    assert isinstance(make_architecture("VGG11", 3, 10, (32, 32)), VGG11)
    assert isinstance(make_architecture("AlexNet", 3, 10, (32, 32)), AlexNet)
    assert isinstance(make_architecture("ResNet18", 3, 10, (32, 32)), ResNet18)
    conv_net = make_architecture("ConvNet", 3, 10, (32, 32), width=8, depth=3)
    assert conv_net(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    with pytest.raises(ValueError, match="unknown architecture"):
        make_architecture("ResNet34", 3, 10, (32, 32))
