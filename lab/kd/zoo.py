"""KD networks on disk, and the KD teachers of the zoo.

A saved classifier is a folder with ``model.json`` (``{"kind": "classifier", "net": spec, "card": {...}}``)
and ``weights.safetensors``, both written atomically. ``kd/<task>/teacher`` entries (``lab.zoo.load``
knows them too) are shipped in ``assets/zoo/kd``; a missing one is trained on the spot from the task's
teacher recipe (cross-entropy from scratch, with a progress bar) and cached in ``$LAB_CACHE``.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import nn

from lab.errors import LabError
from lab.io import atomic_write_json, save_tensors


class KDModel:
    """A classifier or language model with its spec and card: ``save(folder, card)``, :func:`load_model`."""

    kind = "classifier"

    def __init__(self, net: nn.Module, card: dict | None = None):
        self.net, self.card = net, dict(card or {})

    def spec(self) -> dict:
        return {"kind": self.kind, "net": self.net.spec()}

    def save(self, folder, card: dict | None = None) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_tensors(folder / "weights.safetensors", dict(self.net.state_dict()))
        atomic_write_json(folder / "model.json", {**self.spec(), "card": {**self.card, **(card or {})}})
        return folder


def load_model(folder, device="cpu") -> nn.Module:
    """The network saved in ``folder`` (eval mode, on ``device``), with its card as ``net.card``.

    Validated on load: a missing folder, a missing, unparseable or non-object ``model.json``, a missing or
    bad ``net`` spec, a missing, truncated or ill-fitting ``weights.safetensors``, or either file reached
    through a symlink leading outside the folder, is one LabError line naming the file."""
    from lab.diffusion.generators import build_fitting, load_weights_into, one_line, read_model_json, read_weights
    from lab.nets.classifiers import CLASSIFIERS, build_classifier
    from lab.nets.specs import check_net_spec, short_repr

    folder = Path(folder)
    if not (folder / "model.json").exists() and folder.is_dir():
        raise LabError(f"{folder} holds no saved model (no model.json)")
    meta = read_model_json(folder, "saved classifier folder")
    mj = folder / "model.json"
    if meta.get("kind") != "classifier":
        raise LabError(f"{folder} holds a {short_repr(meta.get('kind'))} model, not a classifier/language model")
    if "net" not in meta:
        raise LabError(f"{mj} lacks 'net' (the network spec)")
    try:
        check_net_spec(meta["net"], "net", CLASSIFIERS, None)
    except LabError as e:
        raise LabError(f"invalid {mj}: {e}") from None
    tensors, where = read_weights(folder), str(folder / "weights.safetensors")
    try:
        net = build_fitting(lambda: build_classifier(meta["net"]), tensors, where)
    except LabError as e:
        raise LabError(str(e) if str(e).startswith(where) else f"invalid {mj}: {e}") from None
    except (TypeError, ValueError, KeyError, RuntimeError) as e:
        raise LabError(f"invalid {mj}: the network cannot be built from its spec ({one_line(e)})") from None
    load_weights_into(net, tensors, where)
    net.card = meta.get("card", {})
    return net.to(device).eval()


def _assets() -> Path:
    from lab.zoo import ASSETS

    return ASSETS / "kd"


#: tasks whose teacher ships in assets/zoo/kd
SHIPPED_TASKS = ("digits", "hard", "language", "moons")


def entries() -> list[str]:
    return [f"kd/{t}/teacher" for t in SHIPPED_TASKS]


def task_of(entry: str) -> str:
    """The task of a KD zoo entry ``kd/TASK/teacher``; a one-line error for any other name."""
    from lab.kd.tasks import list_tasks

    parts = entry.strip("/").split("/")
    if len(parts) != 3 or parts[0] != "kd" or parts[2] != "teacher" or parts[1] not in list_tasks():
        raise LabError(f"unknown KD zoo entry {entry!r}; allowed: kd/TASK/teacher with TASK one of "
                       f"{', '.join(list_tasks())} (shipped: {', '.join(entries())})")
    return parts[1]


def find(entry: str) -> Path | None:
    from lab.zoo import cache_dir

    task = task_of(entry)
    for root in (_assets(), cache_dir() / "kd"):
        if (root / task / "teacher" / "model.json").exists():
            return root / task / "teacher"
    return None


def load_teacher(ref, device="cpu", train_if_missing: bool = True, progress: bool = True) -> nn.Module:
    """A teacher network from a KD zoo entry (``kd/digits/teacher``) or a saved model folder."""
    if isinstance(ref, nn.Module):
        return ref.to(device).eval()
    p = Path(str(ref))
    if (p / "model.json").exists():
        return load_model(p, device)
    folder = find(str(ref))
    if folder is None:
        if not train_if_missing:
            raise LabError(f"{ref} is neither shipped nor cached; build it with `lab zoo build {ref}`")
        from lab.zoo import cache_dir

        folder = build_teacher(task_of(str(ref)), cache_dir() / "kd", progress=progress)
    return load_model(folder, device)


def build_teacher(task: str, root: Path | None = None, seed: int = 0, progress: bool = True, device="cpu",
                  steps: int | None = None) -> Path:
    """Train the task's teacher from scratch (its recipe) and save it to ``root/<task>/teacher``."""
    import lab
    from lab.kd import get
    from lab.kd.tasks import get_task
    from lab.runs.loop import ProgressBar

    tk = get_task(task)
    cfg = {**tk.teacher_recipe, "student": tk.teacher_net, **({"steps": int(steps)} if steps else {})}
    m = get("scratch")(None, tk, cfg, seed=seed, device=device)
    t0 = time.perf_counter()
    for _ in lab.train(m, callbacks=[ProgressBar(f"kd teacher {task}", disable=not progress)]):
        pass
    ev = m.evaluate()
    folder = Path(root or _assets()) / task / "teacher"
    card = {"task": task, "recipe": {"trainer": "scratch (cross-entropy)", "config": m.config_dict(), "seed": seed},
            "train_seconds": round(time.perf_counter() - t0, 1), "metrics": {"test": ev, "train": m.evaluate("train")}}
    KDModel(m.student, card).save(folder)
    return folder


__all__ = ["KDModel", "load_model", "load_teacher", "build_teacher", "entries", "find", "task_of", "SHIPPED_TASKS"]
