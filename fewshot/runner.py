"""Runs one cell (method x dataset x setting): load data, build, train or reuse, evaluate, record.

The command (:mod:`fewshot.bench`) and the published-table specs (:mod:`fewshot.reproduce.run`) both go through
:class:`Runner`, which keeps loaded datasets and episode sets so that every method of a table is scored on the
same episodes.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from fewshot.backbones import accepts_any_image_format, create_backbone, pretrained_on
from fewshot.backbones.text_encoders import check_tokenizer, text_backbone
from fewshot.data import ClassDataset, EpisodeSet, load_dataset, sample_episodes
from fewshot.data.protocols import check_protocol
from fewshot.data.meta_dataset_episodes import VariableEpisodeSet
from fewshot.data.union import check_source_episodes, describe_union, is_union
from fewshot.core import distributed
from fewshot.evaluate.harness import evaluate, resolve_device
from fewshot.methods import create_method, method_class
from fewshot.methods.base import FewShotMethod, TrainKind
from fewshot.core.errors import UsageError, UserError
from fewshot.core.hashing import sha256_json
from fewshot.core.paths import cache_dir
from fewshot.train.presets import train_preset
from fewshot.results.records import RunRecord, environment, now
from fewshot.train.loop import TrainConfig, TrainReport, fit, split_across_ranks
from fewshot.train.session import Watch

#: Points of a watched training's held-out accuracy curve (one every steps / WATCH_POINTS steps, and the last).
WATCH_POINTS = 20


@dataclass
class CellSpec:
    """One cell of a table: a method evaluated in one setting. ``None`` fields take the method's defaults."""

    method: str
    dataset: str = "synthetic"
    ways: int = 5
    shots: int = 5
    queries: int = 15
    episodes: int = 600
    seed: int = 0                          # seeds the test episodes
    train_seed: int = 0                    # seeds training (episodes, batches, initialisation)
    backbone: str | None = None
    backbone_options: dict[str, Any] = field(default_factory=dict)
    method_options: dict[str, Any] = field(default_factory=dict)
    dataset_options: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)    # overrides of the preset TrainConfig
    train_split: str = "train"
    test_split: str = "test"
    # A registered fixed episode set (fewshot.data.fixed, e.g. "omniglot-runs"): the cell is scored on exactly
    # those episodes and their images instead of episodes sampled from `dataset`, which is then only learned from.
    fixed_episodes: str | None = None
    # Learn on this dataset (its `train_split`) and test on `dataset`: a cross-domain cell. None: `dataset` itself.
    train_dataset: str | None = None
    train_dataset_options: dict[str, Any] = field(default_factory=dict)
    # The autocast dtype of evaluation (fewshot.evaluate.precision): part of the fingerprint when not fp32, so
    # records of one precision never stand in for another's.
    precision: str = "fp32"
    # How the test episodes are drawn (fewshot.data.episodes.PROTOCOLS): "meta-dataset" draws ways, shots and
    # queries per episode; `ways` and `shots` then shape only the meta-training episodes.
    protocol: str = "fixed"
    # Supervised pre-training split over the torchrun ranks (DistributedDataParallel's semantics, batch norm per
    # rank): other weights than one process's, so another cell, fingerprint and record name. Set by Runner.resolve.
    data_parallel: bool = False

    @property
    def source(self) -> str:
        """The dataset the cell learns from."""
        return self.train_dataset or self.dataset

    def source_options(self) -> dict[str, Any]:
        return self.train_dataset_options if self.train_dataset else self.dataset_options

    def fingerprint(self) -> str:
        """A hash of the configuration: every field that differs from its default (so a field added later, with a
        default, leaves existing fingerprints, record names and records valid)."""
        defaults = {f.name: (f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default)
                    for f in dataclasses.fields(CellSpec)}
        changed = {k: v for k, v in dataclasses.asdict(self).items() if k not in defaults or v != defaults[k]}
        return sha256_json(changed, 16)


@dataclass
class PreparedCell:
    """A cell ready to train and evaluate (:meth:`Runner.prepare`)."""

    spec: CellSpec
    test_set: ClassDataset
    episodes: EpisodeSet | VariableEpisodeSet
    train_set: ClassDataset
    method: FewShotMethod
    config: TrainConfig
    trains: bool
    #: How the target's images were brought to the backbone's format (None: they already had it).
    conversion: dict[str, Any] | None = None
    #: The held-out data watched during training (the source's validation split and episodes on it), or why
    #: nothing is watched; both None when no watch was asked for.
    watch: tuple[ClassDataset, EpisodeSet] | None = None
    watch_skipped: str | None = None


class Runner:
    """Runs cells, caching datasets, episode sets and trained methods between them."""

    def __init__(self, *, data_root: str | os.PathLike | None = None, checkpoint_dir: str | os.PathLike | None = None,
                 device: str = "auto", progress: bool = True, eval_batch_size: int | None = None,
                 checkpoint_seconds: float = 60.0, data_parallel: bool = False, watch_episodes: int = 0) -> None:
        self.data_root = data_root
        # Episodes of the source's validation split scored during training (0: none); see prepare_watch.
        self.watch_episodes = watch_episodes
        # Supervised pre-training split over the ranks (fit's data_parallel): a no-op on one process (resolve).
        self.data_parallel = data_parallel
        self.checkpoint_seconds = checkpoint_seconds
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else cache_dir() / "checkpoints"
        # Under torchrun: join the process group; each rank takes its own GPU; only rank 0 shows progress.
        self.device = distributed.rank_device(resolve_device(device))
        distributed.init(self.device)
        self.progress = progress and distributed.is_main()
        self.eval_batch_size = eval_batch_size
        self._datasets: dict[tuple, ClassDataset] = {}
        self._episodes: dict[tuple, EpisodeSet | VariableEpisodeSet] = {}
        self._fixed: dict[tuple, tuple[ClassDataset, EpisodeSet]] = {}

    def resolve(self, spec: CellSpec) -> CellSpec:
        """``spec`` as this runner will run it: marked ``data_parallel`` when the runner was asked to split
        supervised pre-training, more than one rank shares the work and the method pre-trains supervised."""
        split = (self.data_parallel and distributed.world_size() > 1
                 and method_class(spec.method).train_kind == TrainKind.SUPERVISED)
        return dataclasses.replace(spec, data_parallel=True) if split and not spec.data_parallel else spec

    def dataset(self, name: str, split: str, options: dict[str, Any] | None = None) -> ClassDataset:
        key = (name, split, tuple(sorted((options or {}).items())))
        if key not in self._datasets:
            self._datasets[key] = load_dataset(name, split, root=self.data_root, **(options or {}))
        return self._datasets[key]

    def episodes(self, spec: CellSpec, dataset: ClassDataset) -> EpisodeSet | VariableEpisodeSet:
        variable = spec.protocol != "fixed"     # the fixed shape does not decide variable episodes
        key = (dataset.fingerprint(), spec.protocol, *((None,) * 3 if variable else (spec.ways, spec.shots,
               spec.queries)), spec.episodes, spec.seed)
        if key not in self._episodes:
            self._episodes[key] = sample_episodes(dataset, spec.ways, spec.shots, spec.queries, spec.episodes,
                                                  seed=spec.seed, protocol=spec.protocol)
        return self._episodes[key]

    def test_data(self, spec: CellSpec) -> tuple[ClassDataset, EpisodeSet | VariableEpisodeSet]:
        """The test set and the episodes a cell is scored on: its fixed episode set, or episodes sampled from
        ``spec.dataset``'s test split."""
        check_protocol(spec.protocol)
        if spec.fixed_episodes:
            if spec.protocol != "fixed":
                raise ValueError(f"the fixed episode set {spec.fixed_episodes!r} has its own episodes; the "
                                 f"{spec.protocol} protocol is for sampled ones")
            from fewshot.data.fixed import load_fixed_episodes

            key = (spec.fixed_episodes, tuple(sorted(spec.dataset_options.items())))
            if key not in self._fixed:
                self._fixed[key] = load_fixed_episodes(spec.fixed_episodes, root=self.data_root,
                                                       **spec.dataset_options)
            return self._fixed[key]
        test_set = self.dataset(spec.dataset, spec.test_split, spec.dataset_options)
        return test_set, self.episodes(spec, test_set)

    def build(self, spec: CellSpec, train_set: ClassDataset) -> FewShotMethod:
        cls = method_class(spec.method)
        backbone_name, options = spec.backbone or cls.default_backbone, dict(spec.backbone_options)
        text = text_backbone(train_set)
        if text is not None and spec.backbone is None:  # token ids: the dataset's encoder, whatever the default
            backbone_name, options = text[0], {**text[1], **options}
        in_channels = train_set.data.shape[1] if train_set.is_images else 0
        image_size = train_set.data.shape[-1] if train_set.is_images else 0
        # Initialisation is part of training: seed it so that a checkpoint's key describes its weights.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(spec.train_seed)
            backbone = create_backbone(backbone_name, in_channels=in_channels, image_size=image_size, **options)
            check_tokenizer(backbone, train_set)
            return create_method(spec.method, backbone, **self.method_options(spec))

    def method_options(self, spec: CellSpec) -> dict[str, Any]:
        """The method's per-dataset preset options (its ``method_preset``), overridden by the spec's."""
        preset = method_class(spec.method).method_preset(spec.source, spec.ways, spec.shots)
        base = dataclasses.asdict(preset) if dataclasses.is_dataclass(preset) else {}
        return {**base, **spec.method_options}

    def train_config(self, spec: CellSpec, method: FewShotMethod, train_set: ClassDataset) -> TrainConfig:
        config = train_preset(type(method), spec.source, spec.ways, spec.shots, train_set)
        unknown = set(spec.train) - {f.name for f in dataclasses.fields(TrainConfig)}
        if unknown:
            raise UsageError(f"unknown training key(s) {sorted(unknown)}; TrainConfig has "
                             f"{sorted(f.name for f in dataclasses.fields(TrainConfig))}")
        config = config.replace(**spec.train)
        for key in ("steps", "ways", "shots", "queries", "meta_batch", "batch_size"):
            if getattr(config, key) < 1:
                raise UsageError(f"training key {key!r} must be at least 1, got {getattr(config, key)}")
        return config

    def prepare(self, spec: CellSpec) -> PreparedCell:
        """Everything a cell needs before it trains: data loaded, test episodes sampled, the method built and its
        schedule fixed. Impossible settings raise :class:`~fewshot.core.errors.UsageError` here, before any
        training, so a command can check every cell first."""
        context = f"{spec.method} on {spec.fixed_episodes or spec.dataset} {spec.ways}-way {spec.shots}-shot"
        try:
            test_set, episodes = self.test_data(spec)
            # A method that does not train never needs the training split (it is built for the test images' shape).
            trains = method_class(spec.method).train_kind != TrainKind.NONE
            train_set = self.dataset(spec.source, spec.train_split, spec.source_options()) if trains else test_set
        except UserError:
            raise
        except (ValueError, TypeError, KeyError) as error:  # a setting the data cannot meet, or a bad dataset option
            raise UserError(f"{context}: {_message(error)}") from None
        try:
            method = self.build(spec, train_set)
        except UserError:
            raise
        except (ValueError, TypeError, KeyError) as error:
            backbone = spec.backbone or method_class(spec.method).default_backbone
            raise UsageError(f"{context}, backbone {backbone} {spec.backbone_options or ''}: {_message(error)}; "
                             f"check the backbone and method options") from None
        config = self.train_config(spec, method, train_set)
        if trains and is_union(train_set) and method.train_kind == TrainKind.EPISODIC:
            try:
                check_source_episodes(train_set, config.ways, config.shots, config.queries)
            except ValueError as error:
                raise UsageError(f"{context}: {error}") from None
        conversion = None
        if trains and test_set is not train_set and not accepts_any_image_format(method.backbone):
            # The backbone is built for the source's images: bring the target's to that format, recorded.
            from fewshot.data.convert import image_format, match_format

            if test_set.is_images and image_format(test_set) != image_format(train_set):
                test_set, conversion = match_format(test_set, train_set)
        watch, skipped = self.prepare_watch(spec, context) if trains and self.watch_episodes else (None, None)
        return PreparedCell(spec, test_set, episodes, train_set, method, config, trains, conversion, watch, skipped)

    def prepare_watch(self, spec: CellSpec, context: str) -> tuple[tuple[ClassDataset, EpisodeSet] | None,
                                                                     str | None]:
        """The validation data a training is watched on: ``watch_episodes`` fixed-shape episodes of the cell's
        ways and shots (seed ``spec.seed``) from the source's ``val`` split, or why there is nothing held out."""
        if spec.train_split != "train":
            return None, f"not watched: the training split {spec.train_split!r} holds the validation classes"
        if distributed.world_size() > 1:
            raise UsageError("--watch runs in one process; drop it under torchrun")
        try:
            val_set = self.dataset(spec.source, "val", spec.source_options())
            episodes = sample_episodes(val_set, spec.ways, spec.shots, spec.queries, self.watch_episodes,
                                       seed=spec.seed)
        except UserError as error:
            raise UsageError(f"{context}: --watch needs {spec.source}'s 'val' split: {error}") from None
        except (ValueError, TypeError, KeyError) as error:
            raise UsageError(f"{context}: --watch needs {spec.source}'s 'val' split: {_message(error)}; or drop "
                             f"--watch") from None
        return (val_set, episodes), None

    def watch(self, cell: PreparedCell) -> Watch | None:
        """The :class:`~fewshot.train.session.Watch` of a prepared cell: :data:`WATCH_POINTS` accuracies over its
        training on the validation episodes (None when nothing is watched)."""
        if cell.watch is None:
            return None
        val_set, episodes = cell.watch
        method = cell.method

        def score() -> float:
            was = method.training
            result = evaluate(method, val_set, episodes, device=self.device, batch_size=self.eval_batch_size,
                              progress=False)
            method.train(was)
            return float(result.accuracies.mean())

        return Watch(every=max(cell.config.steps // WATCH_POINTS, 1), score=score,
                     describe={"method": method.name, "split": "val", "episodes": len(episodes), "ways": episodes.ways,
                               "shots": episodes.shots, "queries": episodes.queries, "seed": episodes.seed,
                               "episode_hash": episodes.hash})

    def run(self, spec: CellSpec | PreparedCell) -> RunRecord:
        """Train (or reuse) and evaluate one cell; returns its record (not yet saved).

        Under torchrun, rank 0 trains (and writes the checkpoint) while the others wait, then they load it, or,
        for a method whose meta-batch splits over the ranks (:func:`~fewshot.train.loop.split_across_ranks`),
        every rank trains its block of each meta-batch (with ``data_parallel``, supervised pre-training its slice
        of each batch); the test episodes are sharded over the ranks; every rank returns rank 0's record, and only
        rank 0 should save it (identical bytes if others do)."""
        cell = spec if isinstance(spec, PreparedCell) else self.prepare(spec)
        spec, test_set, episodes, train_set = cell.spec, cell.test_set, cell.episodes, cell.train_set
        method, config, trains = cell.method, cell.config, cell.trains
        def train() -> TrainReport:
            return fit(method, train_set, config, seed=spec.train_seed, checkpoint_dir=self.checkpoint_dir,
                       device=self.device, progress=self.progress, checkpoint_seconds=self.checkpoint_seconds,
                       data_parallel=spec.data_parallel, watch=self.watch(cell))

        report = train() if split_across_ranks(method, spec.data_parallel) else distributed.main_first(train)
        split_by = "batch" if method.train_kind == TrainKind.SUPERVISED else "meta-batch"
        result = evaluate(method, test_set, episodes, device=self.device, batch_size=self.eval_batch_size,
                          progress=self.progress, precision=spec.precision)
        fixed = spec.fixed_episodes
        variable = isinstance(episodes, VariableEpisodeSet)   # ways, shots and queries 0: drawn per episode
        shape = (0, 0, 0) if variable else (episodes.ways, episodes.shots, episodes.queries) if fixed else \
            (spec.ways, spec.shots, spec.queries)
        record = RunRecord(
            method=spec.method, dataset=fixed or spec.dataset, split=spec.test_split,
            ways=shape[0], shots=shape[1], queries=shape[2], episodes=len(episodes),
            episode_seed=episodes.seed if fixed else spec.seed, episode_hash=result.episode_hash,
            accuracies=result.accuracies.tolist(), train_seconds=report.seconds, eval_seconds=result.seconds,
            config={**method.describe(),
                    # Pretrained backbones: architecture, weights sha256 and preprocessing.
                    "backbone_identity": getattr(method.backbone, "feature_cache_identity", None),
                    "train": dataclasses.asdict(config) if trains else {},
                    "dataset_options": spec.dataset_options, "train_split": spec.train_split,
                    "train_dataset": learned_from(spec, method, trains), "fixed_episodes": fixed,
                    **({"cross_domain": True} if spec.train_dataset else {}),
                    **({"train_sources": describe_union(cell.train_set)} if is_union(cell.train_set) else {}),
                    **({"train_dataset_options": spec.train_dataset_options} if spec.train_dataset_options else {}),
                    **({"target_conversion": cell.conversion} if cell.conversion else {}),
                    **({"precision": spec.precision} if spec.precision != "fp32" else {}),
                    **({"protocol": {**episodes.describe(), "chance": float((1.0 / episodes.ways).mean())}}
                       if variable else {})},
            train={"checkpoint": str(report.checkpoint) if report.checkpoint else None, "loaded": report.loaded,
                   "steps": report.steps, "seed": spec.train_seed, "final_loss": report.final_loss,
                   "curve": report.curve, "warnings": report.warnings,
                   **({"watch": watched} if (watched := _watch_info(cell, report)) else {}),
                   **({"split": {"ranks": report.ranks, "by": split_by}} if report.ranks > 1 else {})},
            environment={**environment(str(self.device)), **result.timings, **result.used},
            created=now(), fingerprint=spec.fingerprint(),
        )
        return distributed.broadcast(record)


def _watch_info(cell: PreparedCell, report: TrainReport) -> dict[str, Any]:
    """The record's ``train.watch``: the held-out curve, or why a watch asked for has none."""
    if report.watch:
        return report.watch
    if cell.watch_skipped:
        return {"skipped": cell.watch_skipped}
    if cell.watch is not None and report.loaded:
        return {"skipped": "not watched: the checkpoint loaded was trained without a watch"}
    return {}


def learned_from(spec: CellSpec, method: FewShotMethod, trains: bool) -> str:
    """What a cell's method learned from: its training dataset, or, in a cross-domain cell whose method does not
    train, the source of its backbone's features (a pretrained backbone counts as a source of its own)."""
    if trains or not spec.train_dataset:
        return spec.source
    return pretrained_on(method.backbone) or "nothing (untrained backbone)"


def _message(error: Exception) -> str:
    return str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
