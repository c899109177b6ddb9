"""A split data set, and how a split is made (stratified where the labels allow it)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dnnkit.core.tensors import rows
from dnnkit.errors import DataError


@dataclass
class Dataset:
    """A split data set, ready for a model of the spec it was loaded for."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    labels: list[str] | None = None

    def split(self, which: str) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(x, y)`` of ``train``, ``val`` or ``test``."""
        if which not in ("train", "val", "test"):
            raise DataError(f"split: expected 'train', 'val' or 'test', got {which!r}")
        return getattr(self, f"x_{which}"), getattr(self, f"y_{which}")

    def sizes(self) -> dict[str, int]:
        return {"train": rows(self.x_train), "val": rows(self.x_val), "test": rows(self.x_test)}


def split(x: np.ndarray, y: np.ndarray, fraction: float, seed: int, stratify: bool):
    from sklearn.model_selection import train_test_split

    strat = y if stratify and len(np.unique(y)) > 1 and np.min(np.bincount(y)) >= 2 else None
    return train_test_split(x, y, test_size=fraction, random_state=seed, stratify=strat)
