"""The ``lab`` command (also ``python -m lab``).

Bad input never shows a traceback: it ends in exactly one stderr line ``error: ...`` naming the bad
value and the allowed ones. Exit codes:

- 0: done;
- 1: internal error, a bug: ``error: internal error: TYPE: MESSAGE (please report)``
  (``LAB_DEBUG=1`` shows the traceback instead);
- 2: bad input: a usage error, a number out of range, a bad config, a missing, unreadable or
  malformed file or model folder, an output that cannot be written;
- 130: interrupted (Ctrl-C).

Every number the CLI takes has a range (:data:`BOUNDS`), checked while the arguments are parsed,
before anything is read or written. :func:`main` is the entry point; ``lab.cli.app`` (the Typer app,
as ``typer.testing.CliRunner`` runs it) raises a ``LabError`` instead of printing it.
"""
from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass
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
dd_app = typer.Typer(no_args_is_help=True, help="Dataset distillation: a few synthetic digits per class.")
app.add_typer(dd_app, name="dd")

#: samples drawn (and held in memory) at a time by ``lab sample`` ...
SAMPLE_CHUNK = 4096
#: ... and at most this many values of noise per chunk (large images: fewer samples at a time)
SAMPLE_CHUNK_VALUES = 2**18


@dataclass(frozen=True)
class Bound:
    """The allowed values of a numeric option: integers in lo..hi, or finite floats in [lo, hi] / [lo, hi)."""

    kind: type
    lo: float | None = None
    hi: float | None = None
    hi_open: bool = False

    def describe(self) -> str:
        if self.kind is int:
            return f"an integer in {self.lo}..{self.hi}"
        if self.lo is None:
            return "a finite float"
        return f"a float in [{self.lo:g}, {self.hi:g}{')' if self.hi_open else ']'}"

    def parse(self, raw):
        """``raw`` (a command-line string or a default) as a value within the bound, else ``typer.BadParameter``."""
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            v = raw
        else:
            try:
                v = int(str(raw).strip(), 10) if self.kind is int else float(str(raw).strip())
            except ValueError:
                raise typer.BadParameter(f"{raw!r} is not {'an integer' if self.kind is int else 'a number'}; "
                                         f"allowed: {self.describe()}") from None
        if self.kind is int and not isinstance(v, int):
            raise typer.BadParameter(f"{v!r} is not an integer; allowed: {self.describe()}")
        ok = math.isfinite(v) and (self.lo is None or v >= self.lo) and (
            self.hi is None or (v < self.hi if self.hi_open else v <= self.hi))
        if not ok:
            raise typer.BadParameter(f"{raw} is out of range; allowed: {self.describe()}")
        return v


#: the range of every number the CLI takes (the option name without its dashes)
BOUNDS: dict[str, Bound] = {
    "steps": Bound(int, 1, 10_000_000),
    "checkpoint-every": Bound(int, 1, 10_000_000),
    "n": Bound(int, 1, 1_000_000),
    "nfe": Bound(int, 1, 1000),
    "seed": Bound(int, 0, 2**63 - 1),
    "port": Bound(int, 1, 65535),
    "ema": Bound(float, 0.0, 1.0, hi_open=True),
    "w": Bound(float),
    "ipc": Bound(int, 1, 50),
    "nets": Bound(int, 1, 100),
}


def bounded(name: str, default, help: str):
    """A ``typer.Option`` for ``--name`` parsed and range-checked by ``BOUNDS[name]`` (named in its help)."""
    b = BOUNDS[name]
    return typer.Option(default, f"--{name}", help=f"{help} (allowed: {b.describe()})", parser=b.parse,
                        metavar="INTEGER" if b.kind is int else "FLOAT")


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
    except RecursionError:
        fail(f"{what} is not valid JSON (nested too deeply)")
    if not isinstance(v, dict):
        fail(f"{what} must be a JSON object, e.g. '{{\"lr\": 0.001}}'")
    return v


def _checkpointing(every: Optional[int]) -> dict:
    """The ``checkpoint_every`` keyword for a recipe, only when given (else the lab's time-based default)."""
    return {} if every is None else {"checkpoint_every": every}


CHECKPOINT_HELP = "steps between checkpoints (default: the lab's, time-based: every few seconds)"
DEVICE_HELP = "auto, cpu, cuda, cuda:N, mps (under torchrun: cpu or cuda; each rank takes cuda:LOCAL_RANK)"
PRECISION_HELP = "fp32, bf16 or fp16 (autocast around the training step; fp16 scales the loss); kept on resume"
COMPILE_HELP = "torch.compile the trained networks (kept on resume)"


def _precision(precision: str) -> str:
    from lab.trainable import PRECISIONS  # lazy: loaded only when a command runs

    if precision not in PRECISIONS:
        fail(f"invalid --precision {precision!r}; allowed: {', '.join(PRECISIONS)}")
    return precision


@app.command()
def methods():
    """List the registered methods: name, family, mechanism and paper."""
    from lab.methods import REGISTRY  # lazy: loaded only when this command runs

    for name in sorted(REGISTRY):
        d = REGISTRY[name].describe()
        typer.echo(f"{d['name']:<12} [{d['family']}]\n    {d['mechanism']}\n    paper: {d['paper']}")


@teacher_app.command("train")
def teacher_train(
    data: str = typer.Option(..., help="toy2d:NAME, a path to .npy / .csv points (N x 2), digits, digits16, "
                                       "or images:PATH (an ImageFolder tree, an .npz with x and y, or MNIST IDX files)"),
    out: Path = typer.Option(..., help="output run folder (must not exist or be empty)"),
    steps: Optional[int] = bounded("steps", None, "training steps (default 4000)"),
    seed: int = bounded("seed", 0, "random seed"),
    device: str = typer.Option("cpu", help=DEVICE_HELP),
    config: Optional[str] = typer.Option(None, help="JSON object of TeacherConfig fields"),
    ema: Optional[float] = bounded("ema", None, "EMA decay of the saved weights (e.g. 0.999; the digits zoo teacher's)"),
    checkpoint_every: Optional[int] = bounded("checkpoint-every", None, CHECKPOINT_HELP),
    precision: str = typer.Option("fp32", help=PRECISION_HELP),
    compile: bool = typer.Option(False, "--compile", help=COMPILE_HELP),
    quiet: bool = typer.Option(False, help="no progress bar"),
):
    """Train a flow-matching teacher on named or user data."""
    from lab.runs.recipes import train_teacher_run  # lazy: loaded only when this command runs
    from lab.trainable import resolve_device  # lazy: loaded only when this command runs

    run = train_teacher_run(data, out, steps, seed, resolve_device(device), progress=not quiet,
                            config=_json(config, "--config"), ema=ema, precision=_precision(precision),
                            compile=compile, **_checkpointing(checkpoint_every))
    if run is not None:  # None on the ranks other than 0 under torchrun
        typer.echo(f"teacher saved to {run.folder}")


@app.command()
def distill(
    method: Optional[str] = typer.Option(None, help="method name (see `lab methods`)"),
    teacher: Optional[str] = typer.Option(None, help="teacher folder, diffusers pipeline folder, or zoo entry, "
                                                     "e.g. toy2d/8gaussians/teacher, digits/teacher"),
    data: Optional[str] = typer.Option(None, help="the data the teacher models (default: the teacher's card; "
                                                  "required for a diffusers pipeline)"),
    out: Optional[Path] = typer.Option(None, help="output run folder (must not exist or be empty)"),
    steps: Optional[int] = bounded("steps", None, "distillation steps (default: the method's; with --resume: "
                                                  "the new total)"),
    resume: Optional[Path] = typer.Option(None, help="resume this run folder instead (with --config overrides, "
                                                     "--steps, --checkpoint-every, --device, --quiet only)"),
    config: Optional[str] = typer.Option(None, help="JSON object of the method's config fields (with --resume: "
                                                    "overrides of the run's config)"),
    seed: Optional[int] = bounded("seed", None, "random seed (default 0)"),
    ema: Optional[float] = bounded("ema", None, "evaluation EMA decay for the student (e.g. 0.999)"),
    checkpoint_every: Optional[int] = bounded("checkpoint-every", None, CHECKPOINT_HELP),
    device: Optional[str] = typer.Option(None, help="auto, cpu, cuda, cuda:N, mps (default cpu; with --resume: "
                                                    "the run's; under torchrun: cpu or cuda)"),
    precision: str = typer.Option("fp32", help=PRECISION_HELP),
    compile: bool = typer.Option(False, "--compile", help=COMPILE_HELP),
    quiet: bool = typer.Option(False, help="no progress bar"),
):
    """Distil a teacher with a method into a run folder, or resume one."""
    from lab.runs.recipes import distill_run, resume_run  # lazy: loaded only when this command runs
    from lab.trainable import resolve_device  # lazy: loaded only when this command runs

    if resume is not None:
        given = [n for n, v in (("--method", method), ("--teacher", teacher), ("--out", out), ("--data", data),
                                ("--seed", seed), ("--ema", ema)) if v is not None]
        given += [n for n, v in (("--precision", precision != "fp32"), ("--compile", compile)) if v]
        if given:
            fail(f"--resume takes only the run folder (plus --config, --steps, --checkpoint-every, --device, "
                 f"--quiet); drop {', '.join(given)}")
        overrides = _json(config, "--config")
        if steps is not None:
            overrides["steps"] = steps
        kw = {**({"overrides": overrides} if overrides else {}), **_checkpointing(checkpoint_every),
              **({"device": resolve_device(device)} if device is not None else {})}
        run = resume_run(resume, progress=not quiet, **kw)
        if run is not None:  # None on the ranks other than 0 under torchrun
            typer.echo(f"resumed and finished {run.folder}")
        return
    missing = [n for n, v in (("--method", method), ("--teacher", teacher), ("--out", out)) if not v]
    if missing:
        fail(f"missing {', '.join(missing)} (or use --resume DIR)")
    run = distill_run(method, teacher, out, steps, _json(config, "--config"), seed or 0,
                      resolve_device(device or "cpu"), progress=not quiet, ema=ema, data=data,
                      precision=_precision(precision), compile=compile, **_checkpointing(checkpoint_every))
    if run is not None:  # None on the ranks other than 0 under torchrun
        typer.echo(f"student saved to {run.folder}")


@kd_app.command("list")
def kd_list():
    """List the knowledge-distillation methods and tasks."""
    from lab.kd import KD_REGISTRY, list_tasks  # lazy: loaded only when this command runs

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
    steps: Optional[int] = bounded("steps", None, "training steps (default: the method's)"),
    config: Optional[str] = typer.Option(None, help="JSON object of the method's config fields"),
    seed: int = bounded("seed", 0, "random seed"),
    checkpoint_every: Optional[int] = bounded("checkpoint-every", None, CHECKPOINT_HELP),
    device: str = typer.Option("cpu", help=DEVICE_HELP),
    precision: str = typer.Option("fp32", help=PRECISION_HELP),
    compile: bool = typer.Option(False, "--compile", help=COMPILE_HELP),
    quiet: bool = typer.Option(False, help="no progress bar"),
):
    """Distil a teacher classifier / language model into a student (a run folder; resume with
    `lab distill --resume DIR`)."""
    from lab.runs.recipes import kd_run  # lazy: loaded only when this command runs
    from lab.trainable import resolve_device  # lazy: loaded only when this command runs

    run = kd_run(method, task, out, teacher, steps, _json(config, "--config"), seed, resolve_device(device),
                 progress=not quiet, precision=_precision(precision), compile=compile,
                 **_checkpointing(checkpoint_every))
    if run is None:  # the ranks other than 0 under torchrun
        return
    from lab.io import read_json  # lazy: loaded only when this command runs

    summ = read_json(run.folder / "model.json")["card"].get("summary", {})
    shown = {k: round(v, 4) for k, v in summ.items() if k.startswith("last/") and k != "last/it"}
    typer.echo(f"student saved to {run.folder}; test {shown}")


@dd_app.command("list")
def dd_list():
    """List the dataset-distillation methods: name, mechanism and paper."""
    from lab.dd import DD_REGISTRY  # lazy: loaded only when this command runs

    for name in sorted(DD_REGISTRY):
        d = DD_REGISTRY[name].describe()
        typer.echo(f"{d['name']:<6} {d['mechanism']}\n    paper: {d['paper']}")


@dd_app.command("run")
def dd_run_cmd(
    method: str = typer.Argument(..., help="dataset distillation method (see `lab dd list`)"),
    ipc: int = bounded("ipc", 10, "synthetic images per class"),
    steps: Optional[int] = bounded("steps", None, "outer iterations (default: the method's)"),
    out: Path = typer.Option(..., help="output run folder (must not exist or be empty)"),
    config: Optional[str] = typer.Option(None, help="JSON object of the method's config fields"),
    seed: int = bounded("seed", 0, "random seed"),
    checkpoint_every: Optional[int] = bounded("checkpoint-every", None, CHECKPOINT_HELP),
    device: str = typer.Option("cpu", help="auto, cpu, cuda, cuda:N, mps"),
    quiet: bool = typer.Option(False, help="no progress bar"),
):
    """Distil the digits training set into IPC synthetic images per class (a run folder; resume with
    `lab distill --resume DIR`)."""
    from lab.runs.recipes import dd_run  # lazy: loaded only when this command runs
    from lab.trainable import resolve_device  # lazy: loaded only when this command runs

    run = dd_run(method, out, ipc, steps, _json(config, "--config"), seed, resolve_device(device),
                 progress=not quiet, **_checkpointing(checkpoint_every))
    from lab.io import read_json  # lazy: loaded only when this command runs

    hist = read_json(run.folder / "model.json")["card"].get("history", [])
    acc = f"; test accuracy of a fresh net trained on it: {hist[-1]['acc']:.4f}" if hist else ""
    typer.echo(f"distilled set saved to {run.folder}{acc}")


@dd_app.command("eval")
def dd_eval(
    run: Path = typer.Argument(..., help="a `lab dd run` folder (model.json + weights.safetensors)"),
    nets: int = bounded("nets", 3, "fresh nets to train (seeds 0..nets-1)"),
):
    """Test accuracy of fresh ConvNets trained only on a distilled set, next to the same number of random real
    images per class."""
    from lab.dd import EvalProtocol, evaluate_set, load_synset, random_real  # lazy: loaded only when this runs

    x, y, meta = load_synset(run)
    p = EvalProtocol(lr=float(meta.get("lr") or EvalProtocol.lr))
    r = evaluate_set(x, y, list(range(nets)), p)
    xr, yr = random_real(int(meta["ipc"]), 0)
    b = evaluate_set(xr, yr, list(range(nets)), EvalProtocol())
    typer.echo(json.dumps({"ipc": meta["ipc"], "acc": round(r["acc"], 5), "acc_std": round(r["acc_std"], 5),
                           "random_real_acc": round(b["acc"], 5), "random_real_std": round(b["acc_std"], 5)}))


@kd_app.command("eval")
def kd_eval(
    model: Path = typer.Option(..., help="a saved student or teacher folder (model.json + weights.safetensors)"),
    task: str = typer.Option("digits", help="the task to evaluate on"),
    split: str = typer.Option("test", help="train or test"),
    device: str = typer.Option("cpu", help="auto, cpu, cuda, cuda:N, mps"),
):
    """Accuracy, NLL, ECE (and KL to the true language) of a saved classifier / language model."""
    from lab.kd import get_task, load_model  # lazy: loaded only when this command runs
    from lab.trainable import resolve_device  # lazy: loaded only when this command runs

    net = load_model(model, resolve_device(device))
    m = get_task(task).evaluate(net, split)
    typer.echo(json.dumps({k: round(v, 5) for k, v in m.items()}))


@app.command()
def sample(
    model: str = typer.Argument(..., help="a teacher/student folder or a zoo entry"),
    nfe: int = bounded("nfe", 1, "function evaluations (steps)"),
    n: int = bounded("n", 1000, "number of samples"),
    seed: int = bounded("seed", 0, "random seed"),
    out: Path = typer.Option(..., help="output .npy file (must not exist unless --force; not a folder)"),
    force: bool = typer.Option(False, help="overwrite an existing --out file"),
    label: Optional[int] = typer.Option(None, help="class label for a class-conditional model (default: unconditional)"),
    device: str = typer.Option("cpu", help="auto, cpu, cuda, cuda:N, mps (the noise is drawn on the CPU, so the "
                                           "seed gives the same noise on any device)"),
):
    """Draw samples from a model folder or zoo entry and save them as .npy ((N, 2) points or (N, C, H, W) images).

    Samples are drawn in chunks (4096 at a time, fewer for large images) and written straight to disk,
    so memory stays flat in --n; the file appears (atomically) only once complete. The noise of the
    chunks is exactly the noise of one draw of n samples with the seed, so the file equals one
    ``gen.sample(n, nfe, seed).x`` for samplers that are deterministic given their noise (teachers,
    most students). Samplers with randomness of their own (multistep consistency re-noising, routed
    students' drawn labels, resampled particles) take it per chunk from a seed derived from --seed and
    the chunk index: the same file for the same seed, equal to one draw when n fits in one chunk, but
    not above.
    """
    from lab import zoo  # inside: start-up speed (the CLI imports torch and the lab only for commands that need them)

    if out.suffix != ".npy":
        fail(f"--out must end in .npy, got {out.name!r}")
    if out.is_dir():
        fail(f"--out {out} is a folder; allowed: a .npy file path")
    if out.exists() and not force:
        fail(f"{out} exists; pass --force to overwrite")
    from lab.trainable import resolve_device  # lazy: loaded only when this command runs

    gen = zoo.resolve(model, resolve_device(device), kind="generator").model
    if label is not None:
        k = max([int(getattr(net, "n_classes", 0) or 0) for net in gen.nets().values()] or [0])
        if not 0 <= label < k:
            fail(f"invalid --label {label}; allowed: " + (f"0..{k - 1}" if k else "none (this model is not class-conditional)"))
    per = math.prod(gen.shape)
    chunk = min(SAMPLE_CHUNK, max(16, SAMPLE_CHUNK_VALUES // per))
    _write_npy(out, gen.sample_chunks(n, nfe=nfe, seed=seed, chunk=chunk, y=label), n)
    typer.echo(f"{n} samples at {nfe} NFE -> {out}")


def _write_npy(out: Path, chunks, n: int) -> None:
    """Write the arrays of ``chunks`` (n rows in all) as one .npy at ``out``: a memory-mapped temporary file
    in the same folder, renamed into place when complete (an existing file is replaced only then)."""
    import tempfile

    from numpy.lib.format import open_memmap  # lazy: numpy only for --npy output

    tmp = None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
        os.close(fd)
        mm, i = None, 0
        for x in chunks:
            a = x.detach().cpu().numpy()
            if mm is None:
                mm = open_memmap(tmp, mode="w+", dtype=a.dtype, shape=(n, *a.shape[1:]))
            mm[i:i + len(a)] = a
            i += len(a)
        if mm is None or i != n:
            raise RuntimeError(f"the sampler gave {i} samples, not {n}")
        mm.flush()
        del mm
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
        tmp = None
    except OSError as e:
        raise LabError(f"cannot write {out}: {e.strerror or e}") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


@app.command()
def export(
    src: str = typer.Argument(..., help="an image teacher/student folder (with model.json) or a zoo entry"),
    format: str = typer.Option("diffusers", "--format", help="export format (allowed: diffusers)"),
    out: Path = typer.Option(..., help="output pipeline folder: new or empty (or a previous export, with --overwrite)"),
    nfe: Optional[int] = bounded("nfe", None, "steps the pipeline is exact for (default: smallest native NFE, 50 for teachers)"),
    label: Optional[int] = typer.Option(None, help="class label to fold in (default: unconditional)"),
    w: Optional[float] = bounded("w", None, "value of the net's extra 'w' condition (guidance weight)"),
    overwrite: bool = typer.Option(False, help="replace --out if it is a previous export (a folder with the "
                                               "lab_export.json marker, and nothing else); never the source"),
):
    """Export an image generator as a diffusers pipeline folder (save_pretrained)."""
    if format != "diffusers":
        fail(f"unknown --format {format!r}; allowed: diffusers")
    from lab.interop.diffusers import export_pipeline  # lazy: diffusers export only for this command

    try:
        p = export_pipeline(src, out, nfe=nfe, label=label, w=w, overwrite=overwrite)
    except LabError as e:
        fail(str(e))
    typer.echo(f"diffusers pipeline saved to {p}")


@runs_app.command("list")
def runs_list(root: Path = typer.Option(None, help="folder to search for runs (default: $LAB_RUNS, else ./runs)")):
    """List run folders under ROOT."""
    from lab.io import runs_root  # lazy: loaded only when this command runs
    from lab.runs.run import list_runs  # lazy: loaded only when this command runs

    df = list_runs(root if root is not None else runs_root())
    typer.echo("no runs found" if df.empty else df.to_string(index=False))


@zoo_app.command("list")
def zoo_list():
    """List zoo entries and where each one is (shipped, cached or missing)."""
    from lab import zoo  # inside: start-up speed (the CLI imports torch and the lab only for commands that need them)

    for e in zoo.entries():
        typer.echo(f"{e:<32} {zoo.where(e)}")
    for e in zoo.judges():
        typer.echo(f"{e:<32} {zoo.where(e)} (judge for lab.metrics.images)")
    for e in zoo.kd_entries():
        typer.echo(f"{e:<32} {zoo.where(e)} (knowledge-distillation teacher)")


@zoo_app.command("build")
def zoo_build(
    entry: Optional[List[str]] = typer.Option(None, help="entries to build (default: all shipped ones)"),
    force: bool = typer.Option(False, help="rebuild entries that already exist"),
    quiet: bool = typer.Option(False),
):
    """Train the shipped zoo entries into assets/zoo (existing ones are kept unless --force)."""
    from lab import zoo  # lazy: loaded only when this command runs

    built = zoo.build(entry or None, force=force, progress=not quiet)
    typer.echo(f"built {len(built)} entr{'y' if len(built) == 1 else 'ies'}: {', '.join(built) or 'none (all present)'}")


@app.command("app")
def run_app(port: int = bounded("port", 8501, "port to serve on"), host: str = typer.Option("127.0.0.1")):
    """Serve the Streamlit explorer on the shipped zoo."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    serve = root / "app" / "serve.py"  # streamlit's command line after a warm-up (imports, the first teacher)
    if not serve.exists():
        fail(f"the app is not installed next to the package ({serve} missing)")
    typer.echo(f"Distillation Lab app: http://{host}:{port}")
    raise typer.Exit(subprocess.call([sys.executable, str(serve), "--server.port", str(port),
                                      "--server.address", host]))


def _click_exceptions() -> list:
    """The modules whose exception classes the app may raise: the click that typer runs on (typer >= 0.2x
    vendors one as ``typer._click``) and the click package."""
    mods = []
    try:
        from typer._click import exceptions as vendored  # lazy: typer's vendored click may be absent; tried at call time

        mods.append(vendored)
    except ImportError:
        pass
    try:
        import click.exceptions as plain  # lazy: fallback when typer vendors no click

        mods.append(plain)
    except ImportError:
        pass
    return mods


def _classes(name: str) -> tuple:
    return tuple({getattr(m, name) for m in _click_exceptions() if hasattr(m, name)})


def _error(msg, code: int) -> int:
    line = " ".join(part.strip() for part in str(msg).splitlines() if part.strip())
    typer.echo(f"error: {line or 'failed'}", err=True)
    return code


def run(argv: Optional[List[str]] = None) -> int:
    """Run ``lab`` with the arguments ``argv`` (default: ``sys.argv[1:]``); return its exit code (see the
    module docstring), having printed any failure as one ``error:`` line."""
    from safetensors import SafetensorError  # lazy: only to recognise safetensors errors at the top level

    exits = (typer.Exit, *_classes("Exit"))
    try:
        rv = app(args=argv, prog_name="lab", standalone_mode=False)
        return rv if isinstance(rv, int) and not isinstance(rv, bool) else 0
    except _classes("NoArgsIsHelpError") as e:  # `lab` or `lab kd` alone: the help (already shown by typer)
        msg = e.format_message()
        if msg:
            typer.echo(msg)
        return 0
    except _classes("UsageError") as e:
        ctx = getattr(e, "ctx", None)
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        return _error(e.format_message() + hint, 2)
    except _classes("ClickException") as e:
        return _error(e.format_message(), 2)
    except exits as e:
        return int(getattr(e, "exit_code", 0) or 0)
    except (typer.Abort, *_classes("Abort")):
        return _error("aborted", 130)
    except KeyboardInterrupt:
        return _error("interrupted", 130)
    except LabError as e:
        return _error(e, 2)
    except json.JSONDecodeError as e:
        return _error(f"invalid JSON ({e.msg} at line {e.lineno} column {e.colno})", 2)
    except SafetensorError as e:
        return _error(f"unreadable safetensors file ({e})", 2)
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        return _error(f"{where}{e.strerror or e}", 2)
    except MemoryError:
        return _error("out of memory; allowed: smaller --n, --steps or batch", 1)
    except Exception as e:
        if os.environ.get("LAB_DEBUG"):
            raise
        return _error(f"internal error: {type(e).__name__}: {e} (please report)", 1)


def main(argv: Optional[List[str]] = None) -> None:
    """The ``lab`` entry point: :func:`run`, then exit with its code."""
    sys.exit(run(argv))


if __name__ == "__main__":
    main()
