"""Claims of the language-model family, each measured in the test against a baseline measured in the same test,
on seeds the settings were not tuned on (tuning: seeds 0-2 for gkd and hacking, stream seed 0 for osd).

- GKD (Agarwal et al. 2024): on-policy distillation (λ = 1) against off-policy (λ = 0) at equal steps, KL to the
  true language on true-language sequences and on the student's own samples, with a scarce prompt set.
- Teacher hacking (Tiapkin et al. 2025): with a small fixed offline dataset the golden distance (to the oracle)
  rises from its minimum while the proxy (to the teacher) keeps falling; with fresh teacher samples it rises less.
- Online speculative decoding (Liu et al. 2023): under a shift of the query stream, the online-distilled draft's
  acceptance rate beats a frozen draft's on the same stream, and its held-out acceptance on the new source rises.
"""
from __future__ import annotations

import numpy as np

import lab
from lab.kd import hacking as H
from lab.kd import speculative as S
from lab.kd.logit.gkd import kl_on_samples

#: the GKD claim setting: scarce prompts (16 training sequences), forward KL, 200 steps of batch 16
GKD_CLAIM = {"steps": 200, "batch": 16, "lr": 1e-2, "divergence": "forward_kl", "n_train": 16, "prompt_len": 4,
             "eval_every": 200}
#: the setting was chosen on seeds 0-2; seeds 10-12 had been looked at before it was (a 32-prompt setting missed on
#: seed 10), so the test asserts on seeds 20-22, which no choice was made on
GKD_SEEDS = (20, 21, 22)


def _gkd(lmbda: float, seed: int) -> tuple[float, float]:
    m = lab.kd.get("gkd")("kd/language/teacher", "language", {**GKD_CLAIM, "lmbda": lmbda}, seed=seed)
    for _ in lab.train(m):
        pass
    own = kl_on_samples(m.student, m.task.language, n=256, prompt_len=GKD_CLAIM["prompt_len"], seed=1000 + seed)
    return m.history[-1]["kl_truth"], own


def test_on_policy_gkd_beats_off_policy_in_kl_to_the_truth_on_true_sequences_and_own_samples():
    """λ = 1 against λ = 0 on seeds 20-22 with 16 training sequences as the prompt set (tuned on seeds 0-2). On
    true-language test sequences AND on the student's own samples, the on-policy student is closer to the true
    language on every seed, by a mean paired gap larger than the std of the paired gaps."""
    res = {lm: np.array([_gkd(lm, s) for s in GKD_SEEDS]) for lm in (0.0, 1.0)}
    msg = f"(true, own) per seed: off-policy {res[0.0].tolist()}, on-policy {res[1.0].tolist()}"
    for j in (0, 1):
        gap = res[0.0][:, j] - res[1.0][:, j]
        assert (gap > 0).all() and gap.mean() > gap.std(ddof=1), msg


def test_offline_distillation_hacks_the_teacher_and_online_ends_closer_to_the_oracle():
    """Seeds 10-12, 500 steps (125 epochs over 64 offline teacher samples). Offline: the golden distance (to the
    oracle) ends above its minimum on every seed by a mean rise larger than the rise's std across seeds, while the
    proxy (to the teacher) at the end is below the proxy at the golden minimum on every seed: teacher hacking.
    Online (fresh teacher samples every step): the golden distance at the end is below offline's on every seed,
    by a mean gap larger than the std of the paired gaps. Online's golden also rises from its minimum at this
    scale (the paper's "does not rise" is a miss here; measured, not asserted)."""
    df = H.teacher_hacking_study(seeds=(10, 11, 12), regimes=("offline", "online_teacher"), eval_n=128, own_n=0,
                                 eval_every=50)
    s = H.hacking_summary(df).set_index("regime")
    off, on = s.loc["offline"], s.loc["online_teacher"]
    msg = f"\n{s.to_string()}"
    assert (off["golden_rise"] > 0).all() and off["golden_rise"].mean() > off["golden_rise"].std(ddof=1), msg
    assert (off["proxy_end"] < off["proxy_at_golden_min"]).all(), msg
    gap = off["golden_end"].to_numpy() - on["golden_end"].to_numpy()
    assert (gap > 0).all() and gap.mean() > gap.std(ddof=1), msg


def test_online_speculative_decoding_raises_acceptance_after_a_query_shift():
    """Stream seeds 1-3 (tuned on 0), 256 requests shifting from language A to B, forward KL every 8 requests.
    In the last quarter (all B) the online draft's acceptance α = Σ min(p, q) beats the frozen draft's on the same
    stream on every seed by more than the std of the paired gaps; tokens per target call rise with it; the online
    draft's held-out α on B ends above where it started while the frozen draft's stays where it was."""
    target, draft = S.osd_models()
    gaps, tpc = [], []
    for seed in (1, 2, 3):
        runs = {on: S.osd_stream({"requests": 256, "online": on}, seed=seed, models=(target, draft)) for on in (False, True)}
        q = len(runs[True]["groups"]) // 4
        last = {on: runs[on]["groups"].iloc[-q:] for on in runs}
        gaps.append(last[True]["alpha"].mean() - last[False]["alpha"].mean())
        tpc.append(last[True]["tokens_per_call"].mean() - last[False]["tokens_per_call"].mean())
        ev = {on: runs[on]["evals"].query("source == 'B'")["alpha"].to_numpy() for on in runs}
        assert ev[True][-1] > ev[True][0] + 0.1 and abs(ev[False][-1] - ev[False][0]) < 1e-6, (seed, ev)
    gaps, tpc = np.array(gaps), np.array(tpc)
    assert (gaps > 0).all() and gaps.mean() > gaps.std(ddof=1), gaps
    assert (tpc > 0).all(), tpc
