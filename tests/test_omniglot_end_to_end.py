"""A small end-to-end run on real Omniglot (Vinyals split): meta-trained ProtoNet against fine-tuning from scratch."""
from __future__ import annotations

import torch

from fewshot.backbones import create_backbone
from fewshot.data import load_dataset, sample_episodes
from fewshot.evaluate.harness import evaluate
from fewshot.methods import create_method
from fewshot.evaluate.stats import paired_difference
from fewshot.train.loop import TrainConfig, fit


def test_protonet_beats_finetuning_from_scratch_and_chance(shared_data, tmp_path):
    train = load_dataset("omniglot", "train", root=shared_data)
    test = load_dataset("omniglot", "test", root=shared_data)
    episodes = sample_episodes(test, ways=5, shots=1, queries=5, episodes=100, seed=0)

    torch.manual_seed(0)
    protonet = create_method("protonet", create_backbone("conv4"))
    fit(protonet, train, TrainConfig(steps=60, ways=20, shots=1, queries=5), seed=0, progress=False)
    torch.manual_seed(0)
    scratch = create_method("finetune", create_backbone("conv4"))   # no pre-training: a random backbone

    ours = evaluate(protonet, test, episodes, device="cpu", progress=False)
    baseline = evaluate(scratch, test, episodes, device="cpu", progress=False)
    assert ours.episode_hash == baseline.episode_hash == episodes.hash
    difference = paired_difference(ours.accuracies, baseline.accuracies)
    assert ours.summary.mean > 0.75, ours.summary        # chance is 0.20
    assert difference.mean - difference.ci95 > 0.10, difference


def test_meta_dataset_episodes_on_real_omniglot_batched_as_one_at_a_time(shared_data):
    """Meta-Dataset's variable episodes on real Omniglot: ProtoNet and the fine-tuning baseline well above the
    episodes' mean chance, and one padded batch scores exactly like one episode at a time."""
    train = load_dataset("omniglot", "train", root=shared_data)
    test = load_dataset("omniglot", "test", root=shared_data)
    episodes = sample_episodes(test, 5, 1, 15, episodes=12, seed=0, protocol="meta-dataset")
    assert episodes.ways.min() >= 5 and episodes.ways.max() <= 50 and len(set(episodes.ways.tolist())) > 1
    chance = float((1.0 / episodes.ways).mean())

    torch.manual_seed(0)
    protonet = create_method("protonet", create_backbone("conv4"))
    fit(protonet, train, TrainConfig(steps=60, ways=20, shots=1, queries=5), seed=0, progress=False)
    torch.manual_seed(0)
    scratch = create_method("finetune", create_backbone("conv4"))
    for method in (protonet, scratch):
        batched = evaluate(method, test, episodes, device="cpu", batch_size=12, progress=False)
        alone = evaluate(method, test, episodes, device="cpu", batch_size=1, progress=False)
        assert batched.used["eval_batch_used"] == 12
        torch.testing.assert_close(torch.tensor(batched.accuracies), torch.tensor(alone.accuracies),
                                   rtol=0, atol=1e-9)
        assert batched.summary.mean > (0.5 if method is protonet else 2 * chance), (method.name, batched.summary)
