"""One thread cap, ``$LAB_NUM_THREADS``, for torch and for numpy's BLAS/OpenMP pools.

Toy models gain nothing from many threads, and oversubscribed threads on a busy 2-core machine slow
training by 10x or more (a 2-thread SVD ran ~30x slower than a 1-thread one, FD 10x): the Makefile sets
LAB_NUM_THREADS=1. torch's limit does not reach the pools of numpy, scipy and scikit-learn; threadpoolctl
(which scikit-learn brings) does, and without it only torch is limited.
"""
from __future__ import annotations

import os
from contextlib import contextmanager

import torch


def num_threads() -> int | None:
    """``$LAB_NUM_THREADS`` as a thread count (at least 1), or None when it is not set."""
    n = os.environ.get("LAB_NUM_THREADS")
    return max(1, int(n)) if n else None


def _limit_pools(n: int):
    """Limit the BLAS/OpenMP pools loaded now to ``n`` threads; the limiter (None without threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_limits  # optional: the lab does not require it
    except ImportError:
        return None
    return threadpool_limits(limits=n)


def cap_threads() -> None:
    """Apply ``$LAB_NUM_THREADS`` for the whole process: torch's threads and the pools loaded so far
    (``import lab`` does this)."""
    n = num_threads()
    if n is not None:
        torch.set_num_threads(n)
        _limit_pools(n)  # kept: never restored


@contextmanager
def blas_threads():
    """A context (or decorator, ``@blas_threads()``) limiting numpy's BLAS/OpenMP pools to
    ``$LAB_NUM_THREADS`` while it runs, including pools loaded after ``import lab`` (scipy's); no-op when
    the variable is not set."""
    n = num_threads()
    limiter = _limit_pools(n) if n is not None else None
    try:
        yield
    finally:
        if limiter is not None:
            limiter.restore_original_limits()
