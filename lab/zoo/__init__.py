"""The zoo: named teachers and students.

    lab.zoo.load("toy2d/8gaussians/teacher")       # shipped in assets/zoo, else cached, else trained
    lab.zoo.load("toy2d/8gaussians/analytic")      # exact Gaussian-mixture teacher (no weights)
    lab.zoo.load("toy2d/moons/consistency")        # a distilled student
    lab.zoo.load("digits/teacher")                 # class-conditional diffusers UNet on 8x8 digits
    lab.zoo.load("digits/consistency")             # a distilled digits student

Each entry is a generator folder (model.json with a model card + weights.safetensors).
A missing entry is trained on the spot with a progress bar and cached in
``$LAB_CACHE`` (default ``~/.cache/distillation-lab``). ``lab zoo build`` rebuilds the
shipped entries into ``assets/zoo``.
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict
from pathlib import Path

import torch

from lab.data import toy2d
from lab.errors import LabError

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "zoo"
TEACHER_NFE = 50
STUDENT_DATASETS = ("8gaussians", "moons", "checkerboard")
STUDENT_METHODS = ("progressive", "consistency", "reflow")
#: every other unconditional method ships one default student, on the app's default distribution only
#: (about 0.5 MB each; the rest are a `lab distill` or `python bench/run.py --zoo` away)
SHOWCASE_DATASET = "8gaussians"
SHOWCASE_METHODS = ("dmd", "dmd2", "sid", "vsd", "scm", "rcm", "tscd", "shortcut", "flowmap", "boot", "add",
                    "sds", "vsd_particles", "guidance", "msd")
#: methods that need a class-conditional teacher: distilled from the exact (analytic) mixture teacher
CONDITIONAL_METHODS = ("guidance", "msd")


#: image zoo: one class-conditional UNet teacher per image dataset, its students, and the judges of lab.metrics.images
IMAGE_DATASETS = ("digits",)
IMAGE_STUDENT_METHODS = ("consistency", "progressive", "dmd", "guidance")  # reflow (2 nets, 8 MB) is bench-only
IMAGE_JUDGES = ("features", "classifier")
#: the digits teacher recipe: flow matching with label dropout (so it can be guided), EMA 0.999
IMAGE_TEACHER_RECIPE = {"steps": 5000, "batch": 128, "lr": 1e-3, "conditional": True, "label_dropout": 0.1,
                        "grad_clip": 1.0, "net": {"type": "unet"}}
IMAGE_TEACHER_EMA = 0.999
#: default digits student recipes (method config overrides); steps sized for a laptop CPU
IMAGE_STUDENT_RECIPES = {
    "consistency": {"steps": 600, "batch": 64, "lr": 1e-4, "n_intervals": 18, "target_ema": 0.95},
    "progressive": {"steps": 600, "batch": 64, "lr": 1e-4, "start_steps": 16, "halvings": 3},
    "dmd": {"steps": 900, "batch": 32, "lr": 5e-5, "lr_fake": 1e-4, "reg_weight": 1.0, "n_pairs": 1024,
            "pair_steps": 25},
    "guidance": {"steps": 400, "batch": 32, "lr": 1e-4, "start_steps": 4, "halvings": 2, "halving_steps": 100,
                 "n_traj": 256, "traj_steps": [2, 4, 8]},
    "reflow": {"steps": 800, "batch": 64, "lr": 1e-4, "n_pairs": 2048, "pair_steps": 25},
}


def is_image_entry(entry: str) -> bool:
    return entry.strip("/").split("/")[0] in IMAGE_DATASETS


def student_teacher(dataset: str, method: str) -> str:
    """The zoo teacher a default student of ``method`` on ``dataset`` is distilled from."""
    if dataset in IMAGE_DATASETS:
        return f"{dataset}/teacher"
    if method in CONDITIONAL_METHODS and toy2d.get(dataset).gmm is not None:
        return f"toy2d/{dataset}/analytic"
    return f"toy2d/{dataset}/teacher"


def student_methods(dataset: str) -> tuple[str, ...]:
    """The methods whose default student for ``dataset`` is a zoo entry."""
    if dataset not in STUDENT_DATASETS:
        return ()
    return STUDENT_METHODS + (SHOWCASE_METHODS if dataset == SHOWCASE_DATASET else ())


def cache_dir() -> Path:
    return Path(os.environ.get("LAB_CACHE", Path.home() / ".cache" / "distillation-lab")) / "zoo"


def entries() -> list[str]:
    out = []
    for name in toy2d.names():
        out.append(f"toy2d/{name}/teacher")
        if toy2d.get(name).gmm is not None:
            out.append(f"toy2d/{name}/analytic")
    for name in STUDENT_DATASETS:
        for m in student_methods(name):
            out.append(f"toy2d/{name}/{m}")
    for name in IMAGE_DATASETS:
        out.append(f"{name}/teacher")
        out += [f"{name}/{m}" for m in IMAGE_STUDENT_METHODS]
    return out


def kd_entries() -> list[str]:
    """The shipped knowledge-distillation teachers (classifiers and a language model; see lab.kd.zoo)."""
    from lab.kd.zoo import entries as _kd

    return _kd()


def judges() -> list[str]:
    """The digits judges (feature network and classifier of lab.metrics.images): built by `lab zoo build`."""
    return [f"digits/{k}" for k in IMAGE_JUDGES]


def shipped_entries() -> list[str]:
    return [e for e in entries() if not e.endswith("/analytic")]


def _parse(entry: str):
    parts = entry.strip("/").split("/")
    if len(parts) == 2 and parts[0] in IMAGE_DATASETS:
        if entry.strip("/") not in entries():
            raise LabError(f"unknown zoo entry {entry!r}; allowed: {', '.join(entries())}")
        return parts[0], parts[1]
    if len(parts) != 3 or parts[0] != "toy2d":
        raise LabError(f"unknown zoo entry {entry!r}; allowed: {', '.join(entries())}")
    _, data, what = parts
    if entry not in entries():
        raise LabError(f"unknown zoo entry {entry!r}; allowed: {', '.join(entries())}")
    return data, what


def teachers() -> list[str]:
    """Names of the 2D distributions whose teacher is shipped or cached (nothing is trained)."""
    return [name for name in toy2d.names() if find(f"toy2d/{name}/teacher") is not None]


def students(name: str) -> list[str]:
    """Zoo student entries for distribution ``name`` that are shipped or cached."""
    out = []
    for m in student_methods(name):
        e = f"toy2d/{name}/{m}"
        if e in entries() and find(e) is not None:
            out.append(e)
    return out


def find(entry: str) -> Path | None:
    """The folder holding ``entry`` (assets first, then the cache), or None."""
    _parse(entry)
    for root in (ASSETS, cache_dir()):
        p = root / entry.strip("/")
        if (p / "model.json").exists():
            return p
    return None


def card(entry: str) -> dict:
    from lab.io import read_json

    p = find(entry)
    return read_json(p / "model.json").get("card", {}) if p else {}


def load(entry: str, device="cpu", train_if_missing: bool = True, progress: bool = True, steps: int | None = None):
    """Load a zoo entry; a missing one is trained (``steps`` overrides the recipe's length) and cached."""
    from lab.diffusion.generators import analytic_generator, load_generator

    if entry.strip("/").startswith("kd/"):  # knowledge-distillation teachers (classifier / language model)
        from lab.kd.zoo import load_teacher

        return load_teacher(entry, device=device, train_if_missing=train_if_missing, progress=progress)
    data, what = _parse(entry)
    if what == "analytic":
        gen = analytic_generator(toy2d.get(data).gmm).to(device)
        gen.card = {"entry": entry, "kind": "analytic Gaussian-mixture posterior mean"}
        return gen
    p = find(entry)
    if p is None:
        if not train_if_missing:
            raise LabError(f"zoo entry {entry!r} is neither shipped nor cached; run `lab zoo build` or allow training")
        p = build_entry(entry, cache_dir(), progress=progress, steps=steps)
    return load_generator(p, device)


def _evaluate(gen, source, n=4000, nfe=None):
    from lab.metrics import noise_floor, sliced_wasserstein

    nfe = nfe or tuple(getattr(gen, "native_nfe", ())) or (1, 2, 4, TEACHER_NFE)
    out = {f"swd@{k}": sliced_wasserstein(gen.sample(n, nfe=k, seed=1).x, source.sample(n, 99)) for k in nfe}
    out["swd_noise_floor"] = noise_floor(source, n)
    return out


def build_entry(entry: str, root: Path | None = None, progress: bool = True, seed: int = 0, device="cpu",
                steps: int | None = None) -> Path:
    """Train one zoo entry and write it to ``root/entry`` (atomic files)."""
    from lab.runs.loop import ProgressBar, run_to_end

    if entry.strip("/").startswith("kd/"):
        from lab.kd.zoo import build_teacher, task_of

        return build_teacher(task_of(entry), root / "kd" if root else None, seed, progress, device, steps)
    data, what = _parse(entry)
    if what == "analytic":
        raise LabError("analytic entries have no weights to build")
    if is_image_entry(entry):
        return _build_image_entry(entry, data, what, root, progress, seed, device, steps)
    source = toy2d.get(data)
    t0 = time.perf_counter()
    if what == "teacher":
        from lab.diffusion.train import TeacherConfig, TeacherTraining

        tr = TeacherTraining(source, TeacherConfig(**({"steps": steps} if steps else {})), seed=seed, device=device)
        run_to_end(tr, callbacks=[ProgressBar(f"zoo {entry}", disable=not progress)])
        gen = tr.generator()
        recipe = {"trainer": "flow matching", "config": asdict(tr.config), "seed": seed}
    else:
        from lab.methods import get_method

        teacher_entry = student_teacher(data, what)
        teacher = load(teacher_entry, device=device, progress=progress)
        m = get_method(what)(teacher, source, {"steps": steps} if steps else None, seed=seed, device=device)
        cbs = [ProgressBar(f"zoo {entry}", disable=not progress)]
        run_to_end(m, callbacks=cbs)
        gen = m.generator()
        recipe = {"method": what, "teacher": teacher_entry, "config": m.config_dict(), "seed": seed}
    return save_entry(entry, gen, recipe, time.perf_counter() - t0, root)


def _build_image_entry(entry, data, what, root, progress, seed, device, steps) -> Path:
    from lab.data import resolve
    from lab.runs.loop import EMA, ProgressBar, run_to_end

    source = resolve(data)
    t0 = time.perf_counter()
    if what == "teacher":
        from lab.diffusion.train import TeacherConfig, TeacherTraining

        cfg = {**IMAGE_TEACHER_RECIPE, **({"steps": steps} if steps else {})}
        tr = TeacherTraining(source, TeacherConfig(**cfg), seed=seed, device=device)
        run_to_end(tr, callbacks=[EMA(IMAGE_TEACHER_EMA), ProgressBar(f"zoo {entry}", disable=not progress)])
        gen = tr.generator()
        recipe = {"trainer": "flow matching", "config": asdict(tr.config), "ema": IMAGE_TEACHER_EMA, "seed": seed}
    else:
        from lab.methods import get_method

        teacher_entry = student_teacher(data, what)
        teacher = load(teacher_entry, device=device, progress=progress)
        cfg = {**IMAGE_STUDENT_RECIPES.get(what, {}), **({"steps": steps} if steps else {})}
        m = get_method(what)(teacher, source, cfg, seed=seed, device=device)
        run_to_end(m, callbacks=[ProgressBar(f"zoo {entry}", disable=not progress)])
        gen = m.generator()
        recipe = {"method": what, "teacher": teacher_entry, "config": m.config_dict(), "seed": seed}
    return save_entry(entry, gen, recipe, time.perf_counter() - t0, root)


def evaluate_images(gen, data: str = "digits", nfe=None, n: int = 1000, seed: int = 1) -> dict:
    """Image metrics of ``gen`` at each NFE (class-conditional samples, labels 0..9 cycled, same noise),
    with the noise floor at the same sample size. Keys ``fd@k``, ``kid@k``, ``acc@k``, ..."""
    import torch as _t

    from lab.metrics import images as im

    nfe = nfe or tuple(getattr(gen, "native_nfe", ())) or (1, 2, 4, TEACHER_NFE)
    n_classes = int(getattr(getattr(getattr(gen, "denoiser", None), "net", None), "n_classes", 0) or 10)
    y = _t.arange(n) % n_classes
    out = {}
    for k in nfe:
        x = gen.sample(n, nfe=k, seed=seed, y=y.to(gen.device)).x
        m = im.image_metrics(x.cpu(), y, data=data)
        for key in ("fd", "kid", "precision", "recall", "diversity", "accuracy"):
            out[f"{key}@{k}"] = float(m[key])
    floor = im.noise_floor(data, n=min(n, 1437))
    out.update({f"{k}_noise_floor": float(v) for k, v in floor.items() if k in ("fd", "kid", "precision", "recall")})
    return out


def save_entry(entry: str, gen, recipe: dict, train_seconds: float, root: Path | None = None) -> Path:
    """Evaluate ``gen`` and write it as zoo entry ``entry`` under ``root`` with its model card.

    Used by ``build_entry`` and by the benchmark, which distils the same default students."""
    data, _ = _parse(entry)
    root = Path(root) if root is not None else ASSETS
    if is_image_entry(entry):
        gen.eval()
        with torch.no_grad():
            metrics = evaluate_images(gen, data)
        card_ = {"entry": entry, "data": data, "recipe": recipe, "train_seconds": round(train_seconds, 1),
                 "metrics": {k: round(v, 5) for k, v in metrics.items()}, "torch": torch.__version__,
                 "built": time.strftime("%Y-%m-%d")}
        return gen.save(root / entry, card_)
    source = toy2d.get(data)
    gen.eval()
    with torch.no_grad():
        metrics = _evaluate(gen, source)
    card_ = {"entry": entry, "data": source.spec, "recipe": recipe, "train_seconds": round(train_seconds, 1),
             "metrics": {k: round(v, 5) for k, v in metrics.items()}, "torch": torch.__version__,
             "built": time.strftime("%Y-%m-%d")}
    return gen.save(root / entry, card_)


def build(selected: list[str] | None = None, root: Path | None = None, force: bool = False, progress: bool = True):
    """Build the shipped entries (teachers first). Existing entries are kept unless ``force``."""
    todo = selected or (shipped_entries() + kd_entries())
    todo = sorted(todo, key=lambda e: (not e.endswith("/teacher"), e))
    root = Path(root) if root is not None else ASSETS
    built = []
    if selected is None or any(e in judges() for e in selected):
        from lab.nets.digits_eval import build_eval_nets

        kinds = [k for k in IMAGE_JUDGES if (selected is None or f"digits/{k}" in selected)]
        if force or any(not (root / "digits" / k / "model.json").exists() for k in kinds):
            build_eval_nets(root / "digits", progress=progress)
            built += [f"digits/{k}" for k in kinds]
        todo = [e for e in todo if e not in judges()]
    for e in todo:
        if e.strip("/").startswith("kd/"):
            from lab.kd.zoo import task_of

            task_of(e)
        else:
            _parse(e)
        if (root / e / "model.json").exists() and not force:
            continue
        build_entry(e, root, progress=progress)
        built.append(e)
    return built
