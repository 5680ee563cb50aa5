"""Atomic files, safetensors + JSON checkpoints, and nested state without pickle."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file


def _atomic(path: Path, write) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path, text: str) -> None:
    def w(tmp):
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    _atomic(Path(path), w)


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
    with open(path) as f:
        return json.load(f)


def save_tensors(path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    clean = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    _atomic(Path(path), lambda tmp: save_file(clean, tmp, metadata=metadata))


def load_tensors(path, device="cpu") -> dict[str, torch.Tensor]:
    return load_file(str(path), device=str(device))


def save_npz(path, **arrays) -> None:
    def w(tmp):
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **{k: np.asarray(v) for k, v in arrays.items()})
    _atomic(Path(path), w)


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


def save_state(path_stem, state: dict) -> None:
    """Write ``<stem>.safetensors`` + ``<stem>.json`` (tensors first, so the JSON marks completeness)."""
    skel, tensors = flatten_state(state)
    stem = Path(path_stem)
    save_tensors(stem.with_suffix(".safetensors"), tensors)
    atomic_write_json(stem.with_suffix(".json"), skel)


def load_state(path_stem, device="cpu") -> dict:
    stem = Path(path_stem)
    skel = read_json(stem.with_suffix(".json"))
    tensors = load_tensors(stem.with_suffix(".safetensors"), device="cpu")
    return unflatten_state(skel, tensors)
