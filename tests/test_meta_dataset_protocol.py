"""Meta-Dataset episodes through the harness, every method, the command and specs (``--protocol meta-dataset``)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fewshot.backbones import create_backbone
from fewshot.cli import main
from fewshot.core.errors import UsageError
from fewshot.data import register_dataset, sample_episodes
from fewshot.data.meta_dataset_episodes import VariableEpisodeSet
from fewshot.evaluate.harness import evaluate
from fewshot.methods import create_method, list_methods, method_class
from fewshot.results.records import load_records
from fewshot.runner import CellSpec

from conftest import blob_dataset

BLOBS = blob_dataset(classes=9, per_class=7)


def tiny_method(name: str):
    torch.manual_seed(0)
    return create_method(name, create_backbone("conv4", in_channels=1, image_size=16, hidden=8)).eval()


@pytest.fixture(scope="module")
def variable_episodes() -> VariableEpisodeSet:
    eps = sample_episodes(BLOBS, 5, 1, 1, episodes=9, seed=4, protocol="meta-dataset")
    assert isinstance(eps, VariableEpisodeSet)
    assert len(set(eps.ways.tolist())) > 1 and len(set(eps.support_mask.sum(1).tolist())) > 1   # shapes differ
    return eps


def one_episode_at_a_time(method, eps: VariableEpisodeSet) -> np.ndarray:
    """The reference: each episode unpadded, through the method's own logits, scored on its real queries."""
    out = []
    with torch.no_grad():
        for e in range(len(eps)):
            support, support_labels, query, query_labels, classes = eps.episode(e)
            s = method.embed(BLOBS.gather(support.long()).unsqueeze(0))
            q = method.embed(BLOBS.gather(query.long()).unsqueeze(0))
            logits = method.logits_from_features(s, support_labels.unsqueeze(0), q, len(classes))
            out.append(float((logits[0].argmax(-1) == query_labels).double().mean()))
    return np.array(out)


@pytest.mark.parametrize("name", [n for n in list_methods() if method_class(n).takes_masks])
def test_masked_batches_score_like_one_episode_at_a_time(name, variable_episodes):
    method = tiny_method(name)
    assert method.frozen_features       # the masked reference below reads features
    batched = evaluate(method, BLOBS, variable_episodes, device="cpu", batch_size=9, progress=False)
    assert batched.used["eval_batch_used"] == 9          # really one padded batch
    np.testing.assert_allclose(batched.accuracies, one_episode_at_a_time(method, variable_episodes), atol=1e-12)
    assert batched.episode_hash == variable_episodes.hash


def test_the_metric_methods_take_masks():
    assert method_class("protonet").takes_masks and method_class("simpleshot").takes_masks


def test_padding_changes_nothing_in_a_masked_method(variable_episodes):
    """The same episodes padded wider (more padding rows and absent classes) give the same logits on real entries."""
    method = tiny_method("protonet")
    eps = variable_episodes.trimmed()
    wide = eps.padded(eps.support.shape[1] + 7, eps.query.shape[1] + 3, eps.classes.shape[1] + 2)
    with torch.no_grad():
        def logits(batch):
            s = method.embed(BLOBS.gather(batch.support.long().clamp_min(0)))
            q = method.embed(BLOBS.gather(batch.query.long().clamp_min(0)))
            return method.logits_from_features(s, batch.support_labels, q, batch.classes.shape[1])
        narrow_logits, wide_logits = logits(eps), logits(wide)
    w, qw = eps.classes.shape[1], eps.query.shape[1]
    torch.testing.assert_close(wide_logits[:, :qw, :w], narrow_logits, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", list_methods())
def test_every_method_runs_on_meta_dataset_episodes(name, variable_episodes):
    """Batched or one at a time, a method gives one accuracy per episode, whatever the batch size; a method that
    cannot take variable shapes says so in one clear error."""
    method = tiny_method(name)
    try:
        whole = evaluate(method, BLOBS, variable_episodes, device="cpu", batch_size=9, progress=False)
    except UsageError as error:
        assert name == "linear-probe-cv" and "same number" in str(error)     # balanced supports only, by design
        return
    pieces = evaluate(method, BLOBS, variable_episodes, device="cpu", batch_size=4, progress=False)
    assert whole.accuracies.shape == (9,)
    assert ((whole.accuracies >= 0) & (whole.accuracies <= 1)).all()
    np.testing.assert_allclose(whole.accuracies, pieces.accuracies, atol=1e-12)
    if not method.takes_masks:
        assert whole.used["eval_batch_used"] == 1        # never sees padding


def test_protocol_is_in_the_fingerprint_only_when_it_is_not_the_default():
    fixed = CellSpec(method="protonet")
    assert CellSpec(method="protonet", protocol="fixed").fingerprint() == fixed.fingerprint()
    assert CellSpec(method="protonet", protocol="meta-dataset").fingerprint() != fixed.fingerprint()


def test_sample_episodes_refuses_an_unknown_protocol():
    with pytest.raises(ValueError, match="unknown episode protocol 'meta'; choose one of fixed, meta-dataset"):
        sample_episodes(BLOBS, 5, 1, 1, episodes=3, seed=0, protocol="meta")


@register_dataset("test-md-blobs")
def load_test_md_blobs(split, root, **options):
    full = blob_dataset(classes=20, per_class=8, name="test-md-blobs")
    return full.select_classes(list(range(12) if split == "train" else range(12, 20)), name=f"test-md-blobs/{split}")


def bench(tmp_path, *extra) -> int:
    return main(["--dataset", "test-md-blobs", "--method", "protonet", "--train-steps", "3",
                 "--baseline-train-steps", "3", "--episodes", "10", "--shots", "1", "--backbone", "conv4",
                 "--device", "cpu", "--out", str(tmp_path / "runs"), "--checkpoint-dir", str(tmp_path / "ckpt"),
                 "--quiet", *extra])


def test_the_command_scores_every_method_on_the_same_meta_dataset_episodes(tmp_path, capsys):
    assert bench(tmp_path, "--protocol", "meta-dataset") == 0
    out = capsys.readouterr().out
    assert "| meta-dataset | variable " in out and "vs finetune" in out
    records = {r.method: r for r in load_records(tmp_path / "runs")}
    assert set(records) == {"protonet", "finetune"}
    expected = sample_episodes(load_test_md_blobs("test", None), 5, 1, 15, episodes=10, seed=0,
                               protocol="meta-dataset")
    for r in records.values():
        assert r.episode_hash == expected.hash
        assert (r.ways, r.shots, r.queries) == (0, 0, 0)
        assert r.config.protocol["protocol"] == "meta-dataset" and r.config.protocol["max_ways"] == 50
        assert "meta-dataset" in r.source.name
        assert len(r.accuracies) == 10
    # Meta-training keeps the fixed shape the command asked for.
    assert records["protonet"].config.train_config["shots"] == 1


def test_the_command_refuses_an_unknown_protocol(tmp_path, capsys):
    assert bench(tmp_path, "--protocol", "meta") == 2
    assert "error: argument --protocol: invalid choice: 'meta'" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()



def test_a_padded_episode_trains_the_head_it_would_unpadded():
    from fewshot.methods.finetune import FineTuneConfig, fit_heads

    g = torch.Generator().manual_seed(0)
    support, labels = torch.randn(1, 6, 4, generator=g), torch.tensor([[0, 0, 1, 1, 2, 2]])
    alone = fit_heads(support, labels, 3, FineTuneConfig(steps=20))
    # Two more padding rows (label -1, garbage features) and two classes the episode lacks.
    padded = fit_heads(torch.cat([support, 50 * torch.randn(1, 2, 4, generator=g)], 1),
                       torch.cat([labels, torch.tensor([[-1, -1]])], 1), 5, FineTuneConfig(steps=20))
    torch.testing.assert_close(padded["weight"][:, :3], alone["weight"], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(padded["bias"][:, :3], alone["bias"], rtol=1e-6, atol=1e-6)
    assert (padded["weight"][:, 3:] == 0).all() and (padded["bias"][:, 3:] == 0).all()
