"""Whole runs on disk: train a teacher into a folder, distil into a folder, resume a folder.

The CLI, the app and the notebooks call these, so a run started anywhere can be
resumed anywhere.
"""
from __future__ import annotations

import time
from pathlib import Path

from lab.errors import LabError
from lab.runs.loop import EMA, Checkpoint, NaNGuard, ProgressBar, Recorder, train
from lab.runs.run import Run


def resolve_teacher(ref: str, device="cpu", data: str | None = None):
    """A zoo entry name, a model folder or a diffusers pipeline folder -> (generator, data spec).

    ``data`` overrides the data the teacher's card names (a diffusers pipeline has no card, so it is
    required there)."""
    from lab import zoo
    from lab.diffusion.generators import load_generator

    p = Path(ref)
    if (p / "model_index.json").exists():
        from lab.interop.diffusers import load_diffusers_teacher

        if not data:
            raise LabError(f"{p} is a diffusers pipeline; say which data it models with --data (e.g. digits, images:PATH)")
        return load_diffusers_teacher(p, device), data
    if (p / "model.json").exists():
        gen = load_generator(p, device)
        data = data or gen.card.get("data")
        if not data:
            raise LabError(f"{p}/model.json has no card.data; cannot tell which data the teacher models")
        return gen, data
    if zoo.is_image_entry(ref):
        if not ref.endswith("/teacher"):
            raise LabError(f"{ref!r} is a student; give a teacher entry (e.g. digits/teacher)")
        return zoo.load(ref, device=device), data or ref.split("/")[0]
    if ref.startswith("toy2d/"):
        if not ref.endswith(("/teacher", "/analytic")):
            raise LabError(f"{ref!r} is a student; give a teacher entry (toy2d/NAME/teacher or toy2d/NAME/analytic)")
        return zoo.load(ref, device=device), "toy2d:" + ref.split("/")[1]
    teachers = [e for e in zoo.entries() if e.endswith(("/teacher", "/analytic"))]
    raise LabError(f"teacher {ref!r} is neither a model folder nor a zoo teacher; allowed zoo teachers: {', '.join(teachers)}")


def _check_ema(ema) -> None:
    """Before a run folder is created: a bad EMA decay leaves nothing behind."""
    if ema is not None and not (isinstance(ema, (int, float)) and 0.0 <= ema < 1.0):
        raise LabError(f"invalid EMA decay {ema!r}; allowed: a float in [0, 1), e.g. 0.999")


def _callbacks(run, trainable, ema: float | None, progress: bool, every: int = 10, ckpt_every: int = 500):
    rec = Recorder(run, every=every, snapshot_every=max(1, trainable.total_steps // 10))
    cbs = [NaNGuard()]
    if ema:
        cbs.append(EMA(ema))
    cbs.append(rec)
    cbs.append(Checkpoint(run, every=ckpt_every, callbacks=[c for c in cbs if c.state_dict() is not None]))
    cbs.append(ProgressBar(f"{trainable.name}", disable=not progress))
    return cbs


def _restore_callbacks(cbs, states: dict):
    for cb in cbs:
        s = states.get(type(cb).__name__)
        if s is not None:
            cb.load_state_dict(s)


def train_teacher_run(data: str, out, steps: int | None = None, seed: int = 0, device="cpu", progress=True,
                      overwrite=False, config: dict | None = None, ema: float | None = None):
    from lab.diffusion.train import TeacherConfig, TeacherTraining
    from lab.trainable import config_from_dict

    _check_ema(ema)
    cfg = config_from_dict(TeacherConfig, {**(config or {}), **({"steps": steps} if steps else {})})
    tr = TeacherTraining(data, cfg, seed=seed, device=device)
    run = Run.create(out, {"kind": "teacher", "data": tr.data.spec, "config": tr.config_dict(), "seed": seed,
                           "device": str(device), "steps": cfg.steps, "ema": ema}, overwrite=overwrite)
    return _finish(run, tr, _callbacks(run, tr, ema, progress), data_spec=tr.data.spec,
                   recipe={"trainer": "flow matching", "config": tr.config_dict(), "seed": seed, "ema": ema})


def distill_run(method: str, teacher: str, out, steps: int | None = None, config: dict | None = None, seed: int = 0,
                device="cpu", progress=True, ema: float | None = None, overwrite=False, data: str | None = None):
    from lab.methods import get_method

    cls = get_method(method)
    _check_ema(ema)
    gen, data = resolve_teacher(teacher, device, data)
    cfg = dict(config or {})
    if steps:
        cfg["steps"] = int(steps)
    m = cls(gen, data, cfg, seed=seed, device=device)
    run = Run.create(out, {"kind": "distill", "method": method, "config": m.config_dict(), "teacher": teacher,
                           "data": m.data.spec, "seed": seed, "device": str(device), "steps": m.total_steps,
                           "ema": ema}, overwrite=overwrite)
    return _finish(run, m, _callbacks(run, m, ema, progress), data_spec=m.data.spec,
                   recipe={"method": method, "teacher": teacher, "config": m.config_dict(), "seed": seed})


def default_kd_teacher(task: str) -> str:
    return f"kd/{task}/teacher"


def kd_run(method: str, task: str, out, teacher: str | None = None, steps: int | None = None,
           config: dict | None = None, seed: int = 0, device="cpu", progress=True, overwrite=False, ema=None):
    """Knowledge distillation into a run folder: the student classifier / language model is saved there."""
    from lab.kd import get, get_task

    cls = get(method)
    tk = get_task(task)
    _check_ema(ema)
    if teacher is None and cls.needs_teacher:
        teacher = default_kd_teacher(tk.name)
    cfg = dict(config or {})
    if steps:
        cfg["steps"] = int(steps)
    m = cls(teacher if cls.needs_teacher else None, tk, cfg, seed=seed, device=device)
    run = Run.create(out, {"kind": "kd", "method": method, "config": m.config_dict(), "teacher": teacher,
                           "task": tk.name, "seed": seed, "device": str(device), "steps": m.total_steps, "ema": ema},
                     overwrite=overwrite)
    return _finish(run, m, _callbacks(run, m, ema, progress), data_spec=tk.name,
                   recipe={"method": method, "teacher": teacher, "task": tk.name, "config": m.config_dict(),
                           "seed": seed})


def resume_run(folder, progress=True, device=None):
    run = Run.open(folder)
    cfg = run.config
    ckpt = run.load_checkpoint()
    dev = device or cfg.get("device", "cpu")
    if cfg.get("kind") == "teacher":
        from lab.diffusion.train import TeacherConfig, TeacherTraining
        from lab.trainable import config_from_dict

        tr = TeacherTraining(cfg["data"], config_from_dict(TeacherConfig, cfg["config"]), seed=cfg["seed"], device=dev)
        recipe = {"trainer": "flow matching", "config": cfg["config"], "seed": cfg["seed"]}
        cbs = _callbacks(run, tr, cfg.get("ema"), progress)
    elif cfg.get("kind") == "kd":
        from lab.kd import get

        cls = get(cfg["method"])
        tr = cls(cfg["teacher"] if cls.needs_teacher else None, cfg["task"], cfg["config"], seed=cfg["seed"],
                 device=dev)
        recipe = {"method": cfg["method"], "teacher": cfg["teacher"], "task": cfg["task"], "config": cfg["config"],
                  "seed": cfg["seed"]}
        cbs = _callbacks(run, tr, cfg.get("ema"), progress)
    else:
        from lab.methods import get_method

        gen, data = resolve_teacher(cfg["teacher"], dev, cfg.get("data"))
        tr = get_method(cfg["method"])(gen, cfg["data"], cfg["config"], seed=cfg["seed"], device=dev)
        recipe = {"method": cfg["method"], "teacher": cfg["teacher"], "config": cfg["config"], "seed": cfg["seed"]}
        cbs = _callbacks(run, tr, cfg.get("ema"), progress)
    tr.load_state_dict(ckpt["trainable"])
    _restore_callbacks(cbs, ckpt.get("callbacks", {}))
    if tr.it >= tr.total_steps and run.has_model():
        return run
    return _finish(run, tr, cbs, data_spec=cfg.get("data", cfg.get("task")), recipe=recipe)


def _finish(run: Run, trainable, callbacks, data_spec: str, recipe: dict) -> Run:
    t0 = time.perf_counter()
    for _ in train(trainable, callbacks=callbacks):
        pass
    wall = time.perf_counter() - t0
    gen = trainable.generator()
    gen.save(run.folder, {"data": data_spec, "recipe": recipe, "train_seconds": round(wall, 2),
                          "run": str(run.folder)})
    return run
