"""Parameter flattening, loading into classifiers, tokenisation, slot permutation and batched evaluation."""

import pytest
import torch

from repro.tina.nets import TinaCNN
from repro.tina.params import HeadLayout, ScalarNormalizer, TokenLayout, build_splits, permute_slots
from repro.tina.zoo import evaluate_heads, generic_heads, slot_positions


def test_flatten_matches_state_dict_order_and_round_trips():
    layout = HeadLayout(k_max=4, feat_dim=6)
    lin = torch.nn.Linear(6, 4)
    flat = layout.from_module(lin)
    assert flat.shape == (layout.numel,) == (4 * 6 + 4,)
    assert torch.equal(flat, torch.cat([lin.weight.detach().flatten(), lin.bias.detach()]))
    w, b = layout.unflatten(flat)
    assert torch.equal(w, lin.weight) and torch.equal(b, lin.bias)
    assert torch.equal(layout.flatten(w, b), flat)
    other = layout.load_into(torch.nn.Linear(6, 4), flat)
    x = torch.randn(3, 6)
    assert torch.equal(other(x), lin(x))
    with pytest.raises(ValueError):
        layout.unflatten(flat[:-1])


def test_generated_head_loaded_into_the_tina_cnn_gives_the_same_classifier():
    torch.manual_seed(0)
    source, target = TinaCNN(5, (8, 16)), TinaCNN(5, (8, 16))
    target.load_state_dict({k: v for k, v in source.state_dict().items() if not k.startswith("classifier")},
                           strict=False)
    layout = HeadLayout(5, source.num_feat)
    layout.load_into(target.classifier, layout.from_module(source.classifier))
    x = torch.randn(4, 3, 32, 32)
    assert torch.equal(source(x), target(x))
    # The batched evaluation path (features @ head) agrees with the module's forward.
    w, b = layout.unflatten(layout.from_module(source.classifier))
    assert torch.allclose(source.embed(x) @ w.T + b, source(x), atol=1e-6)


@pytest.mark.parametrize("policy,chunk", [("chunk_within_layer", 7), ("chunk_within_layer", 1000), ("class_rows", 0)])
def test_token_layout_round_trip(policy, chunk):
    layout = HeadLayout(3, 5)
    splits = build_splits(layout.param_sizes(), policy, chunk, 3, 5)
    tl = TokenLayout(splits)
    flat = torch.randn(2, layout.numel)
    tokens = tl.to_tokens(flat)
    assert tokens.shape == (2, len(splits), max(len(s) for s in splits))
    assert torch.equal(tl.from_tokens(tokens), flat)
    if policy == "chunk_within_layer":  # no token mixes weight and bias
        assert all(max(s) < 15 or min(s) >= 15 for s in splits)
    else:  # token k holds row k of the weight and bias k
        w, b = layout.unflatten(flat)
        assert torch.equal(tokens[:, 1, :5], w[:, 1]) and torch.equal(tokens[:, 1, 5], b[:, 1])


def test_permuting_slots_and_labels_together_keeps_predictions():
    torch.manual_seed(1)
    feats, labels = torch.randn(60, 4), torch.randint(0, 6, (60,))
    slots = torch.tensor([[0, 2, 5], [1, 3, 4]])
    w, b = torch.randn(2, 3, 4), torch.randn(2, 3)
    perm = torch.tensor([[2, 0, 1], [1, 2, 0]])
    wp, bp = permute_slots(w, b, perm)
    assert torch.equal(wp[0, 0], w[0, 2]) and torch.equal(bp[1, 2], b[1, 0])
    a = evaluate_heads(feats, labels, slots, w, b, 6).acc
    p = evaluate_heads(feats, labels, slots.gather(1, perm), wp, bp, 6).acc
    assert torch.equal(a, p)


def test_batched_evaluation_matches_a_plain_loop():
    torch.manual_seed(2)
    n_classes, feats, labels = 7, torch.randn(200, 5), torch.randint(0, 7, (200,))
    slots = torch.tensor([[0, 3, -1, -1], [1, 2, 5, 6], [4, 6, 0, -1]])
    w, b = torch.randn(3, 4, 5), torch.randn(3, 4)
    scores = evaluate_heads(feats, labels, slots, w, b, n_classes, chunk=2)
    for t, task in enumerate(slots.tolist()):
        cls = [c for c in task if c >= 0]
        keep = torch.isin(labels, torch.tensor(cls))
        logits = feats[keep] @ w[t, :len(cls)].T + b[t, :len(cls)]
        target = torch.tensor([cls.index(int(c)) for c in labels[keep]])
        assert scores.acc[t] == pytest.approx(float((logits.argmax(1) == target).float().mean()))
        assert scores.count[t, :len(cls)].tolist() == [float((labels == c).sum()) for c in cls]


def test_generic_heads_cannot_predict_held_out_classes():
    head = torch.nn.Linear(3, 2)  # generic model over seen classes (4, 7)
    slots = torch.tensor([[7, 4, -1], [4, 9, -1]])  # class 9 is held out
    w, b, enabled = generic_heads(head, (4, 7), slots)
    assert enabled.tolist() == [[True, True, False], [True, False, False]]
    assert torch.equal(w[0, 0], head.weight[1].detach()) and torch.equal(b[1, 0], head.bias[0].detach())
    feats, labels = torch.randn(50, 3), torch.tensor([9] * 25 + [4] * 25)
    sc = evaluate_heads(feats, labels, slots, w, b, 10, enabled=enabled)
    assert sc.correct[1, 1] == 0 and sc.correct[1, 0] == 25  # held-out images always wrong, seen always right
    # A task of held-out classes only: the generic model can predict nothing, so nothing is correct.
    slots = torch.tensor([[9, 8, -1]])
    w, b, enabled = generic_heads(head, (4, 7), slots)
    assert not enabled.any()
    labels = torch.tensor([9] * 10 + [8] * 10)
    assert evaluate_heads(torch.randn(20, 3), labels, slots, w, b, 10, enabled=enabled).acc.item() == 0.0


def test_slot_positions_and_normalizer():
    pos = slot_positions(torch.tensor([[2, 0, -1]]), 4)
    assert pos.tolist() == [[1, -1, 0, -1]]
    x = torch.randn(1000) * 0.03
    norm = ScalarNormalizer.fit(x)
    assert float(norm.normalize(x).std()) == pytest.approx(1.0, rel=1e-5)
    assert torch.allclose(norm.unnormalize(norm.normalize(x)), x)
