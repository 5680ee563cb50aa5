"""Shareable state: a page's settings live in the URL's query parameters (``st.query_params``).

    url = state.UrlState("generators")       # right under the page title: where URL notes appear
    name = url.selectbox("Distribution", names, key="dist", param="dist")
    seed = url.integer("Seed", key="seed", default=0, lo=0, hi=2**31 - 1)

On load, each setting is read from the URL and checked by the same rule as its widget (one of the choices, an
integer in range, ...). A malformed or out-of-range value falls back to the default, and the page shows one note
at the top naming the parameter and its allowed values. On every change the URL is rewritten (a value equal to
its default is left out, so links stay short), so a facilitator can hand out the link of a view and opening it
reproduces that view. A number or a text typed out of range is refused with a note under its widget, never
silently clamped: the page keeps the last valid value. That last valid value is also kept in the session, so the
settings survive a page switch and a run that stopped early (an error drawn above a widget).

Only widgets and session state here; nothing computed.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import streamlit as st

NOTES = "_url_notes"     # session: {(page, param): (note, fallback value)}, shown until the setting changes
READ = "_url_read"       # session: the (page, param) pairs already read from the URL (a URL is read once)
SHADOW = "_url_last_"    # session: prefix of the last valid value of each widget key
MAX_SHOWN = 24           # allowed values listed in a note (then "... (N in all)")


class Invalid(ValueError):
    """A value that a widget's rule refuses."""


def allowed_choices(options: Sequence) -> str:
    shown = [str(o) for o in options[:MAX_SHOWN]]
    return "one of " + ", ".join(shown) + (f", ... ({len(options)} in all)" if len(options) > MAX_SHOWN else "")


def _choice(options: Sequence, raw) -> Any:
    """The option whose text is ``raw`` (the URL holds text)."""
    for o in options:
        if str(o) == str(raw):
            return o
    raise Invalid(raw)


def parse_int(raw, lo: int, hi: int) -> int:
    """An integer in [lo, hi] from URL text or a typed number. Whole numbers in any notation are read ("1e3" is
    1000); a fraction ("2.7"), a value out of range ("1e9" where 500 is the most, "-5", 10**20) or a text is
    refused, never rounded or clamped."""
    if isinstance(raw, str):
        try:
            v = int(raw.strip())
        except ValueError:
            try:
                v = float(raw.strip())
            except ValueError:
                raise Invalid(raw) from None
    elif isinstance(raw, (int, float)) and not isinstance(raw, bool):
        v = raw
    else:
        raise Invalid(raw)
    if isinstance(v, float):
        if not math.isfinite(v) or v != int(v):
            raise Invalid(raw)
        v = int(v)
    if not lo <= v <= hi:
        raise Invalid(raw)
    return v


def parse_float(raw, lo: float, hi: float, step: float | None = None) -> float:
    """A number in [lo, hi] (on the grid lo + k step when ``step`` is given)."""
    try:
        v = float(raw)
    except (TypeError, ValueError):
        raise Invalid(raw) from None
    if not (math.isfinite(v) and lo - 1e-9 <= v <= hi + 1e-9):
        raise Invalid(raw)
    if step:
        k = round((v - lo) / step)
        if abs(lo + k * step - v) > 1e-6:
            raise Invalid(raw)
        v = round(lo + k * step, 10)
    return v


def _short(raw) -> str:
    s = ",".join(map(str, raw)) if isinstance(raw, list) else str(raw)
    return s if len(s) <= 40 else s[:37] + "..."


class UrlState:
    """Binds one page's widgets to the URL (see the module docstring). Create it once per run, under the
    title; then create the page's widgets through it."""

    def __init__(self, page: str):
        self.page = page
        self._box = st.empty()
        ss = st.session_state
        if NOTES not in ss:
            ss[NOTES] = {}
        if READ not in ss:
            ss[READ] = set()
        self._render()

    # ---------------------------------------------------------------------------------------- URL notes
    def _render(self) -> None:
        notes = self.notes()
        if notes:
            self._box.warning("  \n".join(notes), icon="🔗")
        else:
            self._box.empty()

    def notes(self) -> list[str]:
        """The notes about this page's URL parameters that are shown now."""
        return [n for (page, _), (n, _) in st.session_state[NOTES].items() if page == self.page]

    # ------------------------------------------------------------------------------------- the binding
    def _url_value(self, param: str, multi: bool):
        if multi:
            return list(st.query_params.get_all(param))
        return st.query_params.get(param)

    def _seed(self, key: str, param: str, default, parse: Callable, valid: Callable, allowed: str,
              multi: bool = False, typed: bool = False, to_widget: Callable = lambda v: v) -> None:
        """Before the widget: the value it starts with, unless it already holds a valid one (its own state; a
        ``typed`` widget keeps even a refused value, shown with its note): the URL's (read once per page and
        session), else the last valid one, else the default."""
        ss = st.session_state
        if key in ss and (typed or valid(ss[key])):
            return
        last = ss.get(SHADOW + key, default)
        value = last if valid(last) else default
        if (self.page, param) not in ss[READ] and param in st.query_params:
            ss[READ].add((self.page, param))
            raw = self._url_value(param, multi)
            try:
                value = parse(raw)
            except Invalid:
                ss[NOTES][(self.page, param)] = (
                    f"URL parameter **{param}={_short(raw)}** is not valid (allowed: {allowed}); "
                    f"using the default {_short(default)}.", default)
                value = default
                self._render()
        ss[key] = to_widget(value)

    def _store(self, key: str, param: str, value, default, encode: Callable, multi: bool = False) -> None:
        """After the widget: remember ``value`` and write it to the URL (left out when it is the default)."""
        ss = st.session_state
        ss[SHADOW + key] = value
        ss[READ].add((self.page, param))
        if value == default:
            if param in st.query_params:
                del st.query_params[param]
        else:
            enc = encode(value)
            if self._url_value(param, multi) != enc:
                st.query_params[param] = enc
        note = ss[NOTES].get((self.page, param))
        if note is not None and value != note[1]:  # the setting was changed: the note has done its job
            del ss[NOTES][(self.page, param)]
            self._render()

    # ----------------------------------------------------------------------------------------- widgets
    def selectbox(self, label: str, options: Sequence, key: str, param: str | None = None, default=None,
                  widget: Callable | None = None, **kw):
        """``st.selectbox`` (or ``widget``: ``st.radio``, ``st.select_slider``, a container's) bound to ``param``
        (default: ``key``); the value is one of ``options`` (``default``: the first)."""
        options = list(options)
        param = param or key
        default = options[0] if default is None and options else default
        self._seed(key, param, default, lambda raw: _choice(options, raw), lambda v: v in options,
                   allowed_choices(options))
        value = (widget or st.selectbox)(label, options, key=key, **kw)
        self._store(key, param, value, default, str)
        return value

    def radio(self, label: str, options: Sequence, key: str, param: str | None = None, default=None, **kw):
        return self.selectbox(label, options, key, param, default, widget=st.radio, **kw)

    def select_slider(self, label: str, options: Sequence, key: str, param: str | None = None, default=None, **kw):
        return self.selectbox(label, options, key, param, default, widget=st.select_slider, **kw)

    def multiselect(self, label: str, options: Sequence, key: str, param: str | None = None,
                    default: Sequence = (), **kw) -> list:
        """``st.multiselect`` bound to ``param``: repeated in the URL (``?p=a&p=b``; ``?p=`` for none)."""
        options, param, default = list(options), param or key, list(default)

        def parse(raw):
            raw = [r for r in raw if r != ""]
            return list(dict.fromkeys(_choice(options, r) for r in raw))

        self._seed(key, param, default, parse, lambda v: isinstance(v, list) and all(o in options for o in v),
                   "any of " + allowed_choices(options).removeprefix("one of "), multi=True)
        value = st.multiselect(label, options, key=key, **kw)
        self._store(key, param, list(value), default, lambda v: [str(o) for o in v] or [""], multi=True)
        return list(value)

    def integer(self, label: str, key: str, default: int, lo: int, hi: int, param: str | None = None, **kw) -> int:
        """An integer in [lo, hi], typed in ``st.text_input`` (so that whatever is typed reaches the page: a number
        box drops what it cannot hold, such as 1e20, without a word). Out of range or not whole, it is refused
        with a note under the widget, and the last valid value is used."""
        param = param or key
        allowed = f"an integer from {lo} to {hi}"

        def parse(raw):
            return parse_int(raw, lo, hi)

        self._seed(key, param, default, parse, lambda v: _ok(lambda: parse(v)), allowed, typed=True, to_widget=str)
        raw = st.text_input(label, key=key, help=kw.pop("help", None) or f"{allowed[0].upper()}{allowed[1:]}.", **kw)
        return self._checked(key, param, raw, default, parse, allowed, label, str)

    def number(self, label: str, key: str, default: float, lo: float, hi: float, step: float,
               param: str | None = None, **kw) -> float:
        """A number in [lo, hi] on a ``step`` grid, chosen with ``st.slider`` (bounded, so only the URL can be
        out of range)."""
        param = param or key
        allowed = f"a number from {lo:g} to {hi:g} in steps of {step:g}"
        ok = lambda v: _ok(lambda: parse_float(v, lo, hi, step))  # noqa: E731
        self._seed(key, param, default, lambda raw: parse_float(raw, lo, hi, step), ok, allowed)
        value = float(st.slider(label, lo, hi, step=step, key=key, **kw))
        self._store(key, param, value, default, lambda v: f"{v:g}")
        return value

    def text(self, label: str, key: str, default: str, check: Callable[[str], Any], allowed: str,
             param: str | None = None, **kw) -> str:
        """``st.text_input`` whose text must pass ``check`` (which raises on a bad text; ``allowed`` says what is
        allowed in words): a bad text is refused with a note, and the last valid text is used."""
        param = param or key

        def parse(raw):
            if isinstance(raw, list) or not _ok(lambda: check(raw)):
                raise Invalid(raw)
            return raw

        self._seed(key, param, default, parse, lambda v: _ok(lambda: check(v)), allowed, typed=True)
        raw = st.text_input(label, key=key, **kw)
        return self._checked(key, param, raw, default, parse, allowed, label, str)

    def _checked(self, key, param, raw, default, parse, allowed, label, encode):
        """A typed value: stored when valid; else a note under the widget and the last valid value."""
        try:
            value = parse(raw)
        except Invalid:
            last = st.session_state.get(SHADOW + key, default)
            st.warning(f"{label}: {_short(raw)} is refused; allowed: {allowed}. Using {_short(last)}.", icon="⚠️")
            return last
        self._store(key, param, value, default, encode)
        return value


def _ok(fn) -> bool:
    try:
        fn()
        return True
    except Exception:  # noqa: BLE001 - any refusal of the rule (Invalid, LabError, ValueError) means "not valid"
        return False
