"""Whole runs on disk: train a teacher into a folder, distil into a folder, resume a folder.

The CLI, the app and the notebooks call these, so a run started anywhere can be
resumed anywhere.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from lab.errors import DivergenceError, LabError
from lab.io import zoo_entry_name
from lab.runs import distributed
from lab.runs.loop import EMA, Checkpoint, Guard, ProgressBar, Recorder, train
from lab.runs.run import Run
from lab.trainable import PRECISIONS, resolve_reference


def resolve_teacher(ref: str, device="cpu", data: str | None = None):
    """A zoo entry name, a model folder or a diffusers pipeline folder -> (generator, data spec), by
    :func:`lab.zoo.resolve` (kind "teacher"; reached through :func:`lab.trainable.resolve_reference`, which
    ``lab.zoo`` installs, so runs does not import the zoo that trains its assets with :mod:`lab.runs.loop`).

    ``data`` overrides the data the teacher's card names (a diffusers pipeline has no card, so it is
    required there)."""
    r = resolve_reference(ref, "teacher", device, data=data)
    return r.model, r.data


def built_nets(trainable) -> dict:
    """What was really built, for config.json and the model card: each network's spec, and whether the
    student started as a copy of the teacher's network (then ``config.student_net`` was not used for it)."""
    nets = {k: n.spec() for k, n in trainable.nets().items() if hasattr(n, "spec")}
    out = {"nets": nets}
    if callable(getattr(trainable, "student_from_teacher", None)) and trainable.student_from_teacher():
        out["student_init"] = "a copy of the teacher's network (config.student_net does not apply to it)"
    return out


def _check_ema(ema) -> None:
    """Before a run folder is created: a bad EMA decay leaves nothing behind."""
    if ema is not None and not (isinstance(ema, (int, float)) and 0.0 <= ema < 1.0):
        raise LabError(f"invalid EMA decay {ema!r}; allowed: a float in [0, 1), e.g. 0.999")


def run_callbacks(run, trainable, ema: float | None, progress: bool, every: int = 10, ckpt_every: int | None = None):
    """The CLI's callbacks, in order: the divergence guard (before anything is recorded or saved), EMA, the
    recorder, the checkpoint (every ``ckpt_every`` steps, or every few seconds when None) and the bar."""
    rec = Recorder(run, every=every, snapshot_every=max(1, trainable.total_steps // 10))
    cbs = [Guard()]
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


def _given(config: dict | None, steps: int | None) -> dict:
    """The config fields given for a new run (``steps``, when given, wins)."""
    return {**(config or {}), **({"steps": int(steps)} if steps else {})}


def _check_options(precision: str, compile: bool) -> dict:
    """The run-config entries of ``--precision`` / ``--compile`` (checked before a folder is made)."""
    if precision not in PRECISIONS:
        raise LabError(f"unknown precision {precision!r}; allowed: {', '.join(PRECISIONS)}")
    if compile and distributed.env_world() is not None:
        raise LabError("--compile under torchrun is not supported here (untested with DDP); drop --compile")
    return {**({"precision": precision} if precision != "fp32" else {}), **({"compile": True} if compile else {})}


def _start(out, cfg: dict, device, progress: bool, overwrite: bool, checkpoint_every: int | None) -> "Run | None":
    """A new run from its run config ``cfg`` (config.json before the build fills it in): built by
    :func:`build_run`, as a resume is, then config.json written and the trainable trained. Under torchrun
    (:mod:`lab.runs.distributed`) every rank builds and trains; only rank 0 writes the folder (the other ranks
    return None)."""
    world, device = distributed.init(device)
    if world is not None:
        cfg = {**cfg, "device": str(device).split(":")[0]}
    tr, recipe, data_spec = build_run(cfg, device)
    if world is None:
        run = Run.create(out, _completed(cfg, tr, recipe, data_spec), overwrite=overwrite)
        return _finish(run, tr, run_callbacks(run, tr, cfg["ema"], progress, ckpt_every=checkpoint_every),
                       data_spec=data_spec, recipe=recipe)
    distributed.check_supported(cfg.get("kind", "distill"), tr)
    run = None
    if world.main:
        try:
            run = Run.create(out, _completed(cfg, tr, recipe, data_spec), overwrite=overwrite)
        except BaseException:
            distributed.agree(False)
            raise
    if not distributed.agree(True):
        raise LabError(f"rank 0 could not create the run folder {out} (see its error)")
    distributed.wrap(tr, world)
    cbs = run_callbacks(run, tr, cfg["ema"], progress, ckpt_every=checkpoint_every) if world.main else [Guard()]
    return _finish(run, tr, cbs, data_spec=data_spec, recipe=recipe)


def train_teacher_run(data: str, out, steps: int | None = None, seed: int = 0, device="cpu", progress=True,
                      overwrite=False, config: dict | None = None, ema: float | None = None,
                      checkpoint_every: int | None = None, precision: str = "fp32", compile: bool = False):
    _check_ema(ema)
    cfg = {"kind": "teacher", "data": data, "config": _given(config, steps), "seed": seed, "device": str(device),
           "steps": steps, "ema": ema, **_check_options(precision, compile)}
    return _start(out, cfg, device, progress, overwrite, checkpoint_every)


def distill_run(method: str, teacher: str, out, steps: int | None = None, config: dict | None = None, seed: int = 0,
                device="cpu", progress=True, ema: float | None = None, overwrite=False, data: str | None = None,
                checkpoint_every: int | None = None, precision: str = "fp32", compile: bool = False):
    _check_ema(ema)
    cfg = {"kind": "distill", "method": method, "config": _given(config, steps), "teacher": teacher, "data": data,
           "seed": seed, "device": str(device), "steps": steps, "ema": ema, **_check_options(precision, compile)}
    return _start(out, cfg, device, progress, overwrite, checkpoint_every)


def default_kd_teacher(task: str) -> str:
    return zoo_entry_name("kd", task)


def kd_run(method: str, task: str, out, teacher: str | None = None, steps: int | None = None,
           config: dict | None = None, seed: int = 0, device="cpu", progress=True, overwrite=False, ema=None,
           checkpoint_every: int | None = None, precision: str = "fp32", compile: bool = False):
    """Knowledge distillation into a run folder: the student classifier / language model is saved there."""
    from lab.kd import get, get_task  # lazy: each recipe loads only what it runs

    cls = get(method)
    tk = get_task(task)
    _check_ema(ema)
    if teacher is None and cls.needs_teacher:
        teacher = default_kd_teacher(tk.name)
    cfg = {"kind": "kd", "method": method, "config": _given(config, steps), "teacher": teacher, "task": tk.name,
           "seed": seed, "device": str(device), "steps": steps, "ema": ema, **_check_options(precision, compile)}
    return _start(out, cfg, device, progress, overwrite, checkpoint_every)


def dd_run(method: str, out, ipc: int | None = None, steps: int | None = None, config: dict | None = None,
           seed: int = 0, device="cpu", progress=True, overwrite=False, checkpoint_every: int | None = None):
    """Dataset distillation into a run folder: the distilled images (``lab.dd.load_synset``) are saved there."""
    from lab.dd import get  # lazy: each recipe loads only what it runs

    get(method)  # an unknown method is refused before a folder is made
    given = {**_given(config, steps), **({"ipc": int(ipc)} if ipc is not None else {})}
    cfg = {"kind": "dd", "method": method, "config": given, "seed": seed, "device": str(device), "steps": steps,
           "ema": None}
    return _start(out, cfg, device, progress, overwrite, checkpoint_every)


def build_run(cfg: dict, device):
    """The trainable a run config describes -> (trainable, recipe, data spec): the one way a run's trainable is
    built, for a new run (whose ``config`` holds only the fields given) and for a resumed one (config.json),
    with the run's ``precision`` and ``compile`` applied."""
    tr, recipe, data_spec = _build(cfg, device)
    if cfg.get("precision", "fp32") != "fp32":
        if not hasattr(tr, "set_precision"):
            raise LabError(f"precision {cfg['precision']} is not supported for {cfg.get('kind')} runs; allowed: fp32")
        tr.set_precision(cfg["precision"])
    if cfg.get("compile"):
        tr.compile()
    return tr, recipe, data_spec


def _build(cfg: dict, device):
    kind = cfg.get("kind", "distill")
    try:
        if kind == "teacher":
            from lab.diffusion.train import TeacherTraining  # lazy: each recipe loads only what it runs

            tr = TeacherTraining(cfg["data"], cfg["config"], seed=cfg["seed"], device=device)
            return tr, {"trainer": "flow matching", "config": cfg["config"], "seed": cfg["seed"],
                        "ema": cfg.get("ema")}, tr.data.spec
        if kind == "kd":
            from lab.kd import get  # lazy: each recipe loads only what it runs

            cls = get(cfg["method"])
            tr = cls(cfg["teacher"] if cls.needs_teacher else None, cfg["task"], cfg["config"], seed=cfg["seed"],
                     device=device)
            return tr, {"method": cfg["method"], "teacher": cfg["teacher"], "task": cfg["task"],
                        "config": cfg["config"], "seed": cfg["seed"]}, cfg["task"]
        if kind == "dd":
            from lab.dd import get  # lazy: each recipe loads only what it runs

            tr = get(cfg["method"])(cfg["config"], seed=cfg["seed"], device=device)
            return tr, {"method": cfg["method"], "config": cfg["config"], "seed": cfg["seed"]}, "digits"
        if kind == "distill":
            from lab.methods import get_method  # lazy: each recipe loads only what it runs

            cls = get_method(cfg["method"])
            gen, data = resolve_teacher(cfg["teacher"], device, cfg["data"])
            tr = cls(gen, data, cfg["config"], seed=cfg["seed"], device=device)
            return tr, {"method": cfg["method"], "teacher": cfg["teacher"], "config": cfg["config"],
                        "seed": cfg["seed"]}, tr.data.spec
    except KeyError as e:
        raise LabError(f"config.json lacks {e.args[0]!r}; it is not a usable run folder") from None
    except TypeError as e:
        raise LabError(f"config.json has a value of the wrong type ({e}); it is not a usable run folder") from None
    raise LabError(f"config.json has kind {kind!r}; allowed: teacher, distill, kd, dd")


def _completed(cfg: dict, tr, recipe: dict, data_spec: str) -> dict:
    """The run config ``cfg`` with what the built trainable says (its data, whole config, steps and networks);
    the recipe's config follows."""
    cfg = {**cfg, **({"data": data_spec} if "data" in cfg else {}), "config": tr.config_dict(),
           "steps": tr.total_steps, "built": built_nets(tr)}
    recipe["config"] = cfg["config"]
    return cfg


def _canon(cfg: dict) -> str:
    return json.dumps(cfg, sort_keys=True)


def _changed(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Keys whose values differ between two (nested) configs, as ``path: old -> new``."""
    out = []
    for k in sorted(set(a) | set(b), key=str):
        va, vb = a.get(k, "<absent>"), b.get(k, "<absent>")
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _changed(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k}: {va!r} -> {vb!r}")
    return out


def _with_overrides(cfg: dict, overrides: dict) -> dict:
    new = json.loads(json.dumps(cfg))
    if not isinstance(new.get("config"), dict):
        raise LabError("config.json has no 'config' object; it is not a usable run folder")
    for k, v in overrides.items():
        new["config"][k] = v
    if "steps" in overrides:
        new["steps"] = overrides["steps"]
    return new


def resume_run(folder, progress=True, device=None, overrides: dict | None = None,
               checkpoint_every: int | None = None):
    """Finish a run folder from its newest good checkpoint (or from the start, if it was killed before its
    first one). ``overrides`` (config fields, e.g. a lower ``lr`` after a divergence, or more ``steps``) are
    validated, applied to the rebuilt method and its optimisers, and recorded in ``config.json`` under
    ``resumes``. A ``config.json`` edited by hand since the checkpoint is refused, never silently ignored.
    The folder is locked for the whole resume."""
    run = Run.open(folder)
    w = distributed.env_world()
    if w is not None and not w.main:
        return _resume_follower(run, device)
    run.acquire()
    try:
        return _resume_locked(run, progress, device, dict(overrides or {}), checkpoint_every)
    finally:
        run.release()


def _resume_follower(run: Run, device):
    """A rank other than 0 under torchrun: waits for rank 0 to settle the folder (overrides, config.json), then
    loads the same checkpoint read-only and trains its shard; writes nothing."""
    cfg = run.config
    world, dev = distributed.init(device or cfg.get("device", "cpu"))
    if not distributed.agree(True):
        raise LabError(f"rank 0 could not resume {run.folder} (see its error)")
    run = Run.open(run.folder)
    cfg = run.config
    tr, recipe, data_spec = build_run(cfg, dev)
    if run.has_checkpoint():
        tr.load_state_dict(run.load_checkpoint()["trainable"])
    done = tr.it >= tr.total_steps and run.has_model()
    if done:
        return None
    distributed.check_supported(cfg.get("kind", "distill"), tr)
    distributed.wrap(tr, world)
    return _finish(None, tr, [Guard()], data_spec=data_spec, recipe=recipe)


def _resume_locked(run: Run, progress, device, overrides: dict, checkpoint_every):
    cfg = run.config
    ckpt = run.load_checkpoint() if run.has_checkpoint() else None
    if ckpt is not None and isinstance(ckpt.get("run_config"), str) and ckpt["run_config"] != _canon(cfg):
        saved = json.loads(ckpt["run_config"])
        if ckpt.get("prev_run_config") == _canon(cfg):
            cfg = saved  # killed between committing a resume's overrides and rewriting config.json: finish that
            run.write_config(cfg)
        else:
            diff = "; ".join(_changed(saved, cfg)[:4])
            raise LabError(f"{run.folder}/config.json was edited after its last checkpoint ({diff}); hand edits are "
                           "not applied: restore it and pass changes on resume, e.g. --config '{\"lr\": 0.0001}'")
    dev = device or cfg.get("device", "cpu")
    world, dev = distributed.init(dev)
    new_cfg = _with_overrides(cfg, overrides) if overrides else cfg
    tr, recipe, data_spec = build_run(new_cfg, dev)
    if overrides:
        new_cfg = _completed(new_cfg, tr, recipe, data_spec)
    fresh = {n: [{k: v for k, v in g.items() if k != "params"} for g in o.param_groups]
             for n, o in getattr(tr, "optimizers", {}).items()}
    if ckpt is not None:
        try:
            tr.load_state_dict(ckpt["trainable"])
        except (RuntimeError, KeyError, ValueError, TypeError) as e:
            if isinstance(e, LabError):
                raise
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise LabError(f"the checkpoint in {run.folder} does not fit its config"
                           f"{' with these overrides' if overrides else ''} ({first[:200]})") from None
    if overrides:  # the optimisers' hyperparameters (lr, betas, weight decay) follow the new config
        for n, groups in fresh.items():
            for g, h in zip(tr.optimizers[n].param_groups, groups):
                g.update(h)
    cbs = run_callbacks(run, tr, cfg.get("ema"), progress, ckpt_every=checkpoint_every)
    if ckpt is not None:
        _restore_callbacks(cbs, ckpt.get("callbacks", {}))
    if overrides:
        new_cfg["resumes"] = list(cfg.get("resumes", [])) + [{"step": tr.it, "overrides": overrides}]
        ck = next(c for c in cbs if isinstance(c, Checkpoint))
        ck.extra = {"run_config": _canon(new_cfg), "prev_run_config": _canon(cfg)}
        ck.save(tr)  # the checkpoint carries the new config first; then config.json says it too
        run.write_config(new_cfg)
        cfg = new_cfg
    done = tr.it >= tr.total_steps and run.has_model()
    if world is not None:
        distributed.agree(True)  # the other ranks read the settled folder from here on
        if done:
            return run
        distributed.check_supported(cfg.get("kind", "distill"), tr)
        distributed.wrap(tr, world)
    if done:
        return run
    return _finish(run, tr, cbs, data_spec=data_spec, recipe=recipe)


def _finish(run: "Run | None", trainable, callbacks, data_spec: str, recipe: dict) -> "Run | None":
    """Train to the end under the run's lock and save the model; a divergence is one line naming the
    last good checkpoint. ``run`` is None on the ranks other than 0 under torchrun: they train their shard and
    write nothing."""
    if run is None:
        for _ in train(trainable, callbacks=callbacks):
            pass
        distributed.barrier()  # rank 0 has saved the model
        distributed.unwrap(trainable)
        return None
    out = _finish_main(run, trainable, callbacks, data_spec, recipe)
    if distributed.current() is not None:
        distributed.barrier()  # the other ranks return once the model is saved
        distributed.unwrap(trainable)
    return out


def _finish_main(run: Run, trainable, callbacks, data_spec: str, recipe: dict) -> Run:
    run.acquire()
    try:
        ck = next((c for c in callbacks if isinstance(c, Checkpoint)), None)
        if ck is not None:
            ck.extra = {"run_config": _canon(run.config), **{k: v for k, v in ck.extra.items() if k != "run_config"}}
        t0 = time.perf_counter()
        try:
            for _ in train(trainable, callbacks=callbacks):
                pass
        except DivergenceError as e:
            last = ck.last_step if ck is not None and ck.last_step is not None else None
            kept = f"the last good checkpoint (step {last}) is kept" if last is not None else "no checkpoint was written"
            e.args = (f"{e}; {kept}; resume with a lower learning rate: "
                      f"lab distill --resume {run.folder} --config '{{\"lr\": ...}}'",)
            raise e from None
        wall = time.perf_counter() - t0
        gen = trainable.generator()
        run.path("model.json"), run.path("weights.safetensors")  # refuse symlinks before writing the model
        gen.save(run.folder, {"data": data_spec, "recipe": {**recipe, **built_nets(trainable)},
                              "train_seconds": round(wall, 2),
                              "run": str(run.folder)})
        return run
    finally:
        run.release()
