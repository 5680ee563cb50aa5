"""Expert trajectories for trajectory matching (MTT) and flat trajectory distillation (FTD).

An expert is a ConvNet trained on the real digits from a random initialisation; its flattened parameters are
recorded at initialisation and after every epoch (MTT's ``buffer.py``, Cazenavette et al. CVPR 2022,
github.com/GeorgeCazenavette/mtt-distillation). Two kinds:

- ``sgd``: plain SGD, no momentum, no weight decay, DSA on the real batches (MTT);
- ``sam``: the same with a surrogate-gap sharpness-aware step (GSAM, Zhuang et al. ICLR 2022, as FTD's
  ``buffer/buffer_FTD.py``, Du et al. CVPR 2023, github.com/AngusDujw/FTD-distillation): g = grad L(w);
  e = rho g/||g||; g_p = grad L(w + e); g_perp = g - (<g, g_p>/||g_p||^2) g_p; step along g_p - alpha g_perp.

Recording is deterministic from a seed (the init and the batch order come from CPU generators) and shows a
progress bar. The recorded trajectories are shipped in ``assets/zoo/dd/`` (``experts_<kind>.safetensors`` with
the tensor ``traj`` of shape (experts, epochs + 1, parameters), and a JSON card); when they are absent they are
built once into ``lab.io.cache_root()/dd`` (:func:`load_experts`).

Fidelity notes: batch 32 (about 45 steps per epoch for 1,437 images; at MTT's 256 an epoch is 6 steps), 6
experts of 6 epochs instead of 100 of 50 (only max_start_epoch + expert_epochs epochs are ever used); GSAM
non-adaptive (e = rho g/||g||), rho 0.05, alpha 0.4.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from lab.errors import LabError
from lab.io import atomic_write_json, cache_root, load_tensors, read_json, save_tensors
from lab.dd.base import augment, digits_data, flat_params, new_net, test_metrics

KINDS = ("sgd", "sam")
ASSETS = Path(__file__).resolve().parents[2] / "assets" / "zoo" / "dd"


@dataclass
class ExpertRecipe:
    kind: str = "sgd"
    experts: int = 6
    epochs: int = 6
    lr: float = 0.01
    batch: int = 32
    width: int = 32
    rho: float = 0.05
    alpha: float = 0.4
    augment: str = "dsa"
    seed: int = 0


def _grads(net, x, y):
    loss = F.cross_entropy(net(x), y)
    return loss, torch.autograd.grad(loss, list(net.parameters()))


def record_expert(recipe: ExpertRecipe, index: int, device="cpu") -> tuple[torch.Tensor, list[dict]]:
    """One expert's trajectory (epochs + 1, parameters) and its test metrics per epoch."""
    r = recipe
    xtr, ytr, _, _ = digits_data(device)
    seed = r.seed * 1000 + index
    net = new_net(r.width, seed, device)
    params = list(net.parameters())
    gen = torch.Generator().manual_seed(seed + 17)
    traj, metrics = [flat_params(net).cpu()], [test_metrics(net)]
    n = len(xtr)
    for _ in range(r.epochs):
        perm = torch.randperm(n, generator=gen).to(device)
        for i in range(0, n, r.batch):
            idx = perm[i:i + r.batch]
            x = augment(xtr[idx], gen, r.augment, siamese=False)
            y = ytr[idx]
            _, g = _grads(net, x, y)
            if r.kind == "sam":
                gnorm = torch.sqrt(sum((t ** 2).sum() for t in g)) + 1e-12
                with torch.no_grad():
                    eps = [r.rho * t / gnorm for t in g]
                    for p, e in zip(params, eps):
                        p.add_(e)
                _, gp = _grads(net, x, y)
                with torch.no_grad():
                    for p, e in zip(params, eps):
                        p.sub_(e)
                    dot = sum((a * b).sum() for a, b in zip(g, gp))
                    gp2 = sum((b ** 2).sum() for b in gp) + 1e-12
                    step = [b - r.alpha * (a - dot / gp2 * b) for a, b in zip(g, gp)]
            else:
                step = g
            with torch.no_grad():
                for p, s in zip(params, step):
                    p.sub_(r.lr * s)
        traj.append(flat_params(net).cpu())
        metrics.append(test_metrics(net))
    return torch.stack(traj), metrics


def build_experts(recipe: ExpertRecipe, folder: Path, device="cpu", progress: bool = True) -> Path:
    """Record ``recipe.experts`` trajectories into ``folder/experts_<kind>.safetensors`` (+ ``.json``)."""
    from tqdm.auto import tqdm  # lazy: the bar only when building

    if recipe.kind not in KINDS:
        raise LabError(f"unknown expert kind {recipe.kind!r}; allowed: {', '.join(KINDS)}")
    trajs, cards = [], []
    for i in tqdm(range(recipe.experts), desc=f"dd experts ({recipe.kind})", disable=not progress, leave=False):
        t, m = record_expert(recipe, i, device)
        trajs.append(t)
        cards.append(m)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"experts_{recipe.kind}.safetensors"
    save_tensors(path, {"traj": torch.stack(trajs).contiguous()})
    atomic_write_json(folder / f"experts_{recipe.kind}.json", {"recipe": asdict(recipe), "test": cards})
    return path


def experts_path(kind: str) -> Path:
    """Where the ``kind`` trajectories are: shipped in assets/zoo/dd if present, else the user cache."""
    if kind not in KINDS:
        raise LabError(f"unknown expert kind {kind!r}; allowed: {', '.join(KINDS)}")
    shipped = ASSETS / f"experts_{kind}.safetensors"
    return shipped if shipped.exists() else cache_root() / "dd" / f"experts_{kind}.safetensors"


def load_experts(kind: str, device="cpu", build: bool = True, progress: bool = True) -> tuple[torch.Tensor, dict]:
    """``(traj, card)``: the trajectories (experts, epochs + 1, parameters) and their card (recipe, test metrics
    per epoch), built into the cache first when neither shipped nor cached."""
    path = experts_path(kind)
    if not path.exists():
        if not build:
            raise LabError(f"no {kind} expert trajectories at {path}; build them with "
                           f"lab.dd.experts.load_experts({kind!r})")
        build_experts(ExpertRecipe(kind=kind), path.parent, progress=progress)
    traj = load_tensors(path)["traj"].to(device)
    card = read_json(path.with_suffix(".json"))
    return traj, card


__all__ = ["ExpertRecipe", "KINDS", "build_experts", "experts_path", "load_experts", "record_expert"]
