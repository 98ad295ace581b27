"""Training on the base classes: the configuration (:mod:`.config`), per-dataset presets (:mod:`.presets`), the
loops and :func:`fit` (:mod:`.loop`)."""
from fewshot.train.config import TrainConfig, dataset_family
from fewshot.train.loop import TrainingDiverged, TrainReport, fit
from fewshot.train.presets import train_preset

__all__ = ["TrainConfig", "TrainReport", "TrainingDiverged", "dataset_family", "fit", "train_preset"]
