"""Probes of the language-model family (``lab.kd.logit.gkd``, ``lab.kd.hacking``, ``lab.kd.speculative``). They
return tidy DataFrames (figures: ``lab.viz.lm``).

- ``shipped_results()``: the curves measured by ``bench/lm.py`` (shipped in assets/zoo/kd/lm_family/results.json)
  as DataFrames: what a page or notebook shows before anything is run.
- ``gkd_compare(lambdas, seeds, ...)``: train gkd students at each λ and seed; one row per evaluation (kl_truth
  on true test sequences) plus the final KL on the student's own samples (``kl_own``).
- ``gkd_summary(df)``: mean and std over seeds of the final KLs per λ.
- ``hacking_curves(df)``: seed mean and std of proxy and golden per regime and step; ``proxy_golden(df)``: the
  proxy–golden plane (seed means, ordered by step); ``hacking_loglog(df)``: log proxy vs log step with the early
  power-law fit (``lab.kd.hacking.power_law_fit``).
- ``osd_compare(divergences, seeds, ...)``: frozen and online drafts on the same shifting streams; per-group rows
  (α, accepted length, tokens per target call) with a rolling mean, and a per-run summary before/after the shift.
- ``next_token_side_by_side(result)``: the target's and draft's next-token distributions at a position, before
  and after the stream (from an ``osd_stream`` result or the shipped results).
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd

from lab.errors import LabError
from lab.io import read_json
from lab.kd import get
from lab.kd import speculative as S
from lab.kd.hacking import power_law_fit
from lab.kd.logit.gkd import LM_ASSETS, kl_on_samples
from lab.runs.loop import train

__all__ = ["shipped_results", "shipped_gkd_curves", "gkd_compare", "gkd_summary", "hacking_curves", "proxy_golden", "hacking_loglog",
           "osd_compare", "osd_summary", "rolling_acceptance", "next_token_side_by_side"]


def shipped_results() -> dict:
    """The shipped measurements of ``bench/lm.py`` as DataFrames: ``gkd_curves``, ``gkd`` (final KLs),
    ``hacking`` (the study table), ``osd_groups`` (runs frozen and per divergence, stream seed 0), ``osd_evals``,
    ``osd_dist`` and ``date``."""
    r = read_json(LM_ASSETS / "results.json")
    groups, evals, dist = [], [], []
    for run, d in r["osd"].items():
        groups += [{"run": run, **g} for g in d["groups"]]
        evals += [{"run": run, **e} for e in d["evals"]]
        dist += [{"run": run, **e} for e in d["dist"]]
    return {"gkd_curves": pd.DataFrame(r["gkd_curves"]), "gkd": pd.DataFrame(r["gkd_rows"]),
            "hacking": pd.DataFrame(r["hacking"]), "osd_groups": pd.DataFrame(groups),
            "osd_evals": pd.DataFrame(evals), "osd_dist": pd.DataFrame(dist), "date": r.get("date", "")}


def gkd_compare(lambdas: Iterable[float] = (0.0, 1.0), seeds: Iterable[int] = (0,), config: dict | None = None,
                device=None, own_n: int = 256, progress=None) -> pd.DataFrame:
    """gkd students on the language task for each λ and seed (``config`` overrides the gkd config; default: the
    claim setting of tests/test_claims_lm.py). One row per evaluation: lmbda, seed, it, kl_truth, and kl_own
    (KL to the truth on ``own_n`` of the student's own samples, at the end; NaN before). ``progress(frac, text)``
    is called after each run."""
    lambdas, seeds = [float(v) for v in lambdas], [int(s) for s in seeds]
    if not lambdas or not seeds:
        raise LabError("gkd_compare needs at least one lambda and one seed")
    for v in lambdas:
        if not 0 <= v <= 1:
            raise LabError(f"lmbda {v} out of range; allowed: 0 <= lmbda <= 1")
    cfg = {"steps": 200, "batch": 16, "lr": 1e-2, "divergence": "forward_kl", "n_train": 16, "prompt_len": 4,
           "eval_every": 20, **(config or {})}
    rows, n, done = [], len(lambdas) * len(seeds), 0
    for lm in lambdas:
        for s in seeds:
            m = get("gkd")("kd/language/teacher", "language", {**cfg, "lmbda": lm}, seed=s, device=device)
            for _ in train(m):
                pass
            own = kl_on_samples(m.student, m.task.language, n=own_n, prompt_len=m.config.prompt_len, seed=1000 + s)
            for h in m.history:
                rows.append({"lmbda": lm, "seed": s, "it": h["it"], "kl_truth": h["kl_truth"],
                             "kl_own": own if h is m.history[-1] else float("nan")})
            done += 1
            if progress is not None:
                progress(done / n, f"gkd λ={lm:g} seed {s}")
    return pd.DataFrame(rows)


def shipped_gkd_curves(res: dict, setting: str) -> pd.DataFrame:
    """The shipped gkd curves of one bench ``setting`` (from :func:`shipped_results`): lmbda, seed, it, kl_truth,
    and kl_own (the KL on the student's own samples) on each run's last evaluation only (NaN before)."""
    c = res["gkd_curves"]
    if setting not in set(c["setting"]):
        raise LabError(f"no shipped gkd setting {setting!r}; allowed: {', '.join(dict.fromkeys(c['setting']))}")
    curves = c[c["setting"] == setting].drop(columns="setting")
    own = res["gkd"][res["gkd"]["setting"] == setting][["lmbda", "seed", "kl_own"]]
    last = curves.groupby(["lmbda", "seed"])["it"].transform("max") == curves["it"]
    curves = curves.merge(own, on=["lmbda", "seed"], how="left")
    curves.loc[~last.to_numpy(), "kl_own"] = float("nan")
    return curves


def gkd_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per λ: mean and std over seeds of the final kl_truth (true sequences) and kl_own (own samples)."""
    _need(df, ("lmbda", "seed", "it", "kl_truth"), "gkd_compare() or shipped_results()['gkd_curves']")
    last = df.sort_values("it").groupby(["lmbda", "seed"]).tail(1)
    cols = ["kl_truth"] + (["kl_own"] if "kl_own" in df.columns else [])
    out = last.groupby("lmbda")[cols].agg(["mean", "std", "count"])
    out.columns = [f"{a}_{b}" for a, b in out.columns]
    return out.reset_index()


def hacking_curves(df: pd.DataFrame) -> pd.DataFrame:
    """Per regime and step: mean and std over seeds of proxy, golden and train_loss (tidy: regime, step, epoch,
    metric, mean, std)."""
    _need(df, ("regime", "seed", "step", "proxy", "golden"), "teacher_hacking_study()")
    metrics = [c for c in ("proxy", "golden", "train_loss", "proxy_own", "golden_own") if c in df.columns]
    long = df.melt(id_vars=["regime", "seed", "step"] + (["epoch"] if "epoch" in df.columns else []),
                   value_vars=metrics, var_name="metric")
    keys = ["regime", "step"] + (["epoch"] if "epoch" in df.columns else []) + ["metric"]
    out = long.groupby(keys, sort=False)["value"].agg(["mean", "std"]).reset_index()
    return out


def proxy_golden(df: pd.DataFrame) -> pd.DataFrame:
    """The proxy–golden plane: seed-mean proxy (x) and golden (y) per regime and step (lower-left is better)."""
    _need(df, ("regime", "seed", "step", "proxy", "golden"), "teacher_hacking_study()")
    return df.groupby(["regime", "step"], sort=False)[["proxy", "golden"]].mean().reset_index()


def hacking_loglog(df: pd.DataFrame, early: float = 0.3) -> pd.DataFrame:
    """log proxy against log step with the power law fitted on the early steps (``power_law_fit``)."""
    return power_law_fit(df, early)


def rolling_acceptance(groups: pd.DataFrame, window: int = 4) -> pd.DataFrame:
    """Adds ``alpha_rolling`` (the mean of α over ``window`` groups) per run to an osd groups table."""
    _need(groups, ("group", "alpha"), "osd_stream()['groups'] or osd_compare()")
    if int(window) < 1:
        raise LabError(f"window must be >= 1, got {window}")
    g = groups.copy()
    by = g["run"] if "run" in g.columns else pd.Series(0, index=g.index)
    g["alpha_rolling"] = g.groupby(by, sort=False)["alpha"].transform(lambda s: s.rolling(int(window), 1).mean())
    return g


def osd_compare(divergences: Iterable[str] = ("forward_kl",), seeds: Iterable[int] = (0,), requests: int = 256,
                device=None, progress=None) -> dict:
    """A frozen draft and an online one per divergence on the same streams (each seed). Returns ``{"groups":
    DataFrame (run, seed, group, request, share_b, alpha, accepted_len, tokens_per_call), "evals": DataFrame,
    "dist": DataFrame (seed 0's), "summary": osd_summary(groups)}``."""
    divergences, seeds = list(divergences), [int(s) for s in seeds]
    for d in divergences:
        if d not in S.OSD_DIVERGENCES:
            raise LabError(f"unknown divergence {d!r}; allowed: {', '.join(S.OSD_DIVERGENCES)}")
    if not seeds:
        raise LabError("osd_compare needs at least one seed")
    models = S.osd_models(device)
    runs = [("frozen", {"online": False})] + [(d, {"divergence": d}) for d in divergences]
    groups, evals, dist, n, done = [], [], [], len(runs) * len(seeds), 0
    for s in seeds:
        for label, cfg in runs:
            r = S.osd_stream({"requests": requests, **cfg}, seed=s, device=device, models=models)
            groups.append(r["groups"].assign(run=label, seed=s))
            evals.append(r["evals"].assign(run=label, seed=s))
            if s == seeds[0]:
                dist.append(r["dist"].assign(run=label))
            done += 1
            if progress is not None:
                progress(done / n, f"osd {label} seed {s}")
    g = pd.concat(groups, ignore_index=True)
    return {"groups": g, "evals": pd.concat(evals, ignore_index=True), "dist": pd.concat(dist, ignore_index=True),
            "summary": osd_summary(g)}


def osd_summary(groups: pd.DataFrame) -> pd.DataFrame:
    """Per run: α and tokens per target call in the first quarter of the stream (before the shift) and the last
    quarter (after it), means over seeds."""
    _need(groups, ("group", "alpha", "tokens_per_call"), "osd_compare()['groups']")
    g = groups.assign(run=groups["run"] if "run" in groups.columns else "run",
                      seed=groups["seed"] if "seed" in groups.columns else 0)
    rows = []
    for (run, seed), d in g.groupby(["run", "seed"], sort=False):
        d = d.sort_values("group")
        q = max(1, len(d) // 4)
        rows.append({"run": run, "seed": seed, "alpha_before": d["alpha"].iloc[:q].mean(),
                     "alpha_after": d["alpha"].iloc[-q:].mean(), "tpc_before": d["tokens_per_call"].iloc[:q].mean(),
                     "tpc_after": d["tokens_per_call"].iloc[-q:].mean()})
    per = pd.DataFrame(rows)
    return per.groupby("run", sort=False)[["alpha_before", "alpha_after", "tpc_before", "tpc_after"]].mean() \
        .reset_index()


def next_token_side_by_side(dist: pd.DataFrame, run: str | None = None) -> pd.DataFrame:
    """Long table (when, token, model, prob) of the target's and the draft's next-token distributions at the probe
    position, before and after the stream; ``run`` picks one run of a multi-run table. Adds the acceptance rate
    α = Σ min(p, q) of each moment as ``alpha``."""
    _need(dist, ("when", "token", "target", "draft"), "osd_stream()['dist'] or shipped_results()['osd_dist']")
    d = dist
    if "run" in d.columns:
        runs = list(dict.fromkeys(d["run"]))
        run = run if run is not None else runs[-1]
        if run not in runs:
            raise LabError(f"unknown run {run!r}; allowed: {', '.join(map(str, runs))}")
        d = d[d["run"] == run]
    alpha = d.assign(m=np.minimum(d["target"], d["draft"])).groupby("when")["m"].sum()
    long = d.melt(id_vars=["when", "token"], value_vars=["target", "draft"], var_name="model", value_name="prob")
    long["alpha"] = long["when"].map(alpha)
    return long


def _need(df, cols, what: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise LabError(f"expected a DataFrame from {what}, got {type(df).__name__}")
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise LabError(f"the table lacks columns {missing}; allowed: the output of {what}")
