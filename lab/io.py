"""Atomic files, safetensors + JSON, and nested state (checkpoints) in one verified safetensors file, without pickle."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from lab.errors import LabError


def atomic_write(path: Path, write) -> None:
    """Write ``path`` atomically: ``write(tmp)`` fills a temporary file in the same folder, which then replaces
    ``path`` (readable by all, the folder synced); on any error the temporary file is removed and ``path`` is
    left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def fsync_dir(folder) -> None:
    """Make a rename in ``folder`` durable (best effort: not every OS or file system allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path, text: str) -> None:
    def w(tmp):
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    atomic_write(Path(path), w)


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def atomic_write_json(path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def read_json(path) -> Any:
    """The JSON value in ``path``; a missing, unreadable or malformed file is a one-line LabError naming it."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise LabError(f"{path} is missing") from None
    except IsADirectoryError:
        raise LabError(f"{path} is a folder, not a JSON file") from None
    except OSError as e:
        raise LabError(f"{path} cannot be read ({e.strerror or type(e).__name__})") from None
    except UnicodeDecodeError:
        raise LabError(f"{path} is not valid JSON (not UTF-8 text)") from None
    except json.JSONDecodeError as e:
        raise LabError(f"{path} is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None
    except RecursionError:
        raise LabError(f"{path} is not valid JSON (nested too deeply)") from None


def save_tensors(path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """A safetensors file, written atomically, with a sha256 of its tensors in its metadata (``sha256``), so
    :func:`load_tensors` can tell a damaged file from a good one."""
    clean = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    meta = {"sha256": _digest(clean), **(metadata or {})}
    atomic_write(Path(path), lambda tmp: save_file(clean, tmp, metadata=meta))


def load_tensors(path, device="cpu") -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file; when the file records a ``sha256`` (everything the lab writes does)
    it is checked, and a mismatch (a damaged file) is a one-line LabError."""
    with safe_open(str(path), framework="pt", device="cpu") as f:
        meta = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if "sha256" in meta and _digest(tensors) != meta["sha256"]:
        raise LabError(f"{path} is damaged: its tensors do not match the sha256 recorded in it")
    return {k: v.to(device) for k, v in tensors.items()} if str(device) != "cpu" else tensors


def save_npz(path, **arrays) -> None:
    def w(tmp):
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **{k: np.asarray(v) for k, v in arrays.items()})
    atomic_write(Path(path), w)


# ---- nested state (optimizer states, RNG states, counters) without pickle ----
def flatten_state(obj, prefix: str = "s", tensors: dict | None = None):
    """Replace every tensor in a nested dict/list structure by a reference; return (skeleton, tensors)."""
    tensors = {} if tensors is None else tensors
    if isinstance(obj, torch.Tensor):
        key = f"t{len(tensors)}"  # unique by construction; the skeleton holds the reference
        tensors[key] = obj.detach().cpu().clone() if obj.numel() else obj.detach().cpu().reshape(0).clone()
        return {"__tensor__": key, "shape": list(obj.shape), "dtype": str(obj.dtype)}, tensors
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            sk, _ = flatten_state(v, f"{prefix}.{k}", tensors)
            out[str(k)] = sk
        keys_int = all(isinstance(k, int) for k in obj)
        return ({"__dict_int__": out} if keys_int and obj else out), tensors
    if isinstance(obj, (list, tuple)):
        out = [flatten_state(v, f"{prefix}.{i}", tensors)[0] for i, v in enumerate(obj)]
        return ({"__tuple__": out} if isinstance(obj, tuple) else out), tensors
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item(), tensors
    return obj, tensors


def unflatten_state(skel, tensors: dict[str, torch.Tensor]):
    if isinstance(skel, dict):
        if "__tensor__" in skel:
            t = tensors[skel["__tensor__"]]
            return t.reshape(skel["shape"])
        if "__dict_int__" in skel:
            return {int(k): unflatten_state(v, tensors) for k, v in skel["__dict_int__"].items()}
        if "__tuple__" in skel:
            return tuple(unflatten_state(v, tensors) for v in skel["__tuple__"])
        return {k: unflatten_state(v, tensors) for k, v in skel.items()}
    if isinstance(skel, list):
        return [unflatten_state(v, tensors) for v in skel]
    return skel


STATE_FORMAT = "lab-state/1"


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes, in name order."""
    h = hashlib.sha256()
    for k in sorted(tensors):
        t = tensors[k].detach().to("cpu").contiguous()
        h.update(f"{k}|{t.dtype}|{list(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def state_path(path_stem) -> Path:
    """``ckpt`` or ``ckpt.safetensors`` -> ``ckpt.safetensors``."""
    p = Path(path_stem)
    return p if p.suffix == ".safetensors" else p.with_name(p.name + ".safetensors")


def save_state(path_stem, state: dict, pause_point: str | None = None) -> Path:
    """Write ``state`` (nested dicts/lists of tensors and JSON values) as ONE ``<stem>.safetensors`` file.

    The tensors are the file's tensors; the nested structure (JSON) and a sha256 of the tensors are its
    metadata. The file appears in one rename, so the structure can never disagree with the tensors, and a
    reader can verify it (:func:`load_state`)."""
    skel, tensors = flatten_state(state)
    clean = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    meta = {"format": STATE_FORMAT, "skeleton": json.dumps(skel, default=_json_default), "sha256": _digest(clean)}
    path = state_path(path_stem)

    def w(tmp):
        save_file(clean, tmp, metadata=meta)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        pause_here(f"{pause_point}-written" if pause_point else None)

    atomic_write(path, w)
    return path


def load_state(path_stem, device="cpu") -> dict:
    """Read and verify a state file written by :func:`save_state`; any damage is a one-line LabError."""
    path = state_path(path_stem)
    if not path.is_file():
        raise LabError(f"{path} is missing")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types for truncated/garbled files
        raise LabError(f"{path} is not a readable safetensors file ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'damaged'})") from None
    if meta.get("format") != STATE_FORMAT or "skeleton" not in meta:
        raise LabError(f"{path} is not a lab state file (format {meta.get('format')!r}, expected {STATE_FORMAT!r})")
    if _digest(tensors) != meta.get("sha256"):
        raise LabError(f"{path} is damaged: its tensors do not match the sha256 recorded in it")
    try:
        skel = json.loads(meta["skeleton"])
        return unflatten_state(skel, tensors)
    except (ValueError, KeyError, TypeError, RuntimeError) as e:
        raise LabError(f"{path} has a damaged structure ({type(e).__name__})") from None


# ---- a test hook: pause at a named point so a kill test can SIGKILL the process exactly there
def pause_here(point: str | None) -> None:
    """If ``LAB_TEST_PAUSE`` is ``POINT@K`` and this is the K-th time ``point`` is reached in this process,
    write ``POINT@K`` to the file ``LAB_TEST_PAUSE_FILE`` and sleep ``LAB_TEST_PAUSE_SECONDS`` (default 60),
    so that a test can kill the process there. Without the variable this does nothing."""
    spec = os.environ.get("LAB_TEST_PAUSE")
    if not spec or point is None:
        return
    name, _, k = spec.partition("@")
    if name != point:
        return
    _PAUSE_COUNTS[point] = _PAUSE_COUNTS.get(point, 0) + 1
    if _PAUSE_COUNTS[point] != int(k or 1):
        return
    marker = os.environ.get("LAB_TEST_PAUSE_FILE")
    if marker:
        with open(marker, "w") as f:
            f.write(spec + "\n")
    time.sleep(float(os.environ.get("LAB_TEST_PAUSE_SECONDS", "60")))


_PAUSE_COUNTS: dict[str, int] = {}


# ---------------------------------------------------------------------------------------------- where models live
# The shipped assets and the user cache are found here, and only here: below every package that reads them (the
# judges of lab.nets.digits_eval, the KD teachers, lab.zoo, the embedding cache of lab.probes). lab.zoo, which owns
# the zoo, re-exports them as ``lab.zoo.ASSETS``, ``lab.zoo.cache_dir()`` and ``lab.zoo.entry_name``.

#: the shipped zoo: ``assets/zoo`` next to the ``lab`` package
ZOO_ASSETS = Path(__file__).resolve().parents[1] / "assets" / "zoo"
#: the families of zoo entry names (see :func:`zoo_entry_name`)
ZOO_FAMILIES = ("toy2d", "images", "kd")


def cache_root() -> Path:
    """The user cache: ``$LAB_CACHE``, default ``~/.cache/distillation-lab`` (the one reader of ``LAB_CACHE``)."""
    return Path(os.environ.get("LAB_CACHE", Path.home() / ".cache" / "distillation-lab"))


def runs_root() -> Path:
    """Where run folders are listed from: ``$LAB_RUNS``, default ``runs`` under the working directory (the one
    reader of ``LAB_RUNS``: the CLI's ``lab runs list`` and the app agree)."""
    return Path(os.environ.get("LAB_RUNS", "runs"))


def zoo_entry_name(family: str, dataset: str, model: str = "teacher") -> str:
    """The zoo entry name (also its folder under the zoo root) of ``model`` on ``dataset``:
    ``toy2d/8gaussians/dmd`` ("toy2d"), ``digits/teacher`` or the judge ``digits/features`` ("images"),
    ``kd/digits/teacher`` ("kd")."""
    if family not in ZOO_FAMILIES:
        raise LabError(f"unknown zoo family {family!r}; allowed: {', '.join(ZOO_FAMILIES)}")
    return f"{dataset}/{model}" if family == "images" else f"{family}/{dataset}/{model}"
