"""The ``lab`` command (also ``python -m lab``).

Bad input never shows a traceback: one line naming the allowed values, exit code 2.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

from lab.errors import LabError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Distillation Lab: distil diffusion/flow teachers into few-step students and look inside.")
teacher_app = typer.Typer(no_args_is_help=True, help="Train teachers.")
runs_app = typer.Typer(no_args_is_help=True, help="Run folders.")
zoo_app = typer.Typer(no_args_is_help=True, help="The zoo of shipped teachers and students.")
app.add_typer(teacher_app, name="teacher")
app.add_typer(runs_app, name="runs")
app.add_typer(zoo_app, name="zoo")
kd_app = typer.Typer(no_args_is_help=True, help="Knowledge distillation of classifiers and language models.")
app.add_typer(kd_app, name="kd")


def fail(msg: str) -> None:
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(code=2)


def _json(s: Optional[str], what: str) -> dict:
    if not s:
        return {}
    try:
        v = json.loads(s)
    except json.JSONDecodeError as e:
        fail(f"{what} is not valid JSON ({e.msg}); example: --config '{{\"lr\": 0.001}}'")
    if not isinstance(v, dict):
        fail(f"{what} must be a JSON object, e.g. '{{\"lr\": 0.001}}'")
    return v


def _positive(v: Optional[int], name: str) -> None:
    if v is not None and v < 1:
        fail(f"{name} must be a positive integer, got {v}")


@app.command()
def methods():
    """List the registered methods: name, family, mechanism and paper."""
    from lab.methods import REGISTRY

    for name in sorted(REGISTRY):
        d = REGISTRY[name].describe()
        typer.echo(f"{d['name']:<12} [{d['family']}]\n    {d['mechanism']}\n    paper: {d['paper']}")


@teacher_app.command("train")
def teacher_train(
    data: str = typer.Option(..., help="toy2d:NAME, a path to .npy / .csv points (N x 2), digits, digits16, "
                                       "or images:PATH (an ImageFolder tree, an .npz with x and y, or MNIST IDX files)"),
    out: Path = typer.Option(..., help="output run folder (must not exist or be empty)"),
    steps: Optional[int] = typer.Option(None, help="training steps (default 4000)"),
    seed: int = typer.Option(0),
    device: str = typer.Option("cpu", help="auto, cpu, cuda, cuda:N, mps"),
    config: Optional[str] = typer.Option(None, help="JSON object of TeacherConfig fields"),
    ema: Optional[float] = typer.Option(None, help="EMA decay of the saved weights (e.g. 0.999; the digits zoo teacher's)"),
    quiet: bool = typer.Option(False, help="no progress bar"),
):
    """Train a flow-matching teacher on named or user data."""
    from lab.runs.recipes import train_teacher_run
    from lab.trainable import resolve_device

    _positive(steps, "--steps")
    run = train_teacher_run(data, out, steps, seed, resolve_device(device), progress=not quiet,
                            config=_json(config, "--config"), ema=ema)
    typer.echo(f"teacher saved to {run.folder}")


@app.command()
def distill(
    method: Optional[str] = typer.Option(None, help="method name (see `lab methods`)"),
    teacher: Optional[str] = typer.Option(None, help="teacher folder, diffusers pipeline folder, or zoo entry, "
                                                     "e.g. toy2d/8gaussians/teacher, digits/teacher"),
    data: Optional[str] = typer.Option(None, help="the data the teacher models (default: the teacher's card; "
                                                  "required for a diffusers pipeline)"),
    out: Optional[Path] = typer.Option(None, help="output run folder (must not exist or be empty)"),
    steps: Optional[int] = typer.Option(None, help="distillation steps (default: the method's)"),
    resume: Optional[Path] = typer.Option(None, help="resume this run folder instead"),
    config: Optional[str] = typer.Option(None, help="JSON object of the method's config fields"),
    seed: int = typer.Option(0),
    ema: Optional[float] = typer.Option(None, help="evaluation EMA decay for the student (e.g. 0.999)"),
    device: str = typer.Option("cpu", help="auto, cpu, cuda, cuda:N, mps"),
    quiet: bool = typer.Option(False, help="no progress bar"),
):
    """Distil a teacher with a method into a run folder, or resume one."""
    from lab.runs.recipes import distill_run, resume_run
    from lab.trainable import resolve_device

    _positive(steps, "--steps")
    if resume is not None:
        if method or teacher or out:
            fail("--resume takes only the run folder; drop --method/--teacher/--out")
        run = resume_run(resume, progress=not quiet)
        typer.echo(f"resumed and finished {run.folder}")
        return
    missing = [n for n, v in (("--method", method), ("--teacher", teacher), ("--out", out)) if not v]
    if missing:
        fail(f"missing {', '.join(missing)} (or use --resume DIR)")
    run = distill_run(method, teacher, out, steps, _json(config, "--config"), seed, resolve_device(device),
                      progress=not quiet, ema=ema, data=data)
    typer.echo(f"student saved to {run.folder}")


@kd_app.command("list")
def kd_list():
    """List the knowledge-distillation methods and tasks."""
    from lab.kd import KD_REGISTRY, list_tasks

    for name in sorted(KD_REGISTRY):
        d = KD_REGISTRY[name].describe()
        typer.echo(f"{d['name']:<18} [{', '.join(d['kinds'])}]\n    {d['mechanism']}\n    paper: {d['paper']}")
    typer.echo(f"tasks: {', '.join(list_tasks())}")


@kd_app.command("run")
def kd_run_cmd(
    method: str = typer.Option(..., help="KD method (see `lab kd list`)"),
    task: str = typer.Option("digits", help="digits, hard, language or a labelled toy2d source (see `lab kd list`)"),
    out: Path = typer.Option(..., help="output run folder (must not exist or be empty)"),
    teacher: Optional[str] = typer.Option(None, help="teacher: a KD zoo entry (default kd/TASK/teacher) or a "
                                                     "saved model folder"),
    steps: Optional[int] = typer.Option(None, help="training steps (default: the method's)"),
    config: Optional[str] = typer.Option(None, help="JSON object of the method's config fields"),
    seed: int = typer.Option(0),
    device: str = typer.Option("cpu", help="auto, cpu, cuda, cuda:N, mps"),
    quiet: bool = typer.Option(False, help="no progress bar"),
):
    """Distil a teacher classifier / language model into a student (a run folder; resume with
    `lab distill --resume DIR`)."""
    from lab.runs.recipes import kd_run
    from lab.trainable import resolve_device

    _positive(steps, "--steps")
    run = kd_run(method, task, out, teacher, steps, _json(config, "--config"), seed, resolve_device(device),
                 progress=not quiet)
    from lab.io import read_json

    summ = read_json(run.folder / "model.json")["card"].get("summary", {})
    shown = {k: round(v, 4) for k, v in summ.items() if k.startswith("last/") and k != "last/it"}
    typer.echo(f"student saved to {run.folder}; test {shown}")


@kd_app.command("eval")
def kd_eval(
    model: Path = typer.Option(..., help="a saved student or teacher folder (model.json + weights.safetensors)"),
    task: str = typer.Option("digits", help="the task to evaluate on"),
    split: str = typer.Option("test", help="train or test"),
):
    """Accuracy, NLL, ECE (and KL to the true language) of a saved classifier / language model."""
    from lab.kd import get_task, load_model

    net = load_model(model)
    m = get_task(task).evaluate(net, split)
    typer.echo(json.dumps({k: round(v, 5) for k, v in m.items()}))


@app.command()
def sample(
    model: str = typer.Argument(..., help="a teacher/student folder or a zoo entry"),
    nfe: int = typer.Option(1, help="function evaluations (steps)"),
    n: int = typer.Option(1000, help="number of samples"),
    seed: int = typer.Option(0),
    out: Path = typer.Option(..., help="output .npy file (must not exist)"),
    force: bool = typer.Option(False, help="overwrite --out"),
    label: Optional[int] = typer.Option(None, help="class label for a class-conditional model (default: unconditional)"),
):
    """Draw samples from a model folder or zoo entry and save them as .npy ((N, 2) points or (N, C, H, W) images)."""
    import numpy as np

    from lab import zoo
    from lab.diffusion.generators import load_generator
    from lab.io import _atomic

    _positive(nfe, "--nfe")
    _positive(n, "--n")
    if out.suffix != ".npy":
        fail(f"--out must end in .npy, got {out.name!r}")
    if out.exists() and not force:
        fail(f"{out} exists; pass --force to overwrite")
    p = Path(model)
    if (p / "model.json").exists():
        gen = load_generator(p)
    elif model.startswith("toy2d/") or zoo.is_image_entry(model):
        gen = zoo.load(model)
    else:
        fail(f"{model!r} is neither a model folder (with model.json) nor a zoo entry; allowed zoo entries: {', '.join(zoo.entries())}")
    y = None
    if label is not None:
        import torch

        k = max([int(getattr(net, "n_classes", 0) or 0) for net in gen.nets().values()] or [0])
        if not 0 <= label < k:
            fail(f"invalid --label {label}; allowed: " + (f"0..{k - 1}" if k else "none (this model is not class-conditional)"))
        y = torch.full((n,), label, dtype=torch.long, device=gen.device)
    x = gen.sample(n, nfe=nfe, seed=seed, y=y).x.cpu().numpy()

    def w(tmp):
        with open(tmp, "wb") as f:
            np.save(f, x)

    _atomic(out, w)
    typer.echo(f"{n} samples at {nfe} NFE -> {out}")


@app.command()
def export(
    src: str = typer.Argument(..., help="an image teacher/student folder (with model.json) or a zoo entry"),
    format: str = typer.Option("diffusers", "--format", help="export format (allowed: diffusers)"),
    out: Path = typer.Option(..., help="output pipeline folder (must not exist unless --overwrite)"),
    nfe: Optional[int] = typer.Option(None, help="steps the pipeline is exact for (default: smallest native NFE, 50 for teachers)"),
    label: Optional[int] = typer.Option(None, help="class label to fold in (default: unconditional)"),
    w: Optional[float] = typer.Option(None, help="value of the net's extra 'w' condition (guidance weight)"),
    overwrite: bool = typer.Option(False, help="replace an existing --out folder"),
):
    """Export an image generator as a diffusers pipeline folder (save_pretrained)."""
    if format != "diffusers":
        fail(f"unknown --format {format!r}; allowed: diffusers")
    _positive(nfe, "--nfe")
    from lab.interop.diffusers import export_pipeline

    try:
        p = export_pipeline(src, out, nfe=nfe, label=label, w=w, overwrite=overwrite)
    except LabError as e:
        fail(str(e))
    typer.echo(f"diffusers pipeline saved to {p}")


@runs_app.command("list")
def runs_list(root: Path = typer.Option(Path("runs"), help="folder to search for runs")):
    """List run folders under ROOT."""
    from lab.runs.run import list_runs

    df = list_runs(root)
    typer.echo("no runs found" if df.empty else df.to_string(index=False))


@zoo_app.command("list")
def zoo_list():
    """List zoo entries and where each one is (shipped, cached or missing)."""
    from lab import zoo

    for e in zoo.entries():
        p = zoo.find(e) if not e.endswith("/analytic") else None
        where = "analytic" if e.endswith("/analytic") else ("shipped" if p and zoo.ASSETS in p.parents else
                                                              "cached" if p else "missing")
        typer.echo(f"{e:<32} {where}")
    from lab.nets.digits_eval import find_eval_net

    for e in zoo.judges():
        p = find_eval_net(e.split("/")[1])
        where = "shipped" if p and zoo.ASSETS in p.parents else "cached" if p else "missing"
        typer.echo(f"{e:<32} {where} (judge for lab.metrics.images)")
    from lab.kd.zoo import find as kd_find

    for e in zoo.kd_entries():
        p = kd_find(e)
        where = "shipped" if p and zoo.ASSETS in p.parents else "cached" if p else "missing"
        typer.echo(f"{e:<32} {where} (knowledge-distillation teacher)")


@zoo_app.command("build")
def zoo_build(
    entry: Optional[List[str]] = typer.Option(None, help="entries to build (default: all shipped ones)"),
    force: bool = typer.Option(False, help="rebuild entries that already exist"),
    quiet: bool = typer.Option(False),
):
    """Train the shipped zoo entries into assets/zoo (existing ones are kept unless --force)."""
    from lab import zoo

    built = zoo.build(entry or None, force=force, progress=not quiet)
    typer.echo(f"built {len(built)} entr{'y' if len(built) == 1 else 'ies'}: {', '.join(built) or 'none (all present)'}")


@app.command("app")
def run_app(port: int = typer.Option(8501), host: str = typer.Option("127.0.0.1")):
    """Serve the Streamlit explorer on the shipped zoo."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    page = root / "app" / "Home.py"
    if not page.exists():
        fail(f"the app is not installed next to the package ({page} missing)")
    typer.echo(f"Distillation Lab app: http://{host}:{port}")
    raise typer.Exit(subprocess.call([sys.executable, "-m", "streamlit", "run", str(page), "--server.port", str(port),
                                      "--server.address", host, "--server.headless", "true",
                                      "--browser.gatherUsageStats", "false"]))


def main() -> None:
    try:
        app(standalone_mode=True)
    except LabError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
