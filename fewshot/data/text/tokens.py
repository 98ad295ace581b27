"""Tokenisation, once per corpus and encoder, kept in the processed-data cache like resized images.

A corpus's texts become one int64 array ``[N, L]`` of token ids: row ``i`` holds text ``i``'s ids from the left
and ``-1`` after its last token (``L`` is the longest text's length, at most the encoder's
``max_seq_length``). ``-1`` is never a token id, so the attention mask is exactly ``ids >= 0`` whatever the
tokenizer's pad id; the backbone puts the pad id back. The ids are what sentence-transformers' own ``preprocess``
gives (the library tokenises, truncates and adds the special tokens). Entries live in
``$FEWSHOT_CACHE/processed/text-tokens``, keyed by the corpus's source (its files' sha256 and the options that
render the text), the sha256 of the texts themselves and :func:`~fewshot.data.text.encoders.tokenizer_identity`.
"""
from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import numpy as np

from fewshot.core.cache import DataCache
from fewshot.core.errors import UserError
from fewshot.core.hashing import sha256_json
from fewshot.data.text.encoders import load_sentence_transformer, tokenizer_identity

__all__ = ["CACHE", "PAD", "token_cache_key", "token_ids", "tokenize"]

CACHE_VERSION = 1   # bump when the stored ids change (padding, layout): old entries are then never read
CACHE = DataCache("text-tokens", CACHE_VERSION, memory_bytes=256 << 20)
PAD = -1            # marks the positions after a text's last token
_CHUNK = 2048       # texts per call of the tokenizer (bounds the padded intermediate)


def tokenize(texts: Sequence[str], encoder: str | os.PathLike) -> np.ndarray:
    """Token ids ``[len(texts), L]`` (int64, :data:`PAD` after each text's end) from the encoder's own
    ``preprocess``; no cache (see :func:`token_ids`)."""
    model = load_sentence_transformer(encoder)
    if getattr(model.tokenizer, "padding_side", "right") != "right":
        raise UserError(f"encoder {encoder}: its tokenizer pads on the left; only right-padding encoders are "
                        f"supported")
    chunks = []
    for start in range(0, len(texts), _CHUNK):
        features = model.preprocess(list(texts[start:start + _CHUNK]))
        ids, mask = features["input_ids"].numpy(), features["attention_mask"].numpy().astype(bool)
        # Right padding: every row's tokens come first, so the mask's columns are a prefix.
        chunks.append(np.where(mask, ids, PAD).astype(np.int64))
    width = max((c.shape[1] for c in chunks), default=0)
    out = np.full((len(texts), width), PAD, dtype=np.int64)
    row = 0
    for chunk in chunks:
        out[row:row + len(chunk), :chunk.shape[1]] = chunk
        row += len(chunk)
    return out


def token_cache_key(texts: Sequence[str], encoder: str | os.PathLike, source: Mapping[str, Any]) -> str:
    """The cache key of ``texts`` (from ``source``: file hashes and rendering options) tokenised by ``encoder``."""
    return CACHE.key({"source": dict(source), "texts_sha256": sha256_json(list(texts)),
                      "tokenizer": tokenizer_identity(encoder)})


def token_ids(texts: Sequence[str], encoder: str | os.PathLike, source: Mapping[str, Any],
              label: str = "") -> np.ndarray:
    """:func:`tokenize` through the processed-data cache (read-only when it comes from memory)."""
    key = token_cache_key(texts, encoder, source)
    return CACHE.get(key, lambda: {"ids": tokenize(texts, encoder)}, label=label)["ids"]
