"""Interop with Hugging Face diffusers: export lab image generators as diffusers pipelines, and
load a local diffusers ``UNet2DModel`` pipeline folder as a lab teacher.

Export (:func:`export_pipeline`, ``lab export SRC --format diffusers --out FOLDER``)
---------------------------------------------------------------------------------
A lab image generator (a v-prediction linear-flow :class:`~lab.nets.unet.UNet`) is written with
``save_pretrained`` as a :class:`diffusers.DDPMPipeline` holding

- a plain (unconditional) ``UNet2DModel``: the wrapper's condition vector for the chosen label
  (default: the null label, i.e. unconditional sampling) and fixed extra conditions (a guidance
  weight ``w``, a shortcut step size ``d``) is a constant added to the time embedding, so it is
  folded into ``time_embedding.linear_2.bias`` and ``class_embed_type`` becomes None;
- a ``FlowMatchEulerDiscreteScheduler``: timestep = 1000 * sigma, x <- x + (sigma_next - sigma) * v,
  our Euler sampler. Its own grid for N steps is linspace(1, 1/1000, N) + [0]; ours is
  linspace(1, 0, N + 1). ``shift_terminal = 1/N`` stretches diffusers' grid onto ours (None for
  N = 1, where the grids already agree). So **the pipeline is exact at the NFE it was exported for**
  (``nfe``: the model's smallest native NFE for students, 50 for teachers) and close (diffusers' own,
  slightly different, grid) at other step counts.

Plain diffusers reproduces our images for the same noise:
``DiffusionPipeline.from_pretrained(out)(batch_size=n, num_inference_steps=nfe,
generator=torch.Generator().manual_seed(seed))`` draws ``torch.randn((n, C, H, W))`` on the CPU from
that generator, exactly as :func:`lab.diffusion.generators.make_noise` does.

An export never deletes what it did not write: it is built in a temporary folder next to ``out`` and
renamed into place, and it carries a marker ``lab_export.json`` (source, lab version, files written).
``out`` may be new or an empty folder; ``overwrite`` replaces only a folder with that marker holding
nothing else, and never the source model folder (nor one inside it or containing it).

Exportable generator kinds: ``flow`` (teachers; progressive students use solver "ddim", which on
the linear process is the Euler step), ``reflow`` (nfe = 1 uses its one-step net, else the flow),
``consistency`` (consistency/DMD/DMD2/ADD/sCM students; 1 step is one Euler step of a v-net, exact;
multistep re-noises between jumps, which the scheduler's ``stochastic_sampling=True`` does with
the same formula, so it is exact in distribution only: the re-noise draws come from the pipeline's
generator, ours from a generator seeded seed + 1000003), ``onestep_tinit`` (SiD/VSD students with
t_init = 1), ``guided_flow`` (guidance students: ``w`` folded in) and ``shortcut`` (step size
d = 1/nfe folded in).

Import (:func:`load_diffusers_teacher`)
---------------------------------------
A folder with ``model_index.json`` whose ``unet`` is a ``UNet2DModel`` (safetensors weights) and
whose scheduler is DDPM/DDIM (prediction type epsilon, v_prediction or sample, any beta schedule)
or FlowMatchEuler becomes a :class:`~lab.diffusion.generators.FlowGenerator` on our linear flow
with pred "v". The network :class:`DiffusersUNet` (registered as net type ``diffusers_unet``)
maps our time t to the DDPM timestep with the same SNR ((1-t)/t)^2 = ac/(1-ac) (log-SNR
interpolated over the discrete table, clamped outside it), rescales x_vp = x_lin * sigma_vp / t and
returns v = eps - x0 computed in VP space. Deterministic DDIM is parameterisation-invariant, so our
Euler sampler on the matching time grid reproduces ``DDIMScheduler(eta=0)``; on the default grid
linspace(1, 0, N + 1), t = 1 is clamped to the last table timestep (whose SNR is small but not 0).
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import torch

from lab.errors import LabError
from lab.nets.diffusers_unet import PREDICTION_TYPES, DiffusersUNet
from lab.trainable import resolve_reference
from lab.version import __version__

TEACHER_EXPORT_NFE = 50
EXPORTABLE_KINDS = ("flow", "reflow", "consistency", "onestep_tinit", "guided_flow", "shortcut")
IMPORT_SCHEDULERS = ("DDPMScheduler", "DDIMScheduler", "FlowMatchEulerDiscreteScheduler")


# ============================================================================ import side
def flow_time(alpha_cumprod) -> torch.Tensor:
    """The linear-flow time with the SNR of a VP noise level: (1-t)/t = sqrt(ac / (1 - ac))."""
    ac = torch.as_tensor(alpha_cumprod, dtype=torch.float64)
    return (1 - ac).sqrt() / (ac.sqrt() + (1 - ac).sqrt())


def load_diffusers_teacher(folder, device=None):
    """A :class:`~lab.diffusion.generators.FlowGenerator` (linear flow, pred "v", Euler) from a local
    diffusers pipeline folder whose unet is a ``UNet2DModel`` and whose scheduler is one of
    DDPMScheduler, DDIMScheduler (epsilon / v_prediction / sample) or FlowMatchEulerDiscreteScheduler.
    Weights must be safetensors (no pickle)."""
    import diffusers  # lazy: heavy import (diffusers), keeps `import lab` fast

    from lab.diffusion.denoiser import Denoiser  # lazy: only needed when loading a diffusers teacher
    from lab.diffusion.generators import FlowGenerator  # lazy: only needed when loading a diffusers teacher
    from lab.io import read_json  # lazy: only needed when loading a diffusers teacher

    folder = Path(folder)
    mi = folder / "model_index.json"
    if not mi.exists():
        raise LabError(f"{folder} is not a diffusers pipeline folder (no model_index.json)")
    index = read_json(mi)
    unet_cls = (index.get("unet") or [None, None])[1]
    sched_cls = (index.get("scheduler") or [None, None])[1]
    if unet_cls != "UNet2DModel":
        raise LabError(f"unet class {unet_cls!r} in {mi} is not supported; allowed: UNet2DModel")
    if sched_cls not in IMPORT_SCHEDULERS:
        raise LabError(f"scheduler class {sched_cls!r} in {mi} is not supported; allowed: {', '.join(IMPORT_SCHEDULERS)}")
    try:
        unet = diffusers.UNet2DModel.from_pretrained(folder, subfolder="unet", use_safetensors=True)
    except (OSError, EnvironmentError) as e:
        raise LabError(f"cannot load {folder / 'unet'} as safetensors ({str(e).splitlines()[0]}); "
                       f"allowed: a UNet2DModel saved with safe_serialization=True") from None
    sched = getattr(diffusers, sched_cls).from_pretrained(folder, subfolder="scheduler")
    if sched_cls == "FlowMatchEulerDiscreteScheduler":
        schedule = {"type": "flow", "num_train_timesteps": int(sched.config.num_train_timesteps)}
    else:
        pt = sched.config.prediction_type
        if pt not in PREDICTION_TYPES:
            raise LabError(f"unknown prediction_type {pt!r} in {folder / 'scheduler'}; allowed: {', '.join(PREDICTION_TYPES)}")
        schedule = {"type": "vp", "prediction_type": pt, "alphas_cumprod": sched.alphas_cumprod.double().tolist()}
    net = DiffusersUNet(dict(unet.config), schedule)
    net.unet.load_state_dict(unet.state_dict())
    gen = FlowGenerator(Denoiser(net, "linear", "v"), "euler")
    gen.card = {"source": f"diffusers pipeline {folder}", "scheduler": sched_cls, **(
        {"prediction_type": schedule["prediction_type"]} if schedule["type"] == "vp" else {})}
    gen.eval()
    return gen.to(device) if device is not None else gen


# ============================================================================ export side
def export_source(src):
    """(generator, name) of a model folder or a zoo entry, by :func:`lab.zoo.resolve` (through the hook it installs
    in lab.trainable: the zoo sits above interop). Zoo entries are never trained here."""
    r = resolve_reference(src, "generator", "cpu", train_if_missing=False, progress=False)
    if getattr(r.model, "folder", None) is None:
        raise LabError(f"{str(src)!r} is not a lab model (a diffusers pipeline?); allowed: a lab model folder "
                       f"(with model.json) or a zoo entry")
    return r.model, r.name


def _plan(gen, nfe):
    """(denoiser, nfe, stochastic, fixed conditions, note) for an exportable generator."""
    kind = gen.kind
    if kind not in EXPORTABLE_KINDS:
        raise LabError(f"cannot export generator kind {kind!r}; exportable: {', '.join(EXPORTABLE_KINDS)}")
    native = tuple(getattr(gen, "native_nfe", ()) or ())
    if nfe is None:
        nfe = min(native) if native else TEACHER_EXPORT_NFE
    if not isinstance(nfe, int) or nfe < 1:
        raise LabError(f"nfe must be a positive integer, got {nfe!r}")
    cond, stochastic, note = {}, False, "exact"
    if kind == "flow":
        if gen.solver not in ("euler", "ddim"):
            raise LabError(f"cannot export a flow generator with solver {gen.solver!r}; exportable solvers: euler, ddim")
        den = gen.denoiser
    elif kind == "reflow":
        den = gen.one_step if (nfe == 1 and gen.one_step is not None) else gen.flow
    elif kind == "consistency":
        den = gen.denoiser
        stochastic = nfe > 1
        if stochastic:
            note = "exact in distribution (multistep consistency re-noises; the re-noise draws differ from lab's)"
    elif kind == "onestep_tinit":
        if nfe != 1:
            raise LabError(f"generator kind 'onestep_tinit' has one step; got nfe={nfe}, allowed: 1")
        if abs(gen.t_init - 1.0) > 1e-12:
            raise LabError(f"cannot export a one-step generator with t_init={gen.t_init}; exportable: t_init=1")
        den = gen.denoiser
    elif kind == "guided_flow":
        den = gen.denoiser
        cond["w"] = float(gen.w)
    else:  # shortcut
        den = gen.denoiser
        cond["d"] = max(1.0 / nfe, gen.d_min)
    return den, nfe, stochastic, cond, note


def _folded_unet(net, label, cond):
    """A plain UNet2DModel computing ``net(x, t, label, **cond)`` (the condition folded into a bias)."""
    from diffusers import UNet2DModel  # lazy: heavy import (diffusers), keeps `import lab` fast

    config = {k: v for k, v in dict(net.unet.config).items() if not k.startswith("_")}
    config["class_embed_type"] = None
    plain = UNet2DModel.from_config(config)
    plain.load_state_dict(net.unet.state_dict())
    p = next(net.parameters())
    y = None if label is None else torch.tensor([int(label)], device=p.device)
    with torch.no_grad():
        c = net.cond_embedding(1, y, p.device, p.dtype, **cond)
        if c is not None:
            if plain.time_embedding.post_act is not None:
                raise LabError("cannot fold the condition: the UNet's time embedding has a post-activation")
            plain.time_embedding.linear_2.bias.add_(c[0].to(plain.time_embedding.linear_2.bias))
    return plain.to("cpu").eval()


def export_pipeline(src, out, nfe: int | None = None, label: int | None = None, w: float | None = None,
                    overwrite: bool = False) -> Path:
    """Write the lab image generator ``src`` (a model folder or a zoo entry name) as a diffusers
    ``DDPMPipeline`` folder ``out`` (UNet2DModel + FlowMatchEulerDiscreteScheduler, safetensors).

    The pipeline is exact at ``nfe`` steps (default: the smallest native NFE for students, 50 for
    teachers) and close at other step counts (diffusers' own sigma grid). ``label`` picks a class
    (default: the null label, i.e. unconditional); ``w`` sets a net's extra "w" condition (guidance
    students default to their own w). The folder is written next to ``out`` and renamed into place,
    with a marker file ``lab_export.json`` (source, lab version, the files written). ``out`` must be new
    or an empty folder; ``overwrite`` replaces only a previous export (a folder carrying the marker and
    nothing the export did not write), never the source model folder, a folder inside it or one
    containing it. Anything else is refused with a LabError and left untouched.
    """
    from diffusers import DDPMPipeline, FlowMatchEulerDiscreteScheduler  # lazy: heavy import (diffusers), keeps `import lab` fast

    from lab.diffusion.process import LinearFlow  # lazy: only needed for export
    from lab.nets.unet import TIME_SCALE, UNet  # lazy: only needed for export

    gen, src_name = export_source(src)
    out = Path(out)
    replace = _check_target(out, Path(gen.folder), overwrite)
    den, nfe, stochastic, cond, note = _plan(gen, nfe)
    net = den.net
    if not isinstance(net, UNet):
        raise LabError(f"cannot export a {type(net).__name__} network; exportable: image UNet (lab.nets.unet.UNet)")
    if not isinstance(den.process, LinearFlow) or den.pred != "v":
        raise LabError(f"cannot export process {den.process.name!r} with pred {den.pred!r}; exportable: linear with pred 'v'")
    if label is not None:
        if not net.n_classes:
            raise LabError(f"label={label} given but this network is unconditional; allowed: no label")
        if not (0 <= int(label) < net.n_classes):
            raise LabError(f"label={label} is out of range; allowed: 0..{net.n_classes - 1} (or none: unconditional)")
    if w is not None:
        if "w" not in net.extra:
            raise LabError(f"w={w} given but this network has no 'w' condition; its conditions: "
                           f"{', '.join(net.extra) or 'none'}")
        cond["w"] = float(w)
    missing = [k for k in net.extra if k not in cond]
    if missing:
        raise LabError(f"this network needs the condition {missing[0]!r}, which export cannot fix; "
                       f"exportable fixed conditions: w (--w), d (shortcut students)")
    unet = _folded_unet(net, label, cond)
    sched = FlowMatchEulerDiscreteScheduler(num_train_timesteps=int(TIME_SCALE), shift=1.0,
                                            shift_terminal=(1.0 / nfe) if nfe > 1 else None,
                                            stochastic_sampling=stochastic)
    pipe = DDPMPipeline(unet=unet, scheduler=sched)
    info = {"format": MARKER_FORMAT, "lab_version": __version__, "source": src_name,
            "source_folder": str(Path(gen.folder).resolve()), "kind": gen.kind, "nfe": nfe,
            "label": None if label is None else int(label), "conditions": cond, "exactness": note,
            "shape": list(net.sample_shape)}
    tmp = None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
        pipe.save_pretrained(tmp, safe_serialization=True)
        (tmp / "README.md").write_text(_readme(info))
        files = sorted(str(f.relative_to(tmp)) for f in tmp.rglob("*") if f.is_file()) + [MARKER]
        (tmp / MARKER).write_text(json.dumps({**info, "files": files}, indent=2) + "\n")
        if replace:  # a previous export (checked by _check_target): moved aside, then deleted
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            old.rmdir()
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:  # a new name, or an existing empty folder (rename replaces an empty directory)
            try:
                tmp.rename(out)
            except OSError:
                if not (out.is_dir() and not any(out.iterdir())):
                    raise
                out.rmdir()
                tmp.rename(out)
    except OSError as e:
        raise LabError(f"cannot write the pipeline folder {out}: {e.strerror or e}") from None
    finally:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


#: the marker every export writes into its pipeline folder; ``overwrite`` replaces only folders that carry it
MARKER = "lab_export.json"
MARKER_FORMAT = "distillation-lab diffusers export"
#: what an export writes at the top of its folder (for markers written before the marker listed its files)
EXPORT_TOP_LEVEL = ("model_index.json", "unet", "scheduler", "README.md", MARKER)


def _check_target(out: Path, source: Path, overwrite: bool) -> bool:
    """Refuse an ``out`` that is not safe to write; True when ``out`` is a previous export to replace.

    Allowed: a new path; an existing empty folder; with ``overwrite``, a folder carrying the export marker
    that holds nothing but the files that export wrote. Never the source model folder, a folder inside it
    or one containing it, and never a symlink."""
    o, src = out.resolve(), source.resolve()
    if o == src or src in o.parents or o in src.parents:
        what = ("the source model folder" if o == src else "inside the source model folder" if src in o.parents
                else "a folder containing the source model")
        raise LabError(f"{out} is {what} {source}; allowed: a pipeline folder apart from the source")
    if out.is_symlink():
        raise LabError(f"{out} is a symlink; allowed: a new folder, an empty folder, or (with --overwrite) a "
                       f"previous export")
    if not out.exists():
        return False
    if not out.is_dir():
        raise LabError(f"{out} exists and is not a folder; allowed: a new folder, an empty folder, or (with "
                       f"--overwrite) a previous export")
    entries = sorted(p.name for p in out.iterdir())
    if not entries:
        return False
    if not overwrite:
        raise LabError(f"{out} exists and is not empty; pass overwrite=True (--overwrite) to replace a previous "
                       f"export")
    marker = out / MARKER
    try:
        info = json.loads(marker.read_text()) if marker.is_file() and not marker.is_symlink() else None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        info = None
    if not isinstance(info, dict) or "source" not in info or "nfe" not in info:
        raise LabError(f"refusing to overwrite {out}: it is not a lab export (no valid {MARKER}); allowed: "
                       f"--overwrite only replaces a folder an earlier `lab export` wrote")
    listed = info.get("files")
    if isinstance(listed, list):
        have = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() or p.is_symlink()}
        foreign = sorted(have - {str(f) for f in listed})
    else:
        foreign = [e for e in entries if e not in EXPORT_TOP_LEVEL]
    if foreign:
        raise LabError(f"refusing to overwrite {out}: it holds files the export did not write "
                       f"({', '.join(foreign[:3])}{' ...' if len(foreign) > 3 else ''}); move them out first")
    return True


def _readme(info: dict) -> str:
    lab_ = "unconditional (null label)" if info["label"] is None else f"class {info['label']}"
    conds = ", ".join(f"{k} = {v:g}" for k, v in info["conditions"].items()) or "none"
    n, exact = info["nfe"], info["exactness"]
    return f"""# Distillation Lab export: `{info['source']}`

A diffusers `DDPMPipeline` (a `UNet2DModel` plus a `FlowMatchEulerDiscreteScheduler`) exported from
the lab generator `{info['source']}` (kind `{info['kind']}`), images of shape {tuple(info['shape'])} in [-1, 1].

- Steps: **exact at num_inference_steps={n}**{'' if exact == 'exact' else f' ({exact})'}; at other step
  counts it uses diffusers' own sigma grid, close to but not the same as the lab sampler.
- Label: {lab_}; fixed conditions: {conds} (folded into the time-embedding bias).

```python
import torch
from diffusers import DiffusionPipeline

pipe = DiffusionPipeline.from_pretrained("path/to/this/folder")
images = pipe(batch_size=16, num_inference_steps={n}, generator=torch.Generator().manual_seed(0),
              output_type="pt").images   # (16, C, H, W) in [0, 1]
```

Same seed gives the same noise as `lab`'s `gen.sample(16, nfe={n}, seed=0)`, and
`images` equals `(x / 2 + 0.5).clamp(0, 1)` of its samples. Note DDPMPipeline's default
num_inference_steps is 1000: pass `num_inference_steps={n}`.
"""
