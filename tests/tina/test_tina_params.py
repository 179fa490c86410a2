"""Generated architectures: flat layout, loading into networks, class-order permutation, tokenisation, and the batched
per-task fine-tuning and evaluation."""

from dataclasses import replace

import pytest
import torch

from repro.tina.archs import ARCHS, Head, ParamLayout, TinaConvNet, build_generated
from repro.tina.config import load
from repro.tina.params import ScalarNormalizer, TokenLayout, build_splits
from repro.tina.train import permute_classes
from repro.tina.zoo import evaluate_models, finetune_models, initial_models, slot_positions

# Parameter counts for 10 classes, computed in the paper sheet (section 2) from aoliliao/Tina
# `data_gen/train_cifar10.py` and `data_gen/resnet_cifar.py`, `data_gen/vit.py`.
SHEET_COUNTS = {"convnet5k": 5370, "convnet10k": 14586, "convnet33k": 33338, "convnet76k": 76106,
                "resnet20_after": 650, "clip_vit_b32_after": 5130}


def _inputs(arch: str, n: int) -> torch.Tensor:
    s = ARCHS[arch]
    return torch.randn(n, 3, 32, 32) if s.whole else torch.randn(n, s.feat_dim)


@pytest.mark.parametrize("arch", list(ARCHS))
def test_every_arch_has_the_sheet_size_and_round_trips(arch):
    net = build_generated(arch, 10)
    assert sum(p.numel() for p in net.parameters()) == SHEET_COUNTS[arch]
    layout = ParamLayout.of(net)
    assert layout.numel == SHEET_COUNTS[arch] and layout.names[-2:] == ("fc.weight", "fc.bias")
    flat = layout.from_module(net)
    assert torch.equal(flat, torch.cat([v.flatten() for v in net.state_dict().values()]))  # state_dict order
    params = layout.unflatten(flat.unsqueeze(0))
    assert all(torch.equal(params[k][0], v) for k, v in net.state_dict().items())
    assert torch.equal(layout.flatten(params)[0], flat)
    other = layout.load_into(build_generated(arch, 10), flat)
    x = _inputs(arch, 3)
    assert torch.equal(other(x), net(x))
    with pytest.raises(ValueError):
        layout.unflatten(flat[:-1].unsqueeze(0))


@pytest.mark.parametrize("arch", list(ARCHS))
def test_permutation_augmentation_permutes_only_the_classifier_rows(arch):
    torch.manual_seed(0)
    k = 4
    layout = ParamLayout.for_arch(arch, k)
    nets = [build_generated(arch, k) for _ in range(2)]
    flat = torch.stack([layout.from_module(n) for n in nets])
    text = torch.randn(2, k, 6)
    mask = torch.tensor([[True, True, True, False], [True, True, True, True]])
    perm = torch.tensor([[2, 0, 3, 1], [1, 2, 3, 0]])
    pflat, ptext, pmask = permute_classes(layout, flat, text, mask, perm)
    x = _inputs(arch, 5)
    for i in range(2):
        permuted = layout.load_into(build_generated(arch, k), pflat[i])
        # Logit j of the permuted model is logit perm[j] of the original, for every input.
        assert torch.allclose(permuted(x), nets[i](x)[:, perm[i]], atol=1e-6)
        assert torch.equal(ptext[i], text[i, perm[i]]) and torch.equal(pmask[i], mask[i, perm[i]])
    before, after = layout.unflatten(flat), layout.unflatten(pflat)
    for name in layout.names:  # every other layer is untouched
        if not name.startswith("fc."):
            assert torch.equal(before[name], after[name]), name


def test_select_classes_zeroes_empty_slots():
    layout = ParamLayout.for_arch("convnet5k", 3)
    flat = torch.randn(1, layout.numel)
    out = layout.select_classes(flat, torch.tensor([[2, -1, 0]]))
    w, b = layout.head(out)
    w0, b0 = layout.head(flat)
    assert torch.equal(w[0, 0], w0[0, 2]) and torch.equal(w[0, 2], w0[0, 0]) and (w[0, 1] == 0).all()
    assert b[0].tolist() == [b0[0, 2].item(), 0.0, b0[0, 0].item()]
    assert torch.equal(out[:, :-3 - 3 * 32], flat[:, :-3 - 3 * 32])  # convs untouched


def test_tina_convnets_follow_the_code():
    """3x3 convs, padding 1, no bias, first stride 2 (aoliliao/Tina `data_gen/train_cifar10.py`)."""
    net = TinaConvNet((16, 32, 32), 10)
    assert [tuple(c.weight.shape) for c in net.convs] == [(16, 3, 3, 3), (32, 16, 3, 3), (32, 32, 3, 3)]
    assert net.convs[0].stride == (2, 2) and all(c.bias is None and c.padding == (1, 1) for c in net.convs)
    assert net.embed(torch.randn(2, 3, 32, 32)).shape == (2, 32)


@pytest.mark.parametrize("arch", ["convnet5k", "resnet20_after"])
def test_evaluated_network_takes_every_parameter_from_the_generated_vector(arch):
    """The batched evaluation runs the network on the flat vector alone: the module's own weights (here NaN) are
    never read, and the accuracy equals that of a network loaded with `load_into` and run directly."""
    torch.manual_seed(0)
    k, n_classes = 3, 6
    layout = ParamLayout.for_arch(arch, k)
    flat = torch.randn(4, layout.numel) * 0.3
    module = build_generated(arch, k)
    with torch.no_grad():
        for p in module.parameters():
            p.fill_(float("nan"))
    x = _inputs(arch, 90)
    labels = torch.arange(n_classes).repeat(15)
    slots = torch.tensor([[0, 1, 2], [3, 4, -1], [5, 0, 2], [1, 3, -1]])
    sc = evaluate_models(module, layout, flat, x, labels, slots, n_classes, torch.device("cpu"), image_chunk=7)
    assert set(layout.names) == set(module.state_dict())
    for t, task in enumerate(slots.tolist()):
        net = layout.load_into(build_generated(arch, k), flat[t])
        cls = [c for c in task if c >= 0]
        keep = torch.isin(labels, torch.tensor(cls))
        logits = net(x[keep])[:, :len(cls)]
        target = torch.tensor([cls.index(int(c)) for c in labels[keep]])
        assert sc.acc[t].item() == pytest.approx(float((logits.argmax(1) == target).float().mean()))
        assert sc.count[t, :len(cls)].tolist() == [15.0] * len(cls)


def test_p_models_start_from_the_generic_rows_and_learn_their_task():
    torch.manual_seed(0)
    n_classes, k = 4, 2
    generic = Head(5, n_classes)
    layout = ParamLayout.for_arch("resnet20_after", k)
    layout = ParamLayout.of(Head(5, k))
    slots = torch.tensor([[2, 0], [3, -1], [1, 3]])
    flat0 = initial_models(generic, layout, slots)
    w, b = layout.head(flat0)
    assert torch.equal(w[0, 0], generic.fc.weight[2].detach()) and torch.equal(b[2, 1], generic.fc.bias[3].detach())
    assert (w[1, 1] == 0).all() and b[1, 1] == 0
    centres = torch.randn(n_classes, 5) * 3
    labels = torch.arange(n_classes).repeat(50)
    x = centres[labels] + torch.randn(len(labels), 5) * 0.5
    cfg = replace(load("smoke").finetune, steps=150, batch_size=32, lr=0.05)
    flat = finetune_models(Head(5, k), layout, flat0, x, labels, slots, n_classes, cfg, torch.device("cpu"))
    sc = evaluate_models(Head(5, k), layout, flat, x, labels, slots, n_classes, torch.device("cpu"))
    assert (sc.acc > 0.95).all(), sc.acc
    w, b = layout.head(flat)
    assert (w[1, 1] == 0).all() and b[1, 1] == 0  # the unused slot stays empty
    # Head-only fine-tuning of a whole network leaves the convolutions at the generic model's values.
    net_layout = ParamLayout.for_arch("convnet5k", k)
    g = TinaConvNet((16, 32), n_classes)
    f0 = initial_models(g, net_layout, slots)
    img = torch.randn(40, 3, 32, 32)
    lab = torch.arange(n_classes).repeat(10)
    f1 = finetune_models(build_generated("convnet5k", k), net_layout, f0, img, lab, slots, n_classes,
                         replace(cfg, steps=2, batch_size=4), torch.device("cpu"), trainable=("fc.weight", "fc.bias"))
    conv = slice(0, net_layout.numel - k * 33)
    assert torch.equal(f1[:, conv], f0[:, conv]) and not torch.equal(f1, f0)


@pytest.mark.parametrize("policy,chunk", [("chunk_within_layer", 7), ("chunk_within_layer", 1000), ("class_rows", 0)])
def test_token_layout_round_trip(policy, chunk):
    layout = ParamLayout.of(Head(5, 3))
    splits = build_splits(layout.sizes, policy, chunk, 3, 5)
    tl = TokenLayout(splits)
    flat = torch.randn(2, layout.numel)
    tokens = tl.to_tokens(flat)
    assert tokens.shape == (2, len(splits), max(len(s) for s in splits))
    assert torch.equal(tl.from_tokens(tokens), flat)
    if policy == "chunk_within_layer":  # no token mixes weight and bias
        assert all(max(s) < 15 or min(s) >= 15 for s in splits)
    else:  # token k holds row k of the weight and bias k
        w, b = layout.head(flat)
        assert torch.equal(tokens[:, 1, :5], w[:, 1]) and torch.equal(tokens[:, 1, 5], b[:, 1])


@pytest.mark.parametrize("arch", list(ARCHS))
def test_layer_chunks_of_every_arch_cover_it_once(arch):
    layout = ParamLayout.for_arch(arch, 10)
    splits = build_splits(layout.sizes, "chunk_within_layer", 576)
    assert sorted(i for s in splits for i in s) == list(range(layout.numel))
    assert max(len(s) for s in splits) <= 576
    flat = torch.randn(2, layout.numel)
    tl = TokenLayout(splits)
    assert torch.equal(tl.from_tokens(tl.to_tokens(flat)), flat)


def test_slot_positions_and_normalizer():
    pos = slot_positions(torch.tensor([[2, 0, -1]]), 4)
    assert pos.tolist() == [[1, -1, 0, -1]]
    x = torch.randn(1000) * 0.03
    norm = ScalarNormalizer.fit(x)
    assert float(norm.normalize(x).std()) == pytest.approx(1.0, rel=1e-5)
    assert torch.allclose(norm.unnormalize(norm.normalize(x)), x)
    assert ScalarNormalizer.openai().normalize(torch.tensor(1.0)).item() == pytest.approx(1.646)


def test_retrieval_assembles_the_nearest_zoo_model_with_its_rows_in_the_query_order():
    from repro.tina.baselines import retrieve

    torch.manual_seed(0)
    emb = torch.eye(6)                      # class names as orthogonal texts
    emb[5] = torch.nn.functional.normalize(emb[2] + 0.2 * emb[5], dim=0)  # class 5's name is close to class 2's
    zoo_slots = torch.tensor([[0, 1, -1], [3, 4, 2], [1, 2, 0]])
    query = torch.tensor([[2, 0, -1], [5, 3, 4]])
    chosen, idx = retrieve(query, zoo_slots, emb)
    # Query 0 (classes 2, 0) matches zoo task 2 (1, 2, 0) exactly; query 1 (5, 3, 4) is nearest to zoo task 1.
    assert chosen.tolist() == [2, 1]
    assert idx.tolist() == [[1, 2, -1], [2, 0, 1]]
    layout = ParamLayout.for_arch("convnet5k", 3)
    zoo_flat = torch.randn(3, layout.numel)
    flat = layout.select_classes(zoo_flat[chosen], idx)
    w, b = layout.head(flat)
    zw, zb = layout.head(zoo_flat)
    assert torch.equal(w[1, 0], zw[1, 2]) and torch.equal(b[0, 1], zb[2, 2]) and (w[0, 2] == 0).all()
    assert torch.equal(flat[1, :432], zoo_flat[1, :432])  # the retrieved network's own convolutions


def test_fine_tuning_in_task_chunks_equals_one_batch():
    torch.manual_seed(0)
    k, n_classes = 2, 4
    layout = ParamLayout.for_arch("convnet5k", k)
    slots = torch.tensor([[0, 1], [2, 3], [1, 3], [0, -1], [3, 2]])
    flat0 = initial_models(TinaConvNet((16, 32), n_classes), layout, slots)
    x, labels = torch.randn(40, 3, 32, 32), torch.arange(n_classes).repeat(10)
    cfg = replace(load("smoke").finetune, steps=3, batch_size=4, lr=0.01)
    run = lambda chunk: finetune_models(build_generated("convnet5k", k), layout, flat0, x, labels, slots,  # noqa
                                        n_classes, cfg, torch.device("cpu"), task_chunk=chunk)
    a, b, f0 = run(2), run(256), flat0
    # Equal up to float rounding (grouped convolutions of 2 or 5 networks sum in another order; Adam's first steps
    # move every weight by about lr = 1e-2, so a wrong task/target pairing would differ by that much).
    assert float((a - b).abs().max()) < 1e-4 and float((a - f0).abs().max()) > 5e-3
