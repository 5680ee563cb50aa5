"""Configs declared, not hand-checked: each field's type and range is written once, on the field.

A config is a dataclass deriving from :class:`Config`. Its fields take their kind from the annotation
(``int``, ``float``, ``bool``, ``str``, ``dict``, ``list[str]``, ``tuple[int, ...]``, ``X | None``) and
their range, choices or nested validator from :func:`param`::

    @dataclass
    class DMDConfig(MethodConfig):
        lr_fake: float = param(1e-3, gt=0)
        fake_updates: int = param(1, ge=1)
        reg_weight: float = param(0.25, ge=0, note="0 disables the regression loss")
        solver: str = param("euler", choices=("euler", "heun"))

        def validate(self):                      # rules that tie fields together
            super().validate()
            check(self.t_min < self.t_max, "t_min/t_max", (self.t_min, self.t_max), "0 < t_min < t_max < 1")

Every message is generated from the declaration and is one line: ``invalid reg_weight=-1; allowed: a float
>= 0 (0 disables the regression loss)``. :func:`config_from_dict` builds a config from JSON: unknown keys
are refused, a float field takes an integer (as a float), a bool is never a number. A nested spec (a
network spec) is a ``dict`` field with ``spec=`` a function that validates and returns it.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from dataclasses import MISSING, dataclass

from lab.errors import LabError

__all__ = ["Config", "param", "check", "check_fields", "config_from_dict", "describe_field", "is_num"]


def is_num(v) -> bool:
    """A real number for a config field: int or float, not bool."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check(cond: bool, field: str, value, allowed: str) -> None:
    """A rule no declaration can say (fields that depend on each other): one line naming the field, its bad
    value and what is allowed."""
    if not cond:
        raise LabError(f"invalid {field}={_short(value)}; allowed: {allowed}")


@dataclass(frozen=True)
class Spec:
    """What :func:`param` declares about a field (kept in the dataclass field's metadata)."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple | None = None
    min_len: int = 0
    spec: typing.Callable | None = None
    note: str = ""
    allowed: str = ""


def param(default=MISSING, *, factory=MISSING, ge=None, gt=None, le=None, lt=None, choices=None, min_len: int = 0,
          spec=None, note: str = "", allowed: str = ""):
    """A config field with its default and its declared range.

    ``ge``/``gt``/``le``/``lt``: bounds of a number (of each item of a list or tuple); ``choices``: the allowed
    values; ``min_len``: the shortest list; ``spec(value, name)``: a nested validator returning the checked
    value (a network spec); ``note``: appended to the message in parentheses; ``allowed``: the whole
    "allowed" text, replacing the generated one. A mutable default (a dict or list) is copied per instance.
    """
    if isinstance(default, (dict, list)):
        factory, default = (lambda d=default: _deep_copy(d)), MISSING
    meta = {"lab": Spec(ge, gt, le, lt, tuple(choices) if choices is not None else None, min_len, spec, note,
                        allowed)}
    if factory is not MISSING:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _deep_copy(v):
    if isinstance(v, dict):
        return {k: _deep_copy(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_deep_copy(x) for x in v]
    return v


def _short(v, n: int = 60) -> str:
    r = repr(v)
    return r if len(r) <= n else r[: n - 3] + "..."


@functools.lru_cache(maxsize=None)
def _hints(cls) -> dict:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - an annotation we cannot resolve is simply not type-checked
        return {}


def _split_optional(ann):
    """(annotation without None, whether None is allowed)."""
    if typing.get_origin(ann) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(ann) if a is not type(None)]
        return (args[0] if len(args) == 1 else None), type(None) in typing.get_args(ann)
    return ann, False


_KIND_WORDS = {int: ("an integer", "integers"), float: ("a float", "floats"), bool: ("true or false", "true/false"),
               str: ("a string", "strings"), dict: ("a JSON object", "JSON objects")}


def _g(x) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def _range_words(s: Spec) -> str:
    lo = ("[", s.ge) if s.ge is not None else ("(", s.gt) if s.gt is not None else None
    hi = ("]", s.le) if s.le is not None else (")", s.lt) if s.lt is not None else None
    if lo and hi:
        return f" in {lo[0]}{_g(lo[1])}, {_g(hi[1])}{hi[0]}"
    if lo:
        return f" {'>=' if lo[0] == '[' else '>'} {_g(lo[1])}"
    if hi:
        return f" {'<=' if hi[0] == ']' else '<'} {_g(hi[1])}"
    return ""


@functools.lru_cache(maxsize=None)
def spec_of(cls, name: str) -> Spec:
    """The declaration of field ``name`` of ``cls``: its own, else the nearest base class's (a subclass that
    only changes a default, ``lr: float = 6e-4``, keeps the range its base declared)."""
    for klass in cls.__mro__:
        f = getattr(klass, "__dataclass_fields__", {}).get(name)
        if f is not None and "lab" in f.metadata:
            return f.metadata["lab"]
    return Spec()


def describe_field(cls, name: str) -> str:
    """What field ``name`` of config class ``cls`` allows, in words (the text of its error message)."""
    s = spec_of(cls, name)
    base, optional = _split_optional(_hints(cls).get(name))
    if s.allowed:
        text = s.allowed
    elif s.choices is not None:
        text = ", ".join(str(c) for c in s.choices)
    else:
        origin = typing.get_origin(base)
        if origin in (list, tuple):
            args = [a for a in typing.get_args(base) if a is not Ellipsis]
            item = args[0] if args else None
            plural = _KIND_WORDS.get(item, ("", "values"))[1]
            text = (f"a {'non-empty ' if s.min_len else ''}list of {plural}"
                    + (f" each{_range_words(s)}" if _range_words(s) else ""))
        elif base is float and s.gt == 0 and s.ge is None and s.le is None and s.lt is None:
            text = "a positive float"
        elif base is int and s.gt == 0 and s.ge is None and s.le is None and s.lt is None:
            text = "a positive integer"
        else:
            text = _KIND_WORDS.get(base, ("a value",))[0] + _range_words(s)
    if s.note:
        text += f" ({s.note})"
    if optional and s.choices is None:
        text += " or null"
    return text


def _fits(s: Spec, x) -> bool:
    return ((s.ge is None or x >= s.ge) and (s.gt is None or x > s.gt)
            and (s.le is None or x <= s.le) and (s.lt is None or x < s.lt))


def _kind_ok(kind, v):
    """(ok, value) for one value of annotation ``kind`` (an int becomes a float for a float field)."""
    if kind is bool:
        return isinstance(v, bool), v
    if kind is int:
        return is_num(v) and isinstance(v, int), v
    if kind is float:
        if not is_num(v):
            return False, v
        try:
            v = float(v)
        except OverflowError:
            return False, v
        return math.isfinite(v), v
    if kind in (str, dict):
        return isinstance(v, kind), v
    return True, v


def check_field(cls, f: dataclasses.Field, v):
    """``v`` checked against the declaration of field ``f`` of ``cls``; returns it (normalised: an int given
    to a float field becomes a float, a list given to a tuple field a tuple, a nested spec its checked copy)."""
    s = spec_of(cls, f.name)
    base, optional = _split_optional(_hints(cls).get(f.name))

    def bad():
        raise LabError(f"invalid {f.name}={_short(v)}; allowed: {describe_field(cls, f.name)}")

    if v is None:
        if optional or (f.name not in _hints(cls) and not s.choices):  # declared Optional, or not annotated
            return v
        bad()
    origin = typing.get_origin(base)
    if origin in (list, tuple):
        if not isinstance(v, (list, tuple)) or len(v) < s.min_len:
            bad()
        args = [a for a in typing.get_args(base) if a is not Ellipsis]
        item = args[0] if args else None
        out = []
        for x in v:
            ok, x = _kind_ok(item, x)
            if not ok or (is_num(x) and not _fits(s, x)) or (s.choices is not None and x not in s.choices):
                bad()
            out.append(x)
        v = tuple(out) if origin is tuple else out
    else:
        ok, v2 = _kind_ok(base, v)
        if not ok:
            bad()
        v = v2
        if s.choices is not None and v not in s.choices:
            bad()
        if is_num(v) and not _fits(s, v):
            bad()
    if s.spec is not None:
        v = s.spec(v, f.name)
    return v


def check_fields(obj) -> None:
    """Check (and normalise in place) every field of the dataclass instance ``obj`` against its declaration."""
    cls = type(obj)
    for f in dataclasses.fields(cls):
        v = getattr(obj, f.name)
        nv = check_field(cls, f, v)
        if nv is not v:
            object.__setattr__(obj, f.name, nv)


@dataclass
class Config:
    """Base of every config: the declared fields are checked on construction, then :meth:`validate` runs."""

    def __post_init__(self):
        check_fields(self)
        self.validate()

    def validate(self) -> None:
        """Rules that tie fields together (override and call ``super().validate()``)."""


def config_from_dict(cls, d: dict | None):
    """An instance of the config dataclass ``cls`` from a dict of its fields (JSON from ``--config``): unknown
    keys and values of the wrong kind or range are one-line LabErrors naming the field and what is allowed."""
    if d is not None and not isinstance(d, dict):
        raise LabError(f"invalid config={_short(d)} for {cls.__name__}; allowed: a JSON object of its fields")
    d = dict(d or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted((k for k in d if k not in fields), key=str)
    if unknown:
        raise LabError(f"unknown config field(s) {', '.join(_short(k, 40) for k in unknown[:5])}"
                       f"{' ...' if len(unknown) > 5 else ''} for {cls.__name__}; allowed: {', '.join(sorted(fields))}")
    if not issubclass(cls, Config):  # a plain dataclass: at least the kinds are checked here
        d = {k: check_field(cls, fields[k], v) for k, v in d.items()}
    return cls(**d)
