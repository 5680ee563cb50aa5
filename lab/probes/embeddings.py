"""2D embeddings of network features, for teacher-vs-student side-by-side plots. Data only (numpy, DataFrames).

- ``embed_2d(features, method="pca" | "umap")``: PCA with scikit-learn (fast, deterministic: sklearn fixes the
  sign of each component), or UMAP (umap-learn, the ``notebooks`` extra) on an exact k-nearest-neighbour graph
  computed by scikit-learn's ``NearestNeighbors`` and handed to UMAP as ``precomputed_knn`` (so UMAP's
  approximate NN-descent never runs). A UMAP result is cached on disk, keyed by a hash of the features and
  every parameter, in an ``.npz`` written atomically (``lab.io.save_npz``): the first UMAP call of a process
  costs tens of seconds (numba compilation), a cache hit milliseconds. Interactive views use PCA.
- ``teacher_student_embeddings``: the features of one teacher layer and one student layer on the same inputs,
  each embedded in 2D, the student's rotated/reflected onto the teacher's (orthogonal Procrustes) so the two
  panels are comparable; a tidy DataFrame (model, layer, index, x, y, label).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lab.errors import LabError
from lab.io import cache_root
from lab.metrics.threads import blas_threads
from lab.probes.kd import features

METHODS = ("pca", "umap")
#: UMAP settings that are not arguments of embed_2d (part of the cache key)
UMAP_SETTINGS = {"min_dist": 0.1, "metric": "euclidean", "init": "pca", "n_epochs": 200}


def default_cache_dir() -> Path:
    """Where UMAP embeddings are cached: ``$LAB_CACHE/embeddings`` (default ``~/.cache/distillation-lab``)."""
    return cache_root() / "embeddings"


def _as_features(features) -> np.ndarray:
    if torch.is_tensor(features):
        features = features.detach().float().cpu().numpy()
    try:
        a = np.asarray(features, dtype=np.float64)
    except (TypeError, ValueError):
        raise LabError(f"features must be a numeric (n, ...) array or tensor, got {type(features).__name__}") from None
    if a.ndim < 2:
        raise LabError(f"features must have shape (n, ...) with at least 2 dims, got {tuple(a.shape)}")
    a = a.reshape(a.shape[0], -1)
    if a.shape[0] < 3:
        raise LabError(f"embed_2d needs at least 3 examples, got n={a.shape[0]}")
    if not np.all(np.isfinite(a)):
        raise LabError("features contain NaN or inf; allowed: finite values only")
    return a


def _pca(a: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.decomposition import PCA  # lazy: heavy import (sklearn), keeps `import lab` fast

    k = min(2, a.shape[1], a.shape[0])
    z = PCA(n_components=k, svd_solver="full", random_state=seed).fit_transform(a)
    if k < 2:  # one feature: the second coordinate is 0
        z = np.concatenate([z, np.zeros((len(z), 2 - k))], 1)
    return z


def exact_knn(a: np.ndarray, n_neighbors: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices, distances) of shape (n, n_neighbors): each row starts with the point itself (distance 0), then
    its n_neighbors - 1 exact nearest other points (scikit-learn), the layout UMAP's ``precomputed_knn`` expects."""
    from sklearn.neighbors import NearestNeighbors  # lazy: heavy import (sklearn), keeps `import lab` fast

    nn = NearestNeighbors(n_neighbors=n_neighbors - 1).fit(a)
    d, i = nn.kneighbors()  # no query: each point's neighbours other than itself
    n = len(a)
    return (np.concatenate([np.arange(n)[:, None], i], 1).astype(np.int64),
            np.concatenate([np.zeros((n, 1)), d], 1).astype(np.float32))


def cache_key(a: np.ndarray, params: dict) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"shape": list(a.shape), **params}, sort_keys=True).encode())
    h.update(np.ascontiguousarray(a, dtype=np.float64).tobytes())
    return h.hexdigest()[:32]


def _umap(a: np.ndarray, seed: int, n_neighbors: int) -> np.ndarray:
    import warnings

    try:
        import umap  # lazy: heavy import (umap), keeps `import lab` fast
    except ImportError:
        raise LabError("method='umap' needs umap-learn (pip install -e '.[notebooks]'); allowed without it: "
                       "method='pca'") from None
    idx, dist = exact_knn(a, n_neighbors)
    with warnings.catch_warnings():  # no NNDescent index (transform() unavailable) and n_jobs=1 under a seed
        warnings.simplefilter("ignore", UserWarning)
        reducer = umap.UMAP(n_components=2, n_neighbors=n_neighbors, precomputed_knn=(idx, dist, None),
                            random_state=seed, n_jobs=1, **UMAP_SETTINGS)
        return np.asarray(reducer.fit_transform(a), dtype=np.float64)


def embed_2d(features, method: str = "pca", seed: int = 0, cache_dir=None, n_neighbors: int = 15) -> np.ndarray:
    """(n, 2) float64 embedding of ``features`` (n, ...) (flattened per example).

    ``method="pca"``: scikit-learn PCA (never cached: it is fast). ``method="umap"``: UMAP on the exact
    ``n_neighbors``-NN graph (clipped to n - 1), seeded with ``seed``; cached as
    ``<cache_dir>/umap-<hash>.npz`` (default ``default_cache_dir()``), so the same features and parameters
    return the identical array without recomputing.
    """
    if method not in METHODS:
        raise LabError(f"unknown embedding method {method!r}; allowed: {', '.join(METHODS)}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise LabError(f"seed must be an integer, got {seed!r}")
    a = _as_features(features)
    if method == "pca":
        with blas_threads():
            return _pca(a, seed)
    if not isinstance(n_neighbors, int) or isinstance(n_neighbors, bool) or n_neighbors < 2:
        raise LabError(f"n_neighbors must be an integer >= 2, got {n_neighbors!r}")
    k = min(n_neighbors, a.shape[0] - 1)
    params = {"method": "umap", "seed": seed, "n_neighbors": k, **UMAP_SETTINGS}
    path = Path(cache_dir if cache_dir is not None else default_cache_dir()) / f"umap-{cache_key(a, params)}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as f:
            return f["embedding"]
    with blas_threads():
        z = _umap(a, seed, k)
    from lab.io import save_npz  # inside: no cycle; lab.io is already imported at the top

    path.parent.mkdir(parents=True, exist_ok=True)
    save_npz(path, embedding=z, params=np.asarray(json.dumps(params)))
    return z


def _procrustes(ref: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Rotate/reflect (and rescale) z onto ref around their means (orthogonal Procrustes); the shape of z is kept."""
    from scipy.linalg import orthogonal_procrustes  # lazy: heavy import (scipy), keeps `import lab` fast

    zc, rc = z - z.mean(0), ref - ref.mean(0)
    r, _ = orthogonal_procrustes(zc, rc)
    nz, nr = np.linalg.norm(zc), np.linalg.norm(rc)
    return (zc @ r) * (nr / nz if nz > 0 else 1.0) + ref.mean(0)


def teacher_student_embeddings(teacher, student, x, y, layer_t: str, layer_s: str, method: str = "pca",
                               seed: int = 0, cache_dir=None, n_neighbors: int = 15, align: bool = True) -> pd.DataFrame:
    """2D embeddings of ``teacher``'s layer ``layer_t`` and ``student``'s layer ``layer_s`` on the same inputs ``x``
    (labels ``y``): a tidy DataFrame with columns model ("teacher"/"student"), layer, index, x, y, label. With
    ``align`` the student's embedding is rotated/reflected and scaled onto the teacher's (orthogonal
    Procrustes; distances within it are unchanged up to scale)."""
    labels = (y.detach().cpu().numpy() if torch.is_tensor(y) else np.asarray(y)).reshape(-1)
    if len(labels) != len(x):
        raise LabError(f"y must hold one label per input: got {len(labels)} labels for {len(x)} inputs")
    zt = embed_2d(features(teacher, x, [layer_t])[layer_t], method, seed, cache_dir, n_neighbors)
    zs = embed_2d(features(student, x, [layer_s])[layer_s], method, seed, cache_dir, n_neighbors)
    if align:
        with blas_threads():
            zs = _procrustes(zt, zs)
    idx = np.arange(len(labels))
    return pd.concat([pd.DataFrame({"model": name, "layer": layer, "index": idx, "x": z[:, 0], "y": z[:, 1],
                                    "label": labels})
                      for name, layer, z in (("teacher", layer_t, zt), ("student", layer_s, zs))], ignore_index=True)


__all__ = ["embed_2d", "teacher_student_embeddings", "exact_knn", "default_cache_dir", "METHODS"]
