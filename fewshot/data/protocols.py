"""How test episodes are drawn, behind one call: fixed N-way K-shot episodes (:mod:`fewshot.data.episodes`) or
Meta-Dataset's variable-way, variable-shot ones (:mod:`fewshot.data.meta_dataset_episodes`)."""
from __future__ import annotations

from fewshot.data.dataset import ClassDataset
from fewshot.data.episodes import EpisodeSet, sample_episodes as sample_fixed_episodes
from fewshot.data.meta_dataset_episodes import VariableEpisodeSet, sample_meta_dataset_episodes

__all__ = ["PROTOCOLS", "check_protocol", "sample_episodes"]

#: The protocols: fixed ways, shots and queries, or each episode drawing its own (Meta-Dataset's defaults).
PROTOCOLS = ("fixed", "meta-dataset")


def check_protocol(protocol: str) -> None:
    """Raise a ValueError naming the protocols when ``protocol`` is not one of them."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown episode protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")


def sample_episodes(dataset: ClassDataset, ways: int, shots: int, queries: int, episodes: int, seed: int,
                    start: int = 0, protocol: str = "fixed") -> EpisodeSet | VariableEpisodeSet:
    """Episodes ``start .. start+episodes-1`` of the set seeded ``seed``: ``ways``-way ``shots``-shot with
    ``queries`` per class, or with ``protocol="meta-dataset"`` each episode with its own ways, shots and queries
    (``ways``, ``shots`` and ``queries`` unused), padded into a
    :class:`~fewshot.data.meta_dataset_episodes.VariableEpisodeSet`."""
    check_protocol(protocol)
    if protocol == "meta-dataset":
        return sample_meta_dataset_episodes(dataset, episodes, seed, start)
    return sample_fixed_episodes(dataset, ways, shots, queries, episodes, seed, start)
