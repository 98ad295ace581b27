"""ClassDataset: the examples of one split (images, features or token ids) with a per-class index."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

_TOKEN_DTYPES = (torch.int64, torch.int32)


@dataclass(eq=False)
class ClassDataset:
    """All examples of one split, held as one tensor, plus which rows belong to which class.

    ``data`` is ``[N, C, H, W]`` uint8 images (scaled to [0, 1] floats by :meth:`gather`), ``[N, D]`` float
    features, or ``[N, L]`` int64 token ids of texts (``-1`` after each text's last token, see
    :mod:`fewshot.data.text`; kept as integers by :meth:`gather`), whose ``tokenizer`` says who made them
    (``{"encoder": ..., "sha256": ...}``; a backbone reading them must match it). ``labels[i]`` is the class of row
    ``i`` in ``0..num_classes-1``. ``groups`` optionally gives each class a group (an Omniglot alphabet, say) for
    within-group episodes. Move it to a GPU with :meth:`to` and episodes gather their examples there in one step.
    """

    data: Tensor
    labels: Tensor
    class_names: list[str]
    name: str = "dataset"
    groups: Tensor | None = None
    group_names: list[str] | None = None
    _fingerprint: str | None = field(default=None, repr=False)
    #: The fingerprint of what this dataset is a format conversion of (same rows, labels and classes): images
    #: resized or recoloured by :mod:`fewshot.data.convert`, or the texts that token ids were made from (one per
    #: encoder). Episodes drawn from that one are episodes of this one, and carry its fingerprint.
    converted_from: str | None = None
    tokenizer: dict[str, str] | None = None

    def __post_init__(self) -> None:
        self.data = torch.as_tensor(self.data)
        self.labels = torch.as_tensor(self.labels, dtype=torch.long)
        if self.data.shape[0] != self.labels.shape[0]:
            raise ValueError(f"{self.name}: {self.data.shape[0]} examples but {self.labels.shape[0]} labels")
        if self.labels.numel() and (self.labels.min() < 0 or self.labels.max() >= len(self.class_names)):
            raise ValueError(f"{self.name}: labels must lie in 0..{len(self.class_names) - 1}")
        counts = torch.bincount(self.labels.cpu(), minlength=len(self.class_names))
        if (counts == 0).any():
            empty = [self.class_names[i] for i in torch.nonzero(counts == 0).flatten()[:5].tolist()]
            raise ValueError(f"{self.name}: classes without any example: {empty}")
        order = torch.argsort(self.labels.cpu(), stable=True)
        # index[c, j] is the row of the j-th example of class c; -1 pads classes with fewer examples.
        index = torch.full((len(self.class_names), int(counts.max()) if counts.numel() else 0), -1, dtype=torch.long)
        starts = torch.cumsum(counts, 0) - counts
        position = torch.arange(len(order)) - starts[self.labels.cpu()[order]]
        index[self.labels.cpu()[order], position] = order
        self.class_counts = counts
        self.class_index = index
        if self.groups is not None:
            self.groups = torch.as_tensor(self.groups, dtype=torch.long)
            if self.groups.shape != (len(self.class_names),):
                raise ValueError(f"{self.name}: groups must hold one group id per class")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def is_images(self) -> bool:
        return self.data.dim() == 4

    @property
    def is_tokens(self) -> bool:
        """True for token ids ``[N, L]`` (integers, not images)."""
        return self.data.dim() == 2 and self.data.dtype in _TOKEN_DTYPES

    @property
    def device(self) -> torch.device:
        return self.data.device

    def __len__(self) -> int:
        return self.data.shape[0]

    def gather(self, index: Tensor, device: torch.device | str | None = None) -> Tensor:
        """Rows ``index`` (any shape) as tensors ``[*index.shape, ...]`` on ``device``, in one step: images and
        features as floats, token ids as the integers they are."""
        device = torch.device(device) if device is not None else self.data.device
        # int64 here, per call: episode sets keep their rows as int32 (fewshot.data.episodes)
        rows = self.data[index.to(self.data.device, torch.int64)].to(device, non_blocking=True)
        if rows.dtype == torch.uint8:
            return rows.float().div_(255.0)
        if rows.dtype in _TOKEN_DTYPES:
            return rows  # token ids index an embedding table: they stay integers
        return rows.float()

    def to(self, device: torch.device | str) -> "ClassDataset":
        """The same dataset with its data on ``device`` (the class index stays on the CPU for sampling)."""
        moved = ClassDataset(self.data.to(device), self.labels, self.class_names, self.name, self.groups,
                             self.group_names, self._fingerprint, self.converted_from, tokenizer=self.tokenizer)
        return moved

    def holds_episodes_of(self, fingerprint: str) -> bool:
        """True when episodes drawn from the dataset with ``fingerprint`` are episodes of this one."""
        return fingerprint in (self.fingerprint(), self.converted_from)

    def episodes_fingerprint(self) -> str:
        """The fingerprint episodes of this dataset carry: that of the examples themselves, so one set of episodes
        (and its hash) is shared by every format of them, every tokenizer's ids of the same texts included."""
        return self.converted_from or self.fingerprint()

    def fingerprint(self) -> str:
        """A sha256 of the name, labels and data: two datasets with equal fingerprints hold the same examples."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            h.update(self.name.encode())
            h.update(str(tuple(self.data.shape)).encode() + str(self.data.dtype).encode())
            h.update("\n".join(self.class_names).encode())
            h.update(self.labels.cpu().numpy().astype("<i8").tobytes())
            h.update(np.ascontiguousarray(self.data.cpu().numpy()).tobytes())
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    def select_classes(self, classes: Sequence[int] | Tensor, name: str | None = None) -> "ClassDataset":
        """A new dataset holding only ``classes`` (relabelled 0..len(classes)-1 in the given order)."""
        classes = torch.as_tensor(classes, dtype=torch.long)
        remap = torch.full((self.num_classes,), -1, dtype=torch.long)
        remap[classes] = torch.arange(len(classes))
        new_labels = remap[self.labels.cpu()]
        keep = torch.nonzero(new_labels >= 0).flatten()
        # The same classes of the examples this one converts, converted: a fingerprint of the source's subset.
        source = None if self.converted_from is None else hashlib.sha256(
            f"{self.converted_from}|{classes.tolist()}".encode()).hexdigest()
        return ClassDataset(
            self.data[keep.to(self.data.device)],
            new_labels[keep],
            [self.class_names[c] for c in classes.tolist()],
            name or self.name,
            self.groups[classes] if self.groups is not None else None,
            self.group_names,
            converted_from=source,
            tokenizer=self.tokenizer,
        )

    @classmethod
    def from_arrays(cls, data, labels, class_names: Sequence[str] | None = None, name: str = "arrays",
                    groups=None, group_names: Sequence[str] | None = None) -> "ClassDataset":
        """Build a dataset from in-memory arrays or tensors; labels may be any hashable values.

        Images are ``[N, H, W]`` (grayscale) or ``[N, C, H, W]``; uint8 is kept as is, floats are taken as
        ``[0, 1]`` images when 3-D/4-D and as feature vectors when 2-D.
        """
        data_t = torch.as_tensor(np.asarray(data)) if not isinstance(data, Tensor) else data
        if data_t.dim() == 3:
            data_t = data_t.unsqueeze(1)
        raw = labels.tolist() if isinstance(labels, (Tensor, np.ndarray)) else list(labels)
        if class_names is None:
            uniques = sorted(set(raw), key=lambda v: (str(type(v)), v))
            class_names = [str(u) for u in uniques]
            lookup = {u: i for i, u in enumerate(uniques)}
            label_t = torch.tensor([lookup[v] for v in raw], dtype=torch.long)
        else:
            label_t = torch.tensor(raw, dtype=torch.long)
        return cls(data_t, label_t, list(class_names), name,
                   None if groups is None else torch.as_tensor(groups), list(group_names) if group_names else None)
