"""Distribution matching (Table 5's DM columns): the loss of VICO-UoE/DatasetCondensation `main_DM.py` @ 306245d
(sum over classes of the squared distance of mean embeddings) and of AutoPalette `distill/dm_quant.py` @ 1989301
(each class's term divided by the number of classes), on a fixed input worked out by hand."""

import pytest
import torch

from repro.autopalette.config import DMConfig, PaletteConfig
from repro.autopalette.data import Preprocess
from repro.autopalette.dm import distill_dm, mean_embedding_loss
from repro.common.nets import ConvNet


def test_mean_embedding_loss_by_hand():
    # class 0: real embeddings (1,2), (3,4) -> mean (2,3); synthetic (0,0) -> (0,0); ||(2,3)||^2 = 13
    # class 1: real (1,1), (1,1), (4,1) -> mean (2,1); synthetic (2,0), (0,0) -> mean (1,0); ||(1,1)||^2 = 2
    real = [torch.tensor([[1.0, 2.0], [3.0, 4.0]]), torch.tensor([[1.0, 1.0], [1.0, 1.0], [4.0, 1.0]])]
    syn = [torch.tensor([[0.0, 0.0]]), torch.tensor([[2.0, 0.0], [0.0, 0.0]])]
    assert mean_embedding_loss(real, syn).item() == pytest.approx(15.0)                   # main_DM.py: 13 + 2
    assert mean_embedding_loss(real, syn, class_mean=True).item() == pytest.approx(7.5)   # dm_quant.py: 15 / 2
    with pytest.raises(ValueError):
        mean_embedding_loss(real, syn[:1])


def test_mean_embedding_loss_gradient_by_hand():
    # d/ds of ||m_r - mean(s)||^2 for one synthetic vector s: -2 (m_r - s); m_r = (2,3), s = (0,0) -> (-4, -6)
    s = torch.zeros(1, 2, requires_grad=True)
    mean_embedding_loss([torch.tensor([[1.0, 2.0], [3.0, 4.0]])], [s]).backward()
    torch.testing.assert_close(s.grad, torch.tensor([[-4.0, -6.0]]))


@pytest.mark.parametrize("strategy", ["color", "crop", "cutout", "flip", "scale", "rotate"])
def test_siamese_draw_is_one_transform_for_batches_of_any_size(strategy):
    """DM augments a class's real batch and its synthetic batch with one DSA draw (the DSA code's Siamese mode,
    theta[:] = theta[0]): every image of both batches gets the same transform."""
    from repro.common.augment import DSA, DSAParams

    x = torch.rand(1, 3, 16, 16)
    aug = DSA(DSAParams(strategy=strategy, batch_shared=True))
    big, small = aug(x.expand(7, -1, -1, -1), seed=11), aug(x.expand(2, -1, -1, -1), seed=11)
    torch.testing.assert_close(big, big[:1].expand_as(big))
    torch.testing.assert_close(small, big[:2])
    per_sample = DSA(DSAParams(strategy=strategy))(x.expand(64, -1, -1, -1).contiguous(), seed=11)
    assert not torch.allclose(per_sample, per_sample[:1].expand_as(per_sample))   # default: per-sample draws


@pytest.mark.parametrize("with_palette", [False, True])
def test_distill_dm_moves_images_and_lowers_the_matching_loss(with_palette):
    torch.manual_seed(0)
    real = torch.randn(40, 3, 8, 8)
    real_y = torch.arange(40) % 2
    real[real_y == 1] += 1.0                                          # two separable classes
    init = torch.randn(4, 3, 8, 8)
    labels = torch.tensor([0, 0, 1, 1])
    pre = Preprocess(torch.zeros(3), torch.ones(3))
    cfg = DMConfig(iterations=30, lr_img=1.0, batch_real=20, class_mean=with_palette, siamese=not with_palette)
    palette = PaletteConfig(hidden=8, loss_images=4, gamma=0.0) if with_palette else None
    aux = (lambda pal, images, rng, gen: torch.zeros(())) if with_palette else None
    res = distill_dm(init, labels, real, real_y, lambda: ConvNet(3, 2, width=8, depth=2, im_size=(8, 8)), pre, cfg,
                     None, seed=0, palette=palette, n_colors=4, palette_aux=aux)
    assert len(res.losses) == 30 and not torch.equal(res.images, init)
    first, last = sum(res.losses[:5]) / 5, sum(res.losses[-5:]) / 5
    assert last < first, (first, last)
    assert (res.palette_net is not None) == with_palette
