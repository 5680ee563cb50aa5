"""Validation of network specs: the JSON dicts ``build_net`` turns into networks.

``check_net_spec(spec, path)`` checks a spec before anything is built or recorded: a known ``type``,
only the options that type's constructor takes (read from its signature, so a new option needs no
edit here), values of the right kind, and sizes within :data:`BOUNDS`. Every refusal is one line
naming the field path (``student_net.hidden``) and the allowed values. ``complete=True`` also fills
in the constructor defaults of the architecture options the caller left out (not the options the
data sets: :data:`DATA_KEYS`), so a config records the network it builds, not a partial spec.

The value rules come from each constructor parameter's default: a bool default takes a bool, an
int default a positive integer within ``BOUNDS[name]`` (0 allowed where the default is 0, which
means "off"), a float a finite number, a str a string, a tuple or list a list of such items
(``LIST_BOUNDS`` sets its length), ``None`` or no default what the annotation names (int, dict,
str, float), else anything.
"""
from __future__ import annotations

import inspect
import math

from lab.errors import LabError
from lab.nets.registry import NETS

#: allowed range of each integer size (per item for lists of sizes)
BOUNDS: dict[str, tuple[int, int]] = {
    "hidden": (1, 4096), "depth": (1, 32), "t_dim": (2, 1024), "dim": (1, 4096), "n_classes": (1, 100_000),
    "channels": (1, 4096), "size": (1, 1024), "block_out_channels": (1, 4096), "layers_per_block": (1, 16),
    "norm_num_groups": (1, 1024), "out_channels": (1, 4096), "in_dim": (1, 1_000_000), "in_channels": (1, 4096),
    "pool": (1, 64), "patch": (1, 1024), "heads": (1, 256), "vocab": (1, 1_000_000), "seq_len": (1, 100_000),
    "n": (1, 1_000_000),
}
#: integers with no entry in BOUNDS
DEFAULT_BOUNDS = (1, 1_000_000)
#: integers that must be even (sinusoidal embeddings: half sines, half cosines)
EVEN = ("t_dim",)
#: allowed number of items of list options
LIST_BOUNDS: dict[str, tuple[int, int]] = {"block_out_channels": (2, 8), "extra": (0, 16)}
DEFAULT_LIST_BOUNDS = (1, 32)
#: list options whose items are names (extra scalar conditions), not sizes
NAME_LISTS = ("extra",)
#: options the data or the method sets (``lab.nets.spec_for``, ``fresh_net(n_classes=..., extra=...)``):
#: never filled in by ``complete=True``
DATA_KEYS: dict[str, tuple[str, ...]] = {"mlp": ("dim", "n_classes", "extra"),
                                         "unet": ("channels", "size", "n_classes", "extra", "out_channels")}
#: the network types a diffusion/flow student or teacher config may name
DIFFUSION_TYPES = ("mlp", "unet")


def _constructor(kind: str):
    """The class (or function) whose signature lists the options of network type ``kind``."""
    return NETS[kind]


def net_params(kind: str) -> dict[str, inspect.Parameter] | None:
    """The options of network type ``kind`` (name -> parameter), or None when it takes any keyword."""
    ps = inspect.signature(_constructor(kind)).parameters
    if any(p.kind == p.VAR_KEYWORD for p in ps.values()):
        return None
    return {n: p for n, p in ps.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def short_repr(v, limit: int = 80) -> str:
    """``repr(v)``, cut to ``limit`` characters (error messages stay one short line)."""
    r = repr(v)
    return r if len(r) <= limit else r[: limit - 3] + "..."


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _int_rule(name: str, default) -> tuple[int, int]:
    lo, hi = BOUNDS.get(name, DEFAULT_BOUNDS)
    return (0 if default == 0 else lo), hi


def _check_int(v, path: str, name: str, default) -> None:
    lo, hi = _int_rule(name, default)
    even = name in EVEN
    if not (_is_int(v) and lo <= v <= hi and (not even or v % 2 == 0)):
        raise LabError(f"invalid {path}={short_repr(v)}; allowed: {'an even' if even else 'an'} integer in {lo}..{hi}")


def _annotation_kind(p: inspect.Parameter) -> str | None:
    a = p.annotation
    a = a if isinstance(a, str) else getattr(a, "__name__", str(a))
    parts = {s.strip() for s in a.replace("Optional[", "").rstrip("]").split("|")} - {"None"}
    return next(iter(parts)) if len(parts) == 1 and next(iter(parts)) in ("int", "float", "str", "dict", "bool") else None


def _check_value(v, path: str, name: str, p: inspect.Parameter) -> None:
    d = p.default
    if isinstance(d, bool):
        if not isinstance(v, bool):
            raise LabError(f"invalid {path}={short_repr(v)}; allowed: true or false")
    elif _is_int(d):
        _check_int(v, path, name, d)
    elif isinstance(d, float):
        if not (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)):
            raise LabError(f"invalid {path}={short_repr(v)}; allowed: a finite number")
    elif isinstance(d, str):
        if not isinstance(v, str):
            raise LabError(f"invalid {path}={short_repr(v)}; allowed: a string")
    elif isinstance(d, (tuple, list)):
        lo, hi = LIST_BOUNDS.get(name, DEFAULT_LIST_BOUNDS)
        names = name in NAME_LISTS or (d and isinstance(d[0], str))
        what = "names (identifiers, no repeats)" if names else "integers"
        if not isinstance(v, (list, tuple)) or not lo <= len(v) <= hi:
            raise LabError(f"invalid {path}={short_repr(v)}; allowed: a list of {lo}..{hi} {what}")
        if names:
            if not all(isinstance(s, str) and s.isidentifier() for s in v) or len(set(v)) != len(v):
                raise LabError(f"invalid {path}={short_repr(v)}; allowed: a list of {what}")
        else:
            for i, item in enumerate(v):
                _check_int(item, f"{path}[{i}]", name, None)
    else:
        want = _annotation_kind(p)
        if v is None and d is None:
            return
        if want == "int":
            _check_int(v, path, name, None)
        elif want == "float" and not (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)):
            raise LabError(f"invalid {path}={short_repr(v)}; allowed: a finite number")
        elif want == "str" and not isinstance(v, str):
            raise LabError(f"invalid {path}={short_repr(v)}; allowed: a string")
        elif want == "dict" and not isinstance(v, dict):
            raise LabError(f"invalid {path}={short_repr(v)}; allowed: a JSON object")
        elif want == "bool" and not isinstance(v, bool):
            raise LabError(f"invalid {path}={short_repr(v)}; allowed: true or false")


def check_net_spec(spec, path: str = "net", types=None, default_type: str | None = "mlp",
                   complete: bool = False) -> dict:
    """A validated copy of the network spec ``spec`` (see the module docstring); ``path`` names it in errors.

    ``types``: the allowed network types (default: every registered one); ``default_type``: the type of a
    spec without one (None: ``type`` is required); ``complete``: fill in the constructor defaults of the
    options left out (except the data's: :data:`DATA_KEYS`), with ``type`` first.
    """
    allowed = list(types if types is not None else NETS)
    if not isinstance(spec, dict):
        raise LabError(f"invalid {path}={short_repr(spec)}; allowed: a JSON object (a network spec, e.g. "
                       f"{{\"type\": \"{allowed[0]}\", ...}})")
    spec = dict(spec)
    if "type" not in spec and default_type is None:
        raise LabError(f"missing {path}.type; allowed: {', '.join(allowed)}")
    kind = spec.pop("type", default_type)
    if not isinstance(kind, str) or kind not in allowed or kind not in NETS:
        raise LabError(f"unknown network type {short_repr(kind)}; allowed: {', '.join(allowed)} (at {path}.type)")
    params = net_params(kind)
    if params is not None:
        bad = [k for k in spec if k not in params]
        if bad:
            key = bad[0] if isinstance(bad[0], str) and bad[0].isidentifier() else short_repr(bad[0], 40)
            raise LabError(f"unknown option {path}.{key} for network type {kind!r}; allowed: {', '.join(params)}")
        missing = [k for k, p in params.items() if p.default is p.empty and k not in spec
                   and k not in DATA_KEYS.get(kind, ())]
        if missing:
            raise LabError(f"missing {path}.{missing[0]} for network type {kind!r}; it needs: "
                           f"{', '.join(k for k, p in params.items() if p.default is p.empty)}")
        for k, v in spec.items():
            _check_value(v, f"{path}.{k}", k, params[k])
        if complete:
            for k, p in params.items():
                if k not in spec and k not in DATA_KEYS.get(kind, ()) and p.default is not p.empty \
                        and p.default is not None:
                    spec[k] = list(p.default) if isinstance(p.default, tuple) else p.default
    return {"type": kind, **spec}


__all__ = ["check_net_spec", "net_params", "short_repr", "BOUNDS", "DATA_KEYS", "DIFFUSION_TYPES"]
