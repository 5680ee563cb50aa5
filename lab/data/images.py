"""Image data: scikit-learn's bundled 8x8 digits, and users' own images.

Every image source has the 2D sources' interface plus a sample ``shape`` (C, H, W):
``sample(n, generator=None, labelled=False)`` returns (n, C, H, W) floats in [-1, 1]
(and (n,) integer labels when ``labelled``). Nothing is downloaded, ever.

- ``digits``: the 1,797 8x8 digits bundled with scikit-learn (pixel values 0..16),
  scaled to [-1, 1], with a fixed stratified train/test split (test = 20%, seed 0).
- ``digits16``: the same images upsampled to 16x16 (bilinear).
- users' images: ``images:PATH`` with PATH an ImageFolder tree, an ``.npz`` with ``x``
  and ``y``, or an MNIST-style IDX file (see :mod:`lab.data.files`).
"""
from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from lab.data.files import load_images
from lab.data.source import SPLITS, ImageSource, Source  # noqa: F401  (re-exported: ImageSource, SPLITS lived here)
from lab.errors import LabError

@functools.lru_cache(maxsize=None)
def _digits_arrays():
    from sklearn.datasets import load_digits  # lazy: heavy import (sklearn), keeps `import lab` fast
    from sklearn.model_selection import train_test_split  # lazy: heavy import (sklearn), keeps `import lab` fast

    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0) * 2.0 - 1.0  # (1797, 8, 8) in [-1, 1]
    idx_train, idx_test = train_test_split(np.arange(len(x)), test_size=0.2, random_state=0, stratify=d.target)
    return x, d.target.astype(np.int64), np.sort(idx_train), np.sort(idx_test)


class Digits(ImageSource):
    """scikit-learn digits at 8x8 (``size=8``) or upsampled to 16x16 (``size=16``)."""

    def __init__(self, split: str = "train", size: int = 8):
        if split not in SPLITS:
            raise LabError(f"unknown split {split!r}; allowed: {', '.join(SPLITS)}")
        if size not in (8, 16):
            raise LabError(f"unknown digits size {size!r}; allowed: 8, 16")
        x, y, tr, te = _digits_arrays()
        idx = {"train": tr, "test": te, "all": np.arange(len(x))}[split]
        xt = torch.from_numpy(x[idx])[:, None]
        if size == 16:
            xt = F.interpolate(xt, size=(16, 16), mode="bilinear", align_corners=False).clamp(-1, 1)
        name = "digits" if size == 8 else "digits16"
        super().__init__(xt, torch.from_numpy(y[idx]), name, f"{name}" if split == "train" else f"{name}:{split}",
                         n_classes=10)
        self.size, self.split_name = size, split
        self.description = f"scikit-learn 8x8 digits ({split}, {len(self)} images)" + (" upsampled to 16x16" if size == 16 else "")

    def split(self, which: str) -> "Digits":
        return Digits(which, self.size)


DATASETS = {"digits": lambda split="train": Digits(split, 8), "digits16": lambda split="train": Digits(split, 16)}


def names() -> list[str]:
    return list(DATASETS)


def is_image_spec(spec: str) -> bool:
    s = str(spec)
    return s.split(":", 1)[0] in DATASETS or s.startswith("images:")


@functools.lru_cache(maxsize=16)
def resolve_image(spec: str) -> ImageSource:
    """``digits``, ``digits:test``, ``digits16``, ``images:PATH`` -> an ImageSource (cached: the same object)."""
    head, _, rest = str(spec).partition(":")
    if head in DATASETS:
        return DATASETS[head](rest or "train")
    if head == "images":
        return load_images(rest)
    raise LabError(f"bad image data spec {spec!r}; allowed: {', '.join(DATASETS)}, NAME:test, images:PATH")
