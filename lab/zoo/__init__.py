"""The zoo: named teachers and students.

    lab.zoo.load("toy2d/8gaussians/teacher")       # shipped in assets/zoo, else cached, else trained
    lab.zoo.load("toy2d/8gaussians/analytic")      # exact Gaussian-mixture teacher (no weights)
    lab.zoo.load("toy2d/moons/consistency")        # a distilled student
    lab.zoo.load("digits/teacher")                 # class-conditional diffusers UNet on 8x8 digits
    lab.zoo.load("digits/consistency")             # a distilled digits student

    lab.zoo.load("kd/digits/teacher")              # a knowledge-distillation teacher (classifier / language model)
    lab.zoo.resolve("runs/my-run").model           # any model reference: an entry, a run folder, a diffusers folder

Each entry is a model folder (model.json with a model card + weights.safetensors).
A missing entry is trained on the spot with a progress bar and cached in
``$LAB_CACHE`` (default ``~/.cache/distillation-lab``). ``lab zoo build`` rebuilds the
shipped entries into ``assets/zoo``. The zoo owns every shipped asset (generators, KD
teachers, the judges of lab.metrics.images) and the cache; their two roots are computed once,
in :mod:`lab.io` (below the judges and KD, which read them too), and re-exported here.

:func:`resolve` is the one place that turns a model reference into the loaded model: the CLI,
the recipes, the diffusers export, KD, the methods (through the hook in :mod:`lab.trainable`)
and the app call it.
"""
from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from lab.data import resolve as resolve_data
from lab.data import toy2d
from lab.diffusion.generators import analytic_generator, load_generator
from lab.diffusion.train import TeacherConfig, TeacherTraining
from lab.errors import LabError
from lab.interop.diffusers import load_diffusers_teacher
from lab.io import ZOO_ASSETS, cache_root, read_json
from lab.io import zoo_entry_name as entry_name
from lab.kd.base import get as get_kd_method
from lab.kd.tasks import get_task, list_tasks
from lab.kd.zoo import KDModel, load_model
from lab.methods import get_method, list_methods
from lab.metrics import noise_floor, sliced_wasserstein
from lab.nets import digits_eval
from lab.runs.loop import EMA, ProgressBar, run_to_end, train
from lab.trainable import install_model_resolver

#: the shipped zoo (``assets/zoo``); entry ``NAME`` lives in ``ASSETS / NAME``
ASSETS = ZOO_ASSETS
TEACHER_NFE = 50
#: the 2D datasets with zoo students: a method with ``zoo_points = "all"`` ships one on each
STUDENT_DATASETS = ("8gaussians", "moons", "checkerboard")
#: the app's default distribution: methods with ``zoo_points = "showcase"`` ship a student on it only (about
#: 0.5 MB each; the rest are a `lab distill` or `python bench/run.py --zoo` away)
SHOWCASE_DATASET = "8gaussians"

#: image zoo: one class-conditional UNet teacher per image dataset, its students, and the judges of lab.metrics.images
IMAGE_DATASETS = ("digits",)
IMAGE_JUDGES = ("features", "classifier")
#: the digits teacher recipe: flow matching with label dropout (so it can be guided), EMA 0.999
IMAGE_TEACHER_RECIPE = {"steps": 5000, "batch": 128, "lr": 1e-3, "conditional": True, "label_dropout": 0.1,
                        "grad_clip": 1.0, "net": {"type": "unet"}}
IMAGE_TEACHER_EMA = 0.999


# Which methods have zoo students, and with which recipe, is said by the method classes (Method.zoo_points,
# needs_conditional_teacher, zoo_digits, digits_recipe); the lists below are read from the registry when asked.
def _methods(test) -> tuple[str, ...]:
    """The registered methods whose class passes ``test``, in name order."""
    return tuple(m for m in list_methods() if test(get_method(m)))


def image_student_methods() -> tuple[str, ...]:
    """The methods whose digits student is a zoo entry (``zoo_digits``; built with their ``digits_recipe``)."""
    return _methods(lambda c: c.zoo_digits)


def image_student_recipes() -> dict[str, dict]:
    """Every method's digits recipe (``digits_recipe``; config overrides for an 8x8 digits student)."""
    return {m: dict(get_method(m).digits_recipe) for m in _methods(lambda c: c.digits_recipe is not None)}


def is_image_entry(entry: str) -> bool:
    return entry.strip("/").split("/")[0] in IMAGE_DATASETS


def student_teacher(dataset: str, method: str) -> str:
    """The zoo teacher a default student of ``method`` on ``dataset`` is distilled from."""
    if dataset in IMAGE_DATASETS:
        return entry_name("images", dataset)
    if get_method(method).needs_conditional_teacher and toy2d.get(dataset).gmm is not None:
        return entry_name("toy2d", dataset, "analytic")
    return entry_name("toy2d", dataset)


def student_methods(dataset: str) -> tuple[str, ...]:
    """The methods whose default student for ``dataset`` is a zoo entry: ``zoo_points`` "all" on every one of
    STUDENT_DATASETS, then "showcase" on SHOWCASE_DATASET."""
    if dataset not in STUDENT_DATASETS:
        return ()
    return (_methods(lambda c: c.zoo_points == "all")
            + (_methods(lambda c: c.zoo_points == "showcase") if dataset == SHOWCASE_DATASET else ()))


def cache_dir() -> Path:
    """Where missing entries are built: ``$LAB_CACHE/zoo`` (the cache root comes from :func:`lab.io.cache_root`)."""
    return cache_root() / "zoo"


def entries() -> list[str]:
    out = []
    for name in toy2d.names():
        out.append(entry_name("toy2d", name))
        if toy2d.get(name).gmm is not None:
            out.append(entry_name("toy2d", name, "analytic"))
    for name in STUDENT_DATASETS:
        for m in student_methods(name):
            out.append(entry_name("toy2d", name, m))
    for name in IMAGE_DATASETS:
        out.append(entry_name("images", name))
        out += [entry_name("images", name, m) for m in image_student_methods()]
    return out


def kd_entries() -> list[str]:
    """The shipped knowledge-distillation teachers (classifiers and a language model; saved as lab.kd.zoo.KDModel)."""
    return [entry_name("kd", t) for t in KD_SHIPPED_TASKS]


def judges() -> list[str]:
    """The digits judges (feature network and classifier of lab.metrics.images): built by `lab zoo build`."""
    return [entry_name("images", "digits", k) for k in IMAGE_JUDGES]


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
    return [name for name in toy2d.names() if find(entry_name("toy2d", name)) is not None]


def students(name: str) -> list[str]:
    """Zoo student entries for distribution ``name`` that are shipped or cached."""
    out = []
    for m in student_methods(name):
        e = entry_name("toy2d", name, m)
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
    p = find(entry)
    return read_json(p / "model.json").get("card", {}) if p else {}


def load(entry: str, device="cpu", train_if_missing: bool = True, progress: bool = True, steps: int | None = None):
    """Load a zoo entry; a missing one is trained (``steps`` overrides the recipe's length) and cached.
    (Entry names only: :func:`resolve` takes any model reference.)"""
    if is_kd_entry(entry):  # knowledge-distillation teachers (classifier / language model)
        return _load_kd(entry, device, train_if_missing, progress)
    if entry.strip("/").endswith("/analytic"):
        data, _ = _parse(entry)
        gen = analytic_generator(toy2d.get(data).gmm).to(device)
        gen.card = {"entry": entry, "kind": "analytic Gaussian-mixture posterior mean"}
        return gen
    p = find(entry)  # an unknown name is one line naming the allowed entries
    if p is None:
        if not train_if_missing:
            raise LabError(f"zoo entry {entry!r} is not built yet: neither shipped nor cached; run "
                           f"`lab zoo build --entry {entry}` or allow training")
        p = build_entry(entry, cache_dir(), progress=progress, steps=steps)
    return load_generator(p, device)


def _evaluate(gen, source, n=4000, nfe=None):
    nfe = nfe or tuple(getattr(gen, "native_nfe", ())) or (1, 2, 4, TEACHER_NFE)
    out = {f"swd@{k}": sliced_wasserstein(gen.sample(n, nfe=k, seed=1).x, source.sample(n, 99)) for k in nfe}
    out["swd_noise_floor"] = noise_floor(source, n)
    return out


def build_entry(entry: str, root: Path | None = None, progress: bool = True, seed: int = 0, device="cpu",
                steps: int | None = None) -> Path:
    """Train one zoo entry and write it to ``root/entry`` (atomic files)."""
    if is_kd_entry(entry):
        return build_kd_teacher(kd_task_of(entry), root / "kd" if root else None, seed, progress, device, steps)
    data, what = _parse(entry)
    if what == "analytic":
        raise LabError("analytic entries have no weights to build")
    if is_image_entry(entry):
        return _build_image_entry(entry, data, what, root, progress, seed, device, steps)
    source = toy2d.get(data)
    t0 = time.perf_counter()
    if what == "teacher":
        tr = TeacherTraining(source, TeacherConfig(**({"steps": steps} if steps else {})), seed=seed, device=device)
        run_to_end(tr, callbacks=[ProgressBar(f"zoo {entry}", disable=not progress)])
        gen = tr.generator()
        recipe = {"trainer": "flow matching", "config": asdict(tr.config), "seed": seed}
    else:
        teacher_entry = student_teacher(data, what)
        teacher = load(teacher_entry, device=device, progress=progress)
        m = get_method(what)(teacher, source, {"steps": steps} if steps else None, seed=seed, device=device)
        cbs = [ProgressBar(f"zoo {entry}", disable=not progress)]
        run_to_end(m, callbacks=cbs)
        gen = m.generator()
        recipe = {"method": what, "teacher": teacher_entry, "config": m.config_dict(), "seed": seed}
    return save_entry(entry, gen, recipe, time.perf_counter() - t0, root)


def _build_image_entry(entry, data, what, root, progress, seed, device, steps) -> Path:
    source = resolve_data(data)
    t0 = time.perf_counter()
    if what == "teacher":
        cfg = {**IMAGE_TEACHER_RECIPE, **({"steps": steps} if steps else {})}
        tr = TeacherTraining(source, TeacherConfig(**cfg), seed=seed, device=device)
        run_to_end(tr, callbacks=[EMA(IMAGE_TEACHER_EMA), ProgressBar(f"zoo {entry}", disable=not progress)])
        gen = tr.generator()
        recipe = {"trainer": "flow matching", "config": asdict(tr.config), "ema": IMAGE_TEACHER_EMA, "seed": seed}
    else:
        teacher_entry = student_teacher(data, what)
        teacher = load(teacher_entry, device=device, progress=progress)
        cfg = {**(get_method(what).digits_recipe or {}), **({"steps": steps} if steps else {})}
        m = get_method(what)(teacher, source, cfg, seed=seed, device=device)
        run_to_end(m, callbacks=[ProgressBar(f"zoo {entry}", disable=not progress)])
        gen = m.generator()
        recipe = {"method": what, "teacher": teacher_entry, "config": m.config_dict(), "seed": seed}
    return save_entry(entry, gen, recipe, time.perf_counter() - t0, root)


def evaluate_images(gen, data: str = "digits", nfe=None, n: int = 1000, seed: int = 1) -> dict:
    """Image metrics of ``gen`` at each NFE (class-conditional samples, labels 0..9 cycled, same noise),
    with the noise floor at the same sample size. Keys ``fd@k``, ``kid@k``, ``acc@k``, ..."""
    from lab.metrics import images as im  # inside: start-up speed (scipy and scikit-learn)

    nfe = nfe or tuple(getattr(gen, "native_nfe", ())) or (1, 2, 4, TEACHER_NFE)
    n_classes = int(getattr(getattr(getattr(gen, "denoiser", None), "net", None), "n_classes", 0) or 10)
    y = torch.arange(n) % n_classes
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
        kinds = [k for k in IMAGE_JUDGES if (selected is None or entry_name("images", "digits", k) in selected)]
        if force or any(not (root / "digits" / k / "model.json").exists() for k in kinds):
            digits_eval.build_eval_nets(root / "digits", progress=progress)
            built += [entry_name("images", "digits", k) for k in kinds]
        todo = [e for e in todo if e not in judges()]
    for e in todo:
        if is_kd_entry(e):
            kd_task_of(e)
        else:
            _parse(e)
        if (root / e / "model.json").exists() and not force:
            continue
        build_entry(e, root, progress=progress)
        built.append(e)
    return built


# ------------------------------------------------------------------------------ knowledge-distillation teachers
#: tasks whose teacher ships in assets/zoo/kd
KD_SHIPPED_TASKS = ("digits", "hard", "language", "moons")


def is_kd_entry(entry: str) -> bool:
    return str(entry).strip("/").startswith("kd/")


def kd_task_of(entry: str) -> str:
    """The task of a KD zoo entry ``kd/TASK/teacher``; a one-line error for any other name."""
    parts = entry.strip("/").split("/")
    if len(parts) != 3 or parts[0] != "kd" or parts[2] != "teacher" or parts[1] not in list_tasks():
        raise LabError(f"unknown KD zoo entry {entry!r}; allowed: kd/TASK/teacher with TASK one of "
                       f"{', '.join(list_tasks())} (shipped: {', '.join(kd_entries())})")
    return parts[1]


def kd_find(entry: str) -> Path | None:
    """The folder holding the KD teacher ``entry`` (assets first, then the cache), or None."""
    task = kd_task_of(entry)
    for root in (ASSETS / "kd", cache_dir() / "kd"):
        if (root / task / "teacher" / "model.json").exists():
            return root / task / "teacher"
    return None


def _load_kd(entry: str, device="cpu", train_if_missing: bool = True, progress: bool = True) -> nn.Module:
    folder = kd_find(str(entry))
    if folder is None:
        if not train_if_missing:
            raise LabError(f"{entry} is neither shipped nor cached; build it with `lab zoo build {entry}`")
        folder = build_kd_teacher(kd_task_of(str(entry)), cache_dir() / "kd", progress=progress)
    return load_model(folder, device)


def build_kd_teacher(task: str, root: Path | None = None, seed: int = 0, progress: bool = True, device="cpu",
                     steps: int | None = None) -> Path:
    """Train the task's teacher from scratch (its recipe) and save it to ``root/<task>/teacher``."""
    tk = get_task(task)
    cfg = {**tk.teacher_recipe, "student": tk.teacher_net, **({"steps": int(steps)} if steps else {})}
    m = get_kd_method("scratch")(None, tk, cfg, seed=seed, device=device)
    t0 = time.perf_counter()
    for _ in train(m, callbacks=[ProgressBar(f"kd teacher {task}", disable=not progress)]):
        pass
    ev = m.evaluate()
    folder = Path(root or ASSETS / "kd") / task / "teacher"
    card_ = {"task": task, "recipe": {"trainer": "scratch (cross-entropy)", "config": m.config_dict(), "seed": seed},
             "train_seconds": round(time.perf_counter() - t0, 1), "metrics": {"test": ev, "train": m.evaluate("train")}}
    KDModel(m.student, card_).save(folder)
    return folder


def where(entry: str) -> str:
    """Where a zoo entry (generator, judge or KD teacher) is: "shipped", "cached", "missing" or "analytic"."""
    if entry.endswith("/analytic"):
        return "analytic"
    if entry in judges():
        p = digits_eval.find_eval_net(entry.split("/")[1])
    else:
        p = kd_find(entry) if is_kd_entry(entry) else find(entry)
    return "shipped" if p and ASSETS in p.parents else "cached" if p else "missing"


# ------------------------------------------------------------------------------------------------ the one resolver
#: what :func:`resolve` can be asked for: any generator, a diffusion teacher (a generator whose data is known;
#: zoo students refused), a knowledge-distillation teacher, a judge of lab.metrics.images
RESOLVE_KINDS = ("generator", "teacher", "kd", "judge")


class Resolved(NamedTuple):
    """What :func:`resolve` returns."""

    model: Any            #: the loaded model (a Generator, a KD network, a judge network), eval mode, on the device
    kind: str             #: "generator", "kd" or "judge"
    data: str | None      #: generators: the data spec the model was trained on (None when unknown); else None
    name: str             #: the reference: the entry name, or the folder as a string


def _kind_of(ref: str) -> str:
    if is_kd_entry(ref):
        return "kd"
    if ref.strip("/") in judges():
        return "judge"
    return "generator"


def resolve(ref, device="cpu", *, kind: str | None = None, data: str | None = None, train_if_missing: bool = True,
            progress: bool = True) -> Resolved:
    """Turn any model reference into the loaded model: the one place that does.

    ``ref`` is a zoo entry name (``toy2d/8gaussians/teacher``, ``toy2d/8gaussians/analytic``,
    ``digits/consistency``, ``kd/digits/teacher``, the judge ``digits/features``), a model or run folder
    with ``model.json``, or a diffusers pipeline folder with ``model_index.json``. A string is a folder when
    the folder holds one of those files (or is an existing folder and not an entry name); a ``Path`` is always
    a folder. ``kind`` (one of :data:`RESOLVE_KINDS`; by default from the entry name, else "generator") says
    what is wanted: "teacher" is a generator whose data must be known (from ``data``, the card or the entry
    name; zoo students are refused). ``data`` overrides the data the card names (a diffusers pipeline has no
    card: a teacher from one needs it). A missing zoo entry is trained and cached unless ``train_if_missing``
    is False. Unknown references are one LabError line naming the allowed entries."""
    if kind is not None and kind not in RESOLVE_KINDS:
        raise LabError(f"unknown model kind {kind!r}; allowed: {', '.join(RESOLVE_KINDS)}")
    if kind == "kd" and isinstance(ref, nn.Module):
        return Resolved(ref.to(device).eval(), "kd", None, type(ref).__name__)
    is_name = isinstance(ref, str)
    p = Path(ref)
    if kind is None:
        kind = _kind_of(ref) if is_name else "generator"
    want = "generator" if kind == "teacher" else kind
    entry_like = is_name and (ref.startswith("toy2d/") or is_image_entry(ref) or is_kd_entry(ref))
    folder = (p / "model.json").exists() or (p / "model_index.json").exists() or (
        p.is_dir() and not entry_like and kind != "teacher") or not is_name
    if folder:
        return _resolve_folder(p, device, kind, want, data)
    if want == "kd":
        return Resolved(_load_kd(ref, device, train_if_missing, progress), "kd", None, ref)
    if want == "judge":
        if ref.strip("/") not in judges():
            raise LabError(f"unknown judge {ref!r}; allowed: {', '.join(judges())} or a judge folder with model.json")
        judge = ref.strip("/").split("/")[1]
        if not train_if_missing and digits_eval.find_eval_net(judge) is None:
            raise LabError(f"zoo entry {ref!r} is neither shipped nor cached; run `lab zoo build --entry {ref}` "
                           f"or allow training")
        return Resolved(digits_eval.load_eval_net(judge, device=device, progress=progress), "judge", None, ref)
    if kind == "teacher":
        if is_image_entry(ref):
            if not ref.endswith("/teacher"):
                raise LabError(f"{ref!r} is a student; give a teacher entry (e.g. digits/teacher)")
            return Resolved(load(ref, device, train_if_missing, progress), "generator", data or ref.split("/")[0], ref)
        if ref.startswith("toy2d/"):
            if not ref.endswith(("/teacher", "/analytic")):
                raise LabError(f"{ref!r} is a student; give a teacher entry (toy2d/NAME/teacher or toy2d/NAME/analytic)")
            return Resolved(load(ref, device, train_if_missing, progress), "generator",
                            data or "toy2d:" + ref.split("/")[1], ref)
        teachers = [e for e in entries() if e.endswith(("/teacher", "/analytic"))]
        raise LabError(f"teacher {ref!r} is neither a model folder nor a zoo teacher; allowed zoo teachers: "
                       f"{', '.join(teachers)}")
    if not (ref.startswith("toy2d/") or is_image_entry(ref)):
        raise LabError(f"{ref!r} is neither a model folder (with model.json) nor a zoo entry; allowed zoo entries: "
                       f"{', '.join(entries())}")
    gen = load(ref, device, train_if_missing, progress)
    entry_data = ("toy2d:" + ref.split("/")[1]) if ref.startswith("toy2d/") else ref.strip("/").split("/")[0]
    return Resolved(gen, "generator", data or entry_data, ref)


def _resolve_folder(p: Path, device, kind: str, want: str, data: str | None) -> Resolved:
    if want == "kd":
        return Resolved(load_model(p, device), "kd", None, str(p))
    if want == "judge":
        return Resolved(digits_eval.load_eval_net(p, device=device), "judge", None, str(p))
    if (p / "model_index.json").exists():
        if kind == "teacher" and not data:
            raise LabError(f"{p} is a diffusers pipeline; say which data it models with --data (e.g. digits, images:PATH)")
        return Resolved(load_diffusers_teacher(p, device), "generator", data, str(p))
    gen = load_generator(p, device)
    data = data or gen.card.get("data")
    if kind == "teacher" and not data:
        raise LabError(f"{p}/model.json has no card.data; cannot tell which data the teacher models")
    return Resolved(gen, "generator", data, str(p))


# methods given a teacher by name resolve it through this (lab.trainable.resolve_model_ref): they sit below the zoo
install_model_resolver(resolve)
