"""A user's plug-in, loaded with ``--plugin tests/plugins/tiny_plugin.py``: a tiny dataset and a method that owns
its training loop. Subprocess tests use it, so they train in seconds."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from fewshot.data import ClassDataset, register_dataset
from fewshot.methods.base import FewShotMethod, TrainKind, register_method
from fewshot.methods.protonet import class_means, squared_distances


@register_dataset("tiny-blobs")
def load_tiny_blobs(split: str, root, **options) -> ClassDataset:
    """20 classes of 16x16 noisy patterns, 12 examples each: classes 0-11 train, 12-19 test."""
    g = torch.Generator().manual_seed(0)
    patterns = torch.rand(20, 1, 16, 16, generator=g)
    images = patterns.repeat_interleave(12, 0) + 0.6 * torch.rand(240, 1, 16, 16, generator=g)
    images = (images / images.amax() * 255).to(torch.uint8)
    full = ClassDataset(images, torch.arange(20).repeat_interleave(12), [f"c{i:02d}" for i in range(20)],
                        "tiny-blobs")
    classes = range(12) if split == "train" else range(12, 20)
    return full.select_classes(list(classes), name=f"tiny-blobs/{split}")


@register_method("tiny-noisy-protonet")
class NoisyProtoNet(FewShotMethod):
    """ProtoNet trained by its own loop, with input noise drawn from the global RNG (a resume must restore it)."""

    paper = "Snell, Swersky & Zemel 2017 (a test plug-in with its own training loop)"
    train_kind = TrainKind.CUSTOM
    frozen_features = True

    def logits_from_features(self, support, support_labels, query, ways):
        return -squared_distances(query, class_means(support, support_labels, ways))

    def train_loop(self, dataset, config, session):
        opt = torch.optim.Adam(self.parameters(), lr=config.lr)
        modules = {"model": self, "optimizer": opt}
        first = session.resume(modules)
        loss = float("nan")
        for step in session.steps(first, desc="train tiny-noisy-protonet"):
            g = torch.Generator().manual_seed(session.seed * 7919 + step)
            classes = torch.randperm(dataset.num_classes, generator=g)[:config.ways]
            rows = torch.cat([dataset.class_index[c][torch.randperm(len(dataset.class_index[c]), generator=g)[:2]]
                              for c in classes.tolist()])
            images = dataset.gather(rows, session.device)
            images = images + 0.05 * torch.randn_like(images)         # global RNG on purpose
            features = self.embed(images).view(config.ways, 2, -1)
            labels = torch.arange(config.ways)
            logits = -squared_distances(features[None, :, 1], features[None, :, 0])[0]
            value = F.cross_entropy(logits, labels)
            opt.zero_grad()
            value.backward()
            opt.step()
            loss = float(value)
            session.step_done(step, modules, loss)
        return loss
