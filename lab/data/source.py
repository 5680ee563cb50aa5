"""The bases of every data source (``Source``, and ``ImageSource`` for image sets) and the checks all of
them share (sample counts, seeds, paths).

It sits below toy2d, images and files, so each of them imports it and none imports another to reach it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from lab.errors import LabError

#: the most samples one ``sample`` call draws (a bound, so a typo cannot allocate without limit)
MAX_SAMPLES = 10_000_000
#: seeds torch accepts: any integer in [-2**63, 2**64)
SEED_RANGE = (-(2**63), 2**64 - 1)


def check_seed(seed, what: str = "seed") -> int:
    """An integer seed in ``SEED_RANGE`` (numpy integers too, not bools) -> int; anything else: LabError."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not SEED_RANGE[0] <= seed <= SEED_RANGE[1]:
        raise LabError(f"{what} must be an integer in [-2**63, 2**64 - 1], got {short_repr(seed)}")
    return int(seed)


def short_repr(v, n: int = 60) -> str:
    r = repr(v)
    return r if len(r) <= n else r[: n - 3] + "..."


def path_exists(p: "str | Path", what: str = "path") -> bool:
    """``Path(p).exists()``, but a path the OS cannot even look up (too long, NUL byte) is a one-line LabError."""
    try:
        return Path(p).expanduser().exists()
    except (OSError, ValueError) as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise LabError(f"{what} {short_repr(str(p))} cannot be used: {' '.join(str(reason).split())}") from None


class Source:
    """A 2D data source. Subclasses implement ``_draw(n, generator) -> (x, y)``."""

    name: str = "source"
    n_classes: int = 0
    #: the shape of one sample: (2,) for points, (C, H, W) for images
    shape: tuple = (2,)
    gmm: object | None = None  # a lab.data.toy2d.GMM for Gaussian mixtures (exact parameters)
    spec: str = ""

    def _draw(self, n: int, g: torch.Generator | None):  # pragma: no cover - abstract
        raise NotImplementedError

    def sample(self, n: int, generator: torch.Generator | int | None = None, labelled: bool = False):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 0 < n <= MAX_SAMPLES:
            raise LabError(f"n must be a positive integer (at most {MAX_SAMPLES:_}), got {short_repr(n)}")
        n = int(n)
        if generator is not None and not isinstance(generator, torch.Generator):
            generator = torch.Generator().manual_seed(check_seed(generator, "generator (a seed)"))
        x, y = self._draw(n, generator)
        x = x.float()
        return (x, y.long()) if labelled else x

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.spec}>"


SPLITS = ("train", "test", "all")


class ImageSource(Source):
    """A finite labelled image set (N, C, H, W) in [-1, 1], resampled with replacement."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor | None, name: str, spec: str, n_classes: int | None = None,
                 class_names: list[str] | None = None):
        x = torch.as_tensor(x, dtype=torch.float32)
        if x.ndim != 4:
            raise LabError(f"images must have shape (N, C, H, W), got {tuple(x.shape)}")
        if x.shape[0] < 2:
            raise LabError(f"need at least 2 images, got {x.shape[0]}")
        if not torch.isfinite(x).all():
            raise LabError("images contain NaN or infinite values")
        labelled = y is not None
        y = torch.zeros(x.shape[0], dtype=torch.long) if y is None else torch.as_tensor(y, dtype=torch.long)
        if y.shape != (x.shape[0],):
            raise LabError(f"labels must have shape ({x.shape[0]},), got {tuple(y.shape)}")
        if labelled and int(y.min()) < 0:
            raise LabError("labels must be integers >= 0")
        self.x, self.y, self.name, self.spec = x, y, name, spec
        self.n_classes = int(n_classes) if n_classes is not None else (int(y.max()) + 1 if labelled else 0)
        self.class_names = class_names or [str(k) for k in range(self.n_classes)]
        self.shape = tuple(x.shape[1:])

    def __len__(self) -> int:
        return self.x.shape[0]

    def _draw(self, n, g):
        idx = torch.randint(0, self.x.shape[0], (n,), generator=g)
        return self.x[idx], self.y[idx]

    def all(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x, self.y

    def split(self, which: str) -> "ImageSource":
        """The same images (a finite set has no separate split unless its loader made one)."""
        if which not in SPLITS:
            raise LabError(f"unknown split {which!r}; allowed: {', '.join(SPLITS)}")
        return self
