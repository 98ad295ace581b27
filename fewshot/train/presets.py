"""Training presets per dataset: the optimiser, learning rate, schedule and episode shape a method trains with.

A method overrides these with its classmethod ``train_preset(dataset, ways, shots) -> TrainConfig | None``.
Presets are a starting point sized for this suite's defaults; the published-table specs in ``benchmarks/``
state their own schedules.
"""
from __future__ import annotations

from fewshot.data.dataset import ClassDataset
from fewshot.methods.base import FewShotMethod, TrainKind
from fewshot.train.config import TrainConfig, dataset_family

# Episodic meta-training (ProtoNet-style). Omniglot follows Snell et al. 2017: 60-way training episodes with the
# test shot count, 5 queries per class, Adam 1e-3 halved every 2000 episodes. Steps are what a CPU can afford.
EPISODIC = {
    "synthetic": TrainConfig(steps=400, lr=1e-3, lr_decay_every=200, ways=5, queries=15),
    "omniglot": TrainConfig(steps=4000, lr=1e-3, lr_decay_every=2000, ways=60, queries=5),
    "miniimagenet": TrainConfig(steps=20000, lr=1e-3, lr_decay_every=2000, ways=20, queries=15),
    "default": TrainConfig(steps=2000, lr=1e-3, lr_decay_every=1000, ways=5, queries=15),
}

# Supervised pre-training over all base classes (Chen et al. 2019's Baseline). Synthetic (820 classes, 16,400
# images): 1500 steps of 64 are ~6 epochs, within the default command's time; measured on 300 test episodes (5-way
# 5-shot, 2 CPU threads), 600 Adam steps gave 86.3% (41 s), 1200 SGD steps 91.0% (69 s), 1800 SGD steps 92.2% (123 s).
SUPERVISED = {
    "synthetic": TrainConfig(steps=1500, lr=0.05, optimizer="sgd", lr_decay_every=500, batch_size=64),
    # Omniglot (trainval: 4800 classes, 96,000 images): Tian et al. 2020's SGD recipe (lr 0.05, momentum 0.9,
    # weight decay 5e-4, lr x0.1 twice), 10 epochs of batches of 64.
    "omniglot": TrainConfig(steps=15000, lr=0.05, optimizer="sgd", weight_decay=5e-4, lr_decay_every=5000,
                            lr_decay=0.1, batch_size=64),
    "miniimagenet": TrainConfig(steps=40000, lr=1e-3, lr_decay_every=10000, batch_size=64),
    "default": TrainConfig(steps=2000, lr=1e-3, lr_decay_every=1000, batch_size=64),
}


def train_preset(method_cls: type[FewShotMethod], dataset: str, ways: int, shots: int, train_set: ClassDataset | None = None) -> TrainConfig:
    """The training configuration of ``method_cls`` for ``dataset`` when evaluated ``ways``-way ``shots``-shot.

    Given the training split, episodic settings are fitted to it: no more ways than it has classes and no more
    queries than its smallest class holds beyond the shots. The result is recorded with every run.
    """
    config = method_cls.train_preset(dataset, ways, shots)
    if config is None:
        family = dataset_family(dataset)
        if method_cls.train_kind == TrainKind.SUPERVISED:
            return SUPERVISED[family]
        base = EPISODIC[family]
        # Train with the test shot count and at least as many ways as at test.
        config = base.replace(shots=shots, ways=max(base.ways, ways))
    if train_set is not None and method_cls.train_kind == TrainKind.EPISODIC:
        smallest = int(train_set.class_counts.min())
        config = config.replace(ways=min(config.ways, train_set.num_classes),
                                queries=max(1, min(config.queries, smallest - config.shots)))
    return config
