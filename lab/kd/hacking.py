"""Teacher hacking: a student distilled from an imperfect teacher drifts away from the truth.

Paper: Tiapkin, Calandriello, Ferret, Perrin, Vieillard, Ramé, Blondel, "On Teacher Hacking in Language Model
Distillation" (arXiv 2502.02671, 2025). No official code is published.

Setup (:func:`teacher_hacking_study`): an ORACLE whose next-token probabilities are exact (a
:class:`~lab.data.language.SyntheticLanguage`); a TEACHER TinyLM trained by cross-entropy on a LIMITED oracle
sample (``teacher_data`` sequences), so it has flaws; a smaller STUDENT TinyLM distilled from the teacher with
token-level forward KL(teacher || student) over every position. Three data regimes, at the same steps and batch:

- ``offline``: a small fixed dataset of ``offline_data`` teacher samples, reused for many epochs;
- ``online_teacher``: a fresh batch of teacher samples every step;
- ``online_student``: a fresh batch of student samples every step (on-policy, GKD's λ = 1).

Measured every ``eval_every`` steps on ``eval_n`` fixed held-out sequences of the oracle (the same sequences for
both): ``proxy`` = mean per-token KL(teacher || student), ``golden`` = mean per-token KL(oracle || student), plus
the step's training loss; ``proxy_own`` / ``golden_own`` are the same distances on ``own_n`` sequences the
student samples itself (0: not measured, NaN). Teacher hacking is the proxy falling while the golden distance rises from its minimum.
:func:`hacking_summary` gives, per regime and seed, the golden minimum, its end value and the rise, and the
proxy at the end; :func:`power_law_fit` fits log proxy = a + b log step on the early steps (the paper's
detector: hacking shows as the proxy deviating from the early power law).

Fidelity notes:
- toy scale: oracle = a 16-token hidden-Markov language with 8 states and sequences of 16 ids (BOS + 15); teacher
  TinyLM dim 32 / depth 2 trained 200 steps on 512 oracle sequences (shipped in ``assets/zoo/kd/lm_family/hacking``);
  student TinyLM dim 16 / depth 1, Adam lr 3e-3, batch 16, 64 offline sequences (so the default 500 steps are
  125 epochs).
  The paper distils T5 models on summarisation/translation/instruction data with 200k offline examples for
  about 62 epochs.
- there are no separate prompts: the student sees whole sequences (the "prompt" is the BOS token); the
  paper's diversity study (fewer prompts x more generations) is not reproduced.
- the distance estimator (not specified in the paper) is the exact mean per-token KL on 256 held-out oracle
  sequences for both metrics, so proxy and golden differ only in the reference distribution.
- the paper starts teacher and student from SFT checkpoints on oracle data; here the student starts from
  random initialisation.
- measured (bench/lm.py, seeds 0-2; golden = KL(oracle || student) per token): offline's golden falls to
  0.108 ± 0.005 (near step 225) and ends at 0.118 ± 0.004, a rise of 0.010 ± 0.003, while its proxy keeps
  falling (0.048 at the end, below its value at the golden minimum on every seed): teacher hacking. Online with
  fresh teacher samples ends at 0.105 ± 0.001 and with student samples at 0.107 ± 0.001, both below offline, but
  their golden also rises a little from its minimum (0.004 ± 0.003 and 0.005 ± 0.001): the dim-16 student is
  smoother than its overfitted teacher (teacher's golden 0.138), so moving closer to the teacher eventually
  costs golden distance in every regime. The paper's "online does not rise" is therefore a MISS at this scale;
  what holds is "offline hacks (golden up, proxy down) and ends farther from the oracle than online". The early
  power-law exponents of the proxy are alike (b about -0.65 in every regime); at 500 steps offline's proxy flattens
  below the early fit rather than turning up.
- teacher tuning (seeds 0-1): a teacher trained longer on 128 oracle sequences (golden 3.9) was too broken to be a
  proxy at all; one trained on 2,048 sequences (golden 0.08) with a dim-8 student showed no hacking within 600
  steps. The 512-sequence teacher is the setting in between where it shows.
"""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from lab.data.language import SyntheticLanguage
from lab.errors import LabError
from lab.data.language import kl_rows_to_truth
from lab.kd.logit.gkd import cached_lm_nets, divergence_rows, sample_continuations
from lab.nets.classifiers import TinyLM
from lab.trainable import resolve_device

REGIMES = ("offline", "online_teacher", "online_student")
ORACLE = {"vocab": 16, "n_states": 8, "seq_len": 16, "seed": 3}
TEACHER_SPEC = {"vocab": 17, "dim": 32, "depth": 2, "heads": 2, "seq_len": 15}
STUDENT_SPEC = {"vocab": 17, "dim": 16, "depth": 1, "heads": 2, "seq_len": 15}
TEACHER_RECIPE = {"teacher_data": 512, "steps": 200, "batch": 32, "lr": 3e-3, "seed": 0}
DEFAULTS = {"steps": 500, "batch": 16, "lr": 3e-3, "offline_data": 64, "eval_every": 25, "eval_n": 256, "own_n": 128}


def oracle() -> SyntheticLanguage:
    return SyntheticLanguage(**ORACLE)


def hacking_teacher(device=None, progress: bool = False) -> TinyLM:
    """The flawed teacher: TinyLM trained by cross-entropy on ``teacher_data`` oracle sequences (shipped in
    ``assets/zoo/kd/lm_family/hacking``, else cached or trained in a few seconds)."""
    recipe = {"oracle": ORACLE, "teacher": TEACHER_SPEC, "recipe": TEACHER_RECIPE}
    return cached_lm_nets("hacking", recipe, lambda: {"teacher": TinyLM(**TEACHER_SPEC)},
                          lambda prog: {"teacher": _train_teacher(prog)}, device, progress)["teacher"]


def _train_teacher(progress: bool = False) -> TinyLM:
    r = TEACHER_RECIPE
    torch.manual_seed(r["seed"])
    net = TinyLM(**TEACHER_SPEC)
    data = oracle().sample(r["teacher_data"], seed=101)
    g = torch.Generator().manual_seed(r["seed"])
    opt = torch.optim.Adam(net.parameters(), lr=r["lr"])
    it = range(r["steps"])
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(it, desc="teacher (limited oracle data)")
    for _ in it:
        x = data[torch.randint(0, len(data), (r["batch"],), generator=g)]
        z = net(x[:, :-1])
        loss = F.cross_entropy(z.reshape(-1, z.shape[-1]), x[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


@torch.no_grad()
def _distances(student, teacher, eval_seqs, lang) -> tuple[float, float]:
    student.eval()
    x = eval_seqs[:, :-1]
    zs, zt = student(x), teacher(x)
    golden = float(kl_rows_to_truth(zs, eval_seqs, lang).mean())
    proxy = float(divergence_rows("forward_kl", zs.reshape(-1, zs.shape[-1]), zt.reshape(-1, zt.shape[-1])).mean())
    return proxy, golden


def run_regime(regime: str, seed: int = 0, teacher=None, device=None, progress: bool = False, **overrides) -> pd.DataFrame:
    """One student distilled from the teacher in ``regime``; one row per evaluation (see the module docstring)."""
    if regime not in REGIMES:
        raise LabError(f"unknown regime {regime!r}; allowed: {', '.join(REGIMES)}")
    bad = set(overrides) - set(DEFAULTS)
    if bad:
        raise LabError(f"unknown setting {sorted(bad)[0]!r}; allowed: {', '.join(DEFAULTS)}")
    c = {**DEFAULTS, **overrides}
    for k, v in c.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (v > 0 or (k == "own_n" and v == 0)):
            raise LabError(f"{k} must be a positive number{' (own_n: or 0)' if k == 'own_n' else ''}, got {v!r}")
    dev = resolve_device(device)
    lang = oracle()
    teacher = (teacher or hacking_teacher(dev)).to(dev).eval()
    L = TEACHER_SPEC["seq_len"] + 1
    g = torch.Generator().manual_seed(1_000 + seed)
    torch.manual_seed(seed)
    student = TinyLM(**STUDENT_SPEC).to(dev)
    opt = torch.optim.Adam(student.parameters(), lr=c["lr"])
    eval_seqs = lang.sample(int(c["eval_n"]), seed=555).to(dev)
    bos = torch.full((int(c["batch"]), 1), lang.bos, dtype=torch.long, device=dev)
    offline = None
    if regime == "offline":
        offline = sample_continuations(teacher, torch.full((int(c["offline_data"]), 1), lang.bos, dtype=torch.long,
                                                           device=dev), L, g, forbid=lang.bos)
    rows = []
    g_eval = torch.Generator()
    own_prompts = torch.full((int(c["own_n"]), 1), lang.bos, dtype=torch.long, device=dev)

    def measure(step, loss):
        proxy, golden = _distances(student, teacher, eval_seqs, lang)
        proxy_own = golden_own = float("nan")
        if len(own_prompts):  # both distances on sequences the student samples itself
            own = sample_continuations(student, own_prompts, L, g_eval.manual_seed(777), forbid=lang.bos)
            proxy_own, golden_own = _distances(student, teacher, own, lang)
        rows.append({"step": step, "epoch": step * c["batch"] / c["offline_data"], "proxy": proxy, "golden": golden,
                     "proxy_own": proxy_own, "golden_own": golden_own, "train_loss": loss})

    measure(0, float("nan"))
    pool, used = None, 0
    chunk = torch.full((int(c["batch"]) * 32, 1), lang.bos, dtype=torch.long, device=dev)
    it = range(1, int(c["steps"]) + 1)
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(it, desc=regime)
    for step in it:
        if regime == "offline":
            x = offline[torch.randint(0, len(offline), (int(c["batch"]),), generator=g).to(dev)]
        elif regime == "online_teacher":  # fresh teacher samples, each used once (drawn in chunks for speed)
            if pool is None or used + int(c["batch"]) > len(pool):
                pool, used = sample_continuations(teacher, chunk, L, g, forbid=lang.bos), 0
            x, used = pool[used:used + int(c["batch"])], used + int(c["batch"])
        else:
            x = sample_continuations(student, bos, L, g, forbid=lang.bos)
        student.train()
        with torch.no_grad():
            zt = teacher(x[:, :-1])
        zs = student(x[:, :-1])
        loss = divergence_rows("forward_kl", zs.reshape(-1, zs.shape[-1]), zt.reshape(-1, zt.shape[-1])).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % int(c["eval_every"]) == 0 or step == int(c["steps"]):
            measure(step, float(loss.detach()))
    df = pd.DataFrame(rows)
    df.insert(0, "seed", seed)
    df.insert(0, "regime", regime)
    return df


def teacher_hacking_study(seeds=(0, 1, 2), regimes=REGIMES, device=None, progress: bool = False,
                          on_run=None, **overrides) -> pd.DataFrame:
    """The tidy table of the study: columns regime, seed, step, epoch, proxy, golden, train_loss (and wall_s per
    run); ``overrides`` change :data:`DEFAULTS` (steps, batch, lr, offline_data, eval_every, eval_n).
    ``on_run(fraction done, text)`` is called after each (regime, seed) run (an app's progress bar)."""
    seeds = list(seeds)
    if not seeds:
        raise LabError("seeds must name at least one seed")
    for r in regimes:
        if r not in REGIMES:
            raise LabError(f"unknown regime {r!r}; allowed: {', '.join(REGIMES)}")
    teacher = hacking_teacher(device, progress)
    out = []
    for r in regimes:
        for s in seeds:
            t0 = time.perf_counter()
            df = run_regime(r, s, teacher, device, progress, **overrides)
            df["wall_s"] = time.perf_counter() - t0
            out.append(df)
            if on_run is not None:
                on_run(len(out) / (len(regimes) * len(seeds)), f"{r}, seed {s} done")
    return pd.concat(out, ignore_index=True)


def hacking_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per regime and seed: golden minimum (and its step), golden at the end, rise = end - min, proxy at its
    minimum step and at the end."""
    _need(df, ("regime", "seed", "step", "proxy", "golden"))
    rows = []
    for (r, s), d in df.groupby(["regime", "seed"], sort=False):
        d = d.sort_values("step")
        i = int(d["golden"].values.argmin())
        rows.append({"regime": r, "seed": s, "golden_min": float(d["golden"].iloc[i]),
                     "golden_min_step": int(d["step"].iloc[i]), "golden_end": float(d["golden"].iloc[-1]),
                     "golden_rise": float(d["golden"].iloc[-1] - d["golden"].iloc[i]),
                     "proxy_at_golden_min": float(d["proxy"].iloc[i]), "proxy_end": float(d["proxy"].iloc[-1])})
    return pd.DataFrame(rows)


def power_law_fit(df: pd.DataFrame, early: float = 0.3) -> pd.DataFrame:
    """Per regime: fit log proxy = a + b log step on the steps <= ``early`` x the last step (seed-mean proxy);
    returns one row per (regime, step) with the mean proxy, the fitted power law and the log-ratio between them
    (the deviation the paper uses to detect hacking), plus the fit's a and b."""
    _need(df, ("regime", "step", "proxy"))
    if not 0 < early <= 1:
        raise LabError(f"early must be in (0, 1], got {early}")
    out = []
    for r, d in df[df["step"] > 0].groupby("regime", sort=False):
        m = d.groupby("step")["proxy"].mean().reset_index()
        fit = m[m["step"] <= early * m["step"].max()]
        if len(fit) < 2:
            raise LabError(f"{r}: fewer than 2 evaluations in the early part; evaluate more often")
        b, a = np.polyfit(np.log(fit["step"]), np.log(fit["proxy"]), 1)
        m["fit"] = np.exp(a + b * np.log(m["step"]))
        m["log_deviation"] = np.log(m["proxy"]) - np.log(m["fit"])
        m["a"], m["b"], m["regime"] = a, b, r
        out.append(m)
    return pd.concat(out, ignore_index=True)


def _need(df, cols) -> None:
    if not isinstance(df, pd.DataFrame):
        raise LabError(f"expected a DataFrame from teacher_hacking_study, got {type(df).__name__}")
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise LabError(f"the table lacks columns {missing}; allowed: a teacher_hacking_study DataFrame")


__all__ = ["REGIMES", "ORACLE", "TEACHER_SPEC", "STUDENT_SPEC", "TEACHER_RECIPE", "DEFAULTS", "oracle",
           "hacking_teacher", "run_regime", "teacher_hacking_study", "hacking_summary", "power_law_fit"]
