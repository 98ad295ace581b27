"""Datasets (a registry of loaders returning :class:`ClassDataset` splits) and seeded episodes."""
from __future__ import annotations

from fewshot.data.dataset import ClassDataset
from fewshot.data.episodes import EpisodeSet, check_episode_settings, episode_seed
from fewshot.data.protocols import sample_episodes
from fewshot.data.registry import DATASETS, list_datasets, load_dataset, register_dataset

__all__ = ["ClassDataset", "EpisodeSet", "sample_episodes", "check_episode_settings", "episode_seed",
           "DATASETS", "list_datasets", "load_dataset", "register_dataset"]
