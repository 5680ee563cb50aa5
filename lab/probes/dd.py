"""Dataset-distillation probes: what a distilled set and its trajectories look like, as data (arrays and tidy
DataFrames); the figures are in ``lab.viz.dd``.

- ``image_frames(method)``: the synthetic images recorded over the iterations (its, images (F, n, 1, 8, 8),
  labels), for the evolution grids.
- ``class_grid(images, labels)``: a distilled set as (classes, ipc, 1, 8, 8), one row per class.
- ``parameter_paths(experts, students)``: expert trajectories and student paths (a net trained on the distilled
  set from an expert's initialisation) projected to 2D by a PCA fitted on all of their flattened parameters.
- ``student_path(...)``: the flattened parameters of such a student, one per expert epoch.
- ``trajectory_error_table(...)``: the accumulated trajectory error of FTD (Du et al., CVPR 2023) per expert and
  epoch (:func:`lab.dd.trajectory.trajectory_error`).
- ``accuracy_table(results)``: test accuracy of fresh nets against images per class, with the random-real and
  full-data baselines, from bench/showcase results.
- ``showcase()``: the shipped distilled sets (``assets/zoo/dd/showcase.*``, written by ``bench/dd.py``) the app
  and notebook open first.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lab.dd.base import N_CLASSES
from lab.dd.experts import ASSETS, load_experts
from lab.dd.trajectory import trajectory_error
from lab.errors import LabError
from lab.io import load_tensors, read_json

SHOWCASE = "showcase"


def image_frames(method) -> dict:
    """``{"its": [...], "images": (F, n, 1, 8, 8) array, "labels": (n,) array, "ipc": int}`` of a DD method."""
    its = [int(i) for i, _ in method.frames]
    imgs = np.stack([f.numpy() for _, f in method.frames])
    return {"its": its, "images": imgs, "labels": method.labels().cpu().numpy(), "ipc": int(method.config.ipc)}


def class_grid(images, labels=None) -> np.ndarray:
    """A distilled set (n, 1, 8, 8), class by class, as (classes, ipc, 1, 8, 8)."""
    a = np.asarray(images.detach().cpu() if torch.is_tensor(images) else images, dtype=np.float32)
    if a.ndim != 4 or len(a) % N_CLASSES:
        raise LabError(f"images must be (classes x ipc, C, H, W), got shape {a.shape}")
    return a.reshape(N_CLASSES, len(a) // N_CLASSES, *a.shape[1:])


def student_path(images, labels, lr: float, experts: torch.Tensor, expert: int = 0, syn_steps: int = 20,
                 expert_epochs: int = 2, seed: int = 0, augment_mode: str = "dsa") -> torch.Tensor:
    """The flattened parameters (epochs + 1, P) of a net trained on the distilled set from expert ``expert``'s
    initialisation, one point per expert epoch (syn_steps / expert_epochs synthetic steps each)."""
    from lab.dd.base import augment, forward_flat, new_net  # lazy: only this probe trains nets
    import torch.nn.functional as F

    x, y = torch.as_tensor(images).float(), torch.as_tensor(labels).long()
    net = new_net(32, 0)
    per = max(1, round(syn_steps / expert_epochs))
    gen = torch.Generator().manual_seed(int(seed) * 7 + int(expert))
    theta, out = experts[expert, 0].clone(), [experts[expert, 0].clone()]
    for _ in range(experts.shape[1] - 1):
        for _ in range(per):
            th = theta.clone().requires_grad_(True)
            loss = F.cross_entropy(forward_flat(net, th, augment(x, gen, augment_mode, siamese=False)), y)
            theta = (th - lr * torch.autograd.grad(loss, th)[0]).detach()
        out.append(theta.clone())
    return torch.stack(out)


def parameter_paths(experts: torch.Tensor, students: dict | None = None) -> pd.DataFrame:
    """Rows (path, kind, epoch, pc1, pc2): each expert trajectory (experts (E, T, P)) and each student path
    (name -> (T', P)) projected on the first two principal components of all their points together."""
    pts, meta = [], []
    for e in range(len(experts)):
        for t in range(experts.shape[1]):
            pts.append(experts[e, t].numpy())
            meta.append((f"expert {e}", "expert", t))
    for name, path in (students or {}).items():
        for t in range(len(path)):
            pts.append(np.asarray(path[t]))
            meta.append((name, "student", t))
    X = np.stack(pts).astype(np.float64)
    X = X - X.mean(0, keepdims=True)
    _, s, vt = np.linalg.svd(X, full_matrices=False)
    Z = X @ vt[:2].T
    var = (s ** 2) / max((s ** 2).sum(), 1e-12)
    df = pd.DataFrame(meta, columns=["path", "kind", "epoch"])
    df["pc1"], df["pc2"] = Z[:, 0], Z[:, 1]
    df.attrs["explained"] = [float(var[0]), float(var[1])]
    return df


def trajectory_error_table(images, labels, lr: float, kind: str, method: str = "", epochs: int | None = None,
                           syn_steps: int = 20, expert_epochs: int = 2, expert_ids=None) -> pd.DataFrame:
    """The accumulated trajectory error rows of a distilled set against the ``kind`` experts ("sgd" for MTT,
    "sam" for FTD), with a ``method`` column."""
    experts, _ = load_experts(kind)
    rows = trajectory_error(torch.as_tensor(images).float(), torch.as_tensor(labels).long(), lr, experts,
                            expert_ids=expert_ids, syn_steps=syn_steps, expert_epochs=expert_epochs, epochs=epochs)
    df = pd.DataFrame(rows)
    df.insert(0, "method", method or kind)
    return df


def accuracy_table(results: dict) -> pd.DataFrame:
    """Rows (method, ipc, acc, acc_std, n) from a results dict ``{"accuracy": {label: {ipc: {"accs": [...]}}}}``
    (bench/results/dd.json or the showcase card); the full data appears under ipc "all" (one value)."""
    rows = []
    for label, by_ipc in results.get("accuracy", {}).items():
        for ipc, r in by_ipc.items():
            a = np.asarray(r["accs"], dtype=float)
            rows.append({"method": label, "ipc": ipc, "acc": float(a.mean()),
                         "acc_std": float(a.std(ddof=1)) if len(a) > 1 else 0.0, "n": int(len(a))})
    return pd.DataFrame(rows, columns=["method", "ipc", "acc", "acc_std", "n"])


def shipped_trajectory_error(card: dict, ipc: int, methods=("mtt", "ftd")) -> pd.DataFrame:
    """The shipped accumulated-trajectory-error rows (the showcase card's, written by bench/dd.py) of ``methods`` at
    ``ipc`` images per class, one table with a ``method`` column (``lab.viz.dd.trajectory_error_figure``)."""
    te = card.get("trajectory_error", {})
    missing = [m for m in methods if f"{m}/ipc{ipc}" not in te]
    if missing:
        raise LabError(f"no shipped trajectory error for {', '.join(missing)} at ipc {ipc}; allowed: "
                       f"{', '.join(sorted(te)) or 'none (run python bench/dd.py)'}")
    return pd.concat([pd.DataFrame(te[f"{m}/ipc{ipc}"]).assign(method=m) for m in methods], ignore_index=True)


def showcase(folder: Path | None = None) -> dict:
    """The shipped distilled sets: ``{"card": {...}, "sets": {"<method>/ipc<k>": {"images", "labels", "lr",
    "frames", "its", "acc_seed0"}}}``, from ``assets/zoo/dd/showcase.safetensors`` + ``showcase.json``."""
    folder = Path(folder or ASSETS)
    path = folder / f"{SHOWCASE}.safetensors"
    if not path.exists():
        raise LabError(f"no shipped distilled sets at {path}; run `python bench/dd.py --write` to make them")
    t = load_tensors(path)
    card = read_json(folder / f"{SHOWCASE}.json")
    sets = {}
    for key, info in card["sets"].items():
        sets[key] = {**info, "images": t[f"{key}/images"], "labels": t[f"{key}/labels"], "lr": info["lr"],
                     "frames": t.get(f"{key}/frames"), "its": info.get("its", [])}
    return {"card": card, "sets": sets}


__all__ = ["image_frames", "class_grid", "student_path", "parameter_paths", "trajectory_error_table",
           "accuracy_table", "showcase"]
