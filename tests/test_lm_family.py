"""Unit, contract and bad-input tests of the language-model family: GKD (lab.kd.logit.gkd), teacher hacking
(lab.kd.hacking) and (online) speculative decoding (lab.kd.speculative). The KD contract of ``gkd`` is in
tests/test_kd_contract.py (parametrised over every registered method); the claims are in tests/test_claims_lm.py.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import chisquare

import lab
from lab.errors import LabError
from lab.kd import hacking as H
from lab.kd import speculative as S
from lab.kd.logit.gkd import DIVERGENCES, divergence_rows, kl_on_samples, kl_rows_to_truth, sample_continuations
from lab.losses import forward_kl, generalized_jsd, reverse_kl, tvd


def _chi2(counts: np.ndarray, expected_p: np.ndarray) -> float:
    """p-value of a chi-square goodness-of-fit test, pooling cells with fewer than 5 expected counts."""
    e = expected_p / expected_p.sum() * counts.sum()
    keep = e >= 5
    o, e2 = np.append(counts[keep], counts[~keep].sum()), np.append(e[keep], e[~keep].sum())
    if e2[-1] == 0:
        o, e2 = o[:-1], e2[:-1]
    return float(chisquare(o, e2).pvalue)


def test_accept_reject_rule_outputs_the_target_distribution_and_accepts_at_sum_min():
    """One draft per round (k = 1) on explicit distributions: the emitted token follows p (chi-square), the
    acceptance frequency is Σ min(p, q) within 4 binomial standard errors; the draft's own tokens do not follow p."""
    n = 40000
    p = torch.tensor([0.5, 0.2, 0.15, 0.1, 0.05])
    q = torch.tensor([0.1, 0.1, 0.2, 0.3, 0.3])
    g = torch.Generator().manual_seed(0)
    drafts = torch.multinomial(q.expand(n, -1), 1, replacement=True, generator=g)
    n_acc, nxt = S.accept_reject(p.expand(n, 1, -1), q.expand(n, 1, -1), drafts, p.expand(n, -1), g)
    emitted = torch.where(n_acc == 1, drafts[:, 0], nxt)
    counts = np.bincount(emitted.numpy(), minlength=5)
    assert _chi2(counts, p.double().numpy()) > 1e-3
    assert _chi2(np.bincount(drafts[:, 0].numpy(), minlength=5), p.double().numpy()) < 1e-12
    alpha = float(torch.minimum(p, q).sum())
    assert abs(float((n_acc == 1).float().mean()) - alpha) < 4 * (alpha * (1 - alpha) / n) ** 0.5


def test_speculative_decoding_follows_the_target_exactly_and_plain_draft_sampling_does_not():
    """Two tokens after BOS with k = 2 drafts per round, 8000 sequences: the pair frequencies match the target's
    exact p(x1) p(x2 | x1) (chi-square p > 1e-3), while sequences sampled from the draft alone fail the same test
    (p < 1e-12). The first round's α equals 1 - TV(p, q) of the distributions it reports."""
    target, draft = S.osd_models()
    A, _ = S.languages()
    V, bos, n = A.vocab, A.bos, 8000
    prompts = torch.full((n, 1), bos, dtype=torch.long)
    toks, st = S.speculative_generate(target, draft, prompts, 2, 2, torch.Generator().manual_seed(0), forbid=bos)
    assert toks.shape == (n, 3) and bool((toks[:, 1:] < V).all())
    with torch.no_grad():
        p1 = S._probs(target, prompts[:1], bos)[0, -1, :V].double()
        two = torch.cat([torch.full((V, 1), bos), torch.arange(V)[:, None]], 1)
        p2 = S._probs(target, two, bos)[:, -1, :V].double()
    exact = (p1[:, None] * p2).flatten().numpy()
    pair = lambda t: np.bincount((t[:, 1] * V + t[:, 2]).numpy(), minlength=V * V)  # noqa: E731
    assert _chi2(pair(toks), exact) > 1e-3
    plain = sample_continuations(draft, prompts, 3, torch.Generator().manual_seed(1), forbid=bos)
    assert _chi2(pair(plain), exact) < 1e-12
    tv = 0.5 * (st["p_at"][0] - st["q_at"][0]).abs().sum()
    assert abs(float(torch.minimum(st["p_at"][0], st["q_at"][0]).sum()) - (1 - float(tv))) < 1e-5
    s = S.round_summary(st, 2)
    assert 0 < s["alpha"] <= 1 and 1 <= s["tokens_per_call"] <= 3 and 0 <= s["accepted_len"] <= 2


def test_expected_tokens_per_call_and_bad_alpha():
    assert S.expected_tokens_per_call(0.0, 4) == 1.0
    assert S.expected_tokens_per_call(1.0, 4) == 5.0
    assert abs(S.expected_tokens_per_call(0.5, 2) - 1.75) < 1e-12
    with pytest.raises(LabError, match=r"\[0, 1\]"):
        S.expected_tokens_per_call(1.5, 4)


def test_shift_stream_is_flat_then_ramps_then_flat_and_seeded():
    src = S.shift_stream(400, seed=3)
    assert src[:100].sum() == 0 and src[300:].sum() == 100
    assert 30 < src[100:300].sum() < 170
    assert np.array_equal(src, S.shift_stream(400, seed=3)) and not np.array_equal(src, S.shift_stream(400, seed=4))
    with pytest.raises(LabError, match="at least 4"):
        S.shift_stream(2)


def test_osd_config_and_window_are_validated():
    with pytest.raises(LabError, match="allowed: forward_kl, reverse_kl, jsd, taid"):
        S.osd_stream({"divergence": "nope"})
    with pytest.raises(LabError, match="window"):
        S.osd_stream({"prompt_len": 10, "max_new": 20, "k": 4})
    with pytest.raises(LabError, match="requests"):
        S.osd_stream({"requests": 3})
    target, draft = S.osd_models()
    with pytest.raises(LabError, match="exceeds the models' window"):
        S.speculative_generate(target, draft, torch.full((1, 20), 16), 10, 4, torch.Generator())


def test_gkd_lmbda_switches_between_dataset_and_student_sequences():
    """λ = 0 keeps the dataset batch; λ = 1 keeps the prompt (first prompt_len ids) and replaces the rest by the
    student's samples, without BOS after position 0; the loss rows are the continuation positions only."""
    cls = lab.kd.get("gkd")
    off = cls("kd/language/teacher", "language", {"steps": 2, "batch": 8, "lmbda": 0.0, "prompt_len": 5}, seed=0)
    on = cls("kd/language/teacher", "language", {"steps": 2, "batch": 8, "lmbda": 1.0, "prompt_len": 5}, seed=0)
    b0, b1 = off.sample_batch(0), on.sample_batch(0)
    task = off.task
    assert torch.equal(b0["x"], task.x_train[b0["idx"]]) and not b0["on_policy"]
    assert b1["on_policy"] and torch.equal(b1["x"][:, :5], task.x_train[b1["idx"]][:, :5])
    assert not torch.equal(b1["x"], task.x_train[b1["idx"]])
    assert torch.equal(b1["x"][:, 1:], b1["y"][:, :-1]) and bool((b1["y"] < task.language.vocab).all())
    m = on.mask(b1["x"])
    assert not m[:, :4].any() and m[:, 4:].all()
    tg = on.targets(b1)
    assert tg.info["on_policy"] and int(tg.info["loss_rows"].sum()) == 8 * (b1["x"].shape[1] - 4)


def test_gkd_divergences_are_the_lab_losses():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(12, 17, generator=g), torch.randn(12, 17, generator=g)
    assert torch.allclose(divergence_rows("forward_kl", s, t).mean(), forward_kl(s, t))
    assert torch.allclose(divergence_rows("reverse_kl", s, t).mean(), reverse_kl(s, t))
    assert torch.allclose(divergence_rows("jsd", s, t, beta=0.3).mean(), generalized_jsd(s, t, 0.3, normalized=False))
    assert torch.allclose(divergence_rows("tvd", s, t).mean(), tvd(s, t))
    for name in DIVERGENCES:
        assert bool((divergence_rows(name, s, t) >= -1e-6).all()) and float(divergence_rows(name, t, t).abs().max()) < 1e-5
    with pytest.raises(LabError, match="allowed: jsd, forward_kl"):
        divergence_rows("nope", s, t)


def test_gkd_bad_input_names_the_allowed_values():
    cls = lab.kd.get("gkd")
    for cfg, needle in (({"lmbda": 1.5}, "lmbda"), ({"divergence": "kl"}, "allowed: jsd"), ({"beta": -0.1}, "beta"),
                        ({"sample_temperature": 0}, "sample_temperature"), ({"prompt_len": 0}, "prompt_len")):
        with pytest.raises(LabError, match=needle):
            cls("kd/language/teacher", "language", {"steps": 2, **cfg})
    with pytest.raises(LabError, match="allowed: 1..30"):
        cls("kd/language/teacher", "language", {"steps": 2, "prompt_len": 31})


def test_sampling_is_seeded_and_kl_helpers_agree_with_the_language():
    task = lab.kd.get_task("language")
    teacher = lab.kd.load_teacher("kd/language/teacher")
    prompts = task.x_test[:32, :3]
    a = sample_continuations(teacher, prompts, 12, torch.Generator().manual_seed(5), forbid=task.language.bos)
    b = sample_continuations(teacher, prompts, 12, torch.Generator().manual_seed(5), forbid=task.language.bos)
    c = sample_continuations(teacher, prompts, 12, torch.Generator().manual_seed(6), forbid=task.language.bos)
    assert torch.equal(a, b) and not torch.equal(a, c) and torch.equal(a[:, :3], prompts)
    assert bool((a[:, 1:] != task.language.bos).all())
    full = torch.cat([task.x_test[:32], task.y_test[:32, -1:]], 1)
    z = task.logits(teacher, task.x_test[:32])
    assert abs(float(kl_rows_to_truth(z, full, task.language).mean()) - task.language.kl_to_truth(z, full)) < 1e-5
    assert 0 < kl_on_samples(teacher, task.language, n=32, prompt_len=4, seed=0) < 0.2
    with pytest.raises(LabError, match="shorter than the prompts"):
        sample_continuations(teacher, prompts, 2, torch.Generator())


def test_hacking_summary_and_power_law_fit_on_a_known_table():
    """On a constructed table: the power law proxy = 2 step^-0.5 is recovered (b = -0.5), the golden rise and the
    step of its minimum are read correctly; bad regimes, settings and tables name the allowed values."""
    steps = np.arange(0, 101, 10)
    rows = []
    for seed in (0, 1):
        for st in steps:
            proxy = 2.0 * max(st, 1) ** -0.5
            golden = 0.5 + 0.001 * (st - 40) ** 2 / 100
            rows.append({"regime": "offline", "seed": seed, "step": st, "proxy": proxy, "golden": golden})
    df = pd.DataFrame(rows)
    s = H.hacking_summary(df)
    assert list(s["golden_min_step"]) == [40, 40]
    assert np.allclose(s["golden_rise"], 0.001 * 60**2 / 100)
    fit = H.power_law_fit(df, early=0.5)
    assert np.allclose(fit["b"], -0.5) and np.allclose(fit["log_deviation"], 0, atol=1e-9)
    with pytest.raises(LabError, match="allowed: offline, online_teacher, online_student"):
        H.run_regime("nope")
    with pytest.raises(LabError, match="allowed: steps"):
        H.run_regime("offline", steps_per_epoch=3)
    with pytest.raises(LabError, match="positive"):
        H.run_regime("offline", steps=0)
    with pytest.raises(LabError, match="lacks columns"):
        H.hacking_summary(df.drop(columns="golden"))


def test_hacking_run_is_seeded_and_records_both_distances():
    a = H.run_regime("offline", seed=0, steps=20, eval_every=10, eval_n=32, own_n=16)
    b = H.run_regime("offline", seed=0, steps=20, eval_every=10, eval_n=32, own_n=16)
    pd.testing.assert_frame_equal(a, b)
    assert list(a["step"]) == [0, 10, 20] and set(a["regime"]) == {"offline"}
    assert (a[["proxy", "golden", "proxy_own", "golden_own"]] > 0).all().all()
    assert a["proxy"].iloc[-1] < a["proxy"].iloc[0]  # 20 steps of forward KL move the student to the teacher


def test_probes_and_figures_draw_the_shipped_measurements_and_refuse_other_tables():
    """The shipped results become tables whose numbers the figures draw: the side-by-side distributions sum to 1
    per model with α = Σ min(p, q), a window-1 rolling α is α itself, and the summaries are seed means; a table
    from elsewhere, a bad window or an unknown run is refused naming what is allowed."""
    from lab.probes import lm as P
    from lab.viz import lm as V

    res = P.shipped_results()
    long = P.next_token_side_by_side(res["osd_dist"], "forward_kl")
    sums = long.groupby(["when", "model"])["prob"].sum()
    assert np.allclose(sums.to_numpy(), 1.0, atol=1e-5)
    wide = long.pivot_table(index=["when", "token"], columns="model", values="prob").reset_index()
    alpha = wide.assign(m=np.minimum(wide["target"], wide["draft"])).groupby("when")["m"].sum()
    assert np.allclose(long.groupby("when")["alpha"].first().loc[alpha.index].to_numpy(), alpha.to_numpy())
    fig = V.side_by_side_figure(long)
    assert [t.name for t in fig.data] == ["target", "draft", "target", "draft"]
    g = P.rolling_acceptance(res["osd_groups"], window=1)
    assert np.allclose(g["alpha_rolling"], g["alpha"])
    assert "share of B prompts" in [t.name for t in V.acceptance_figure(g).data]
    curves = P.hacking_curves(res["hacking"])
    proxy_off = curves.query("regime == 'offline' and metric == 'proxy'").set_index("step")["mean"]
    direct = res["hacking"].query("regime == 'offline'").groupby("step")["proxy"].mean()
    assert np.allclose(proxy_off.loc[direct.index].to_numpy(), direct.to_numpy())
    assert len(V.hacking_figure(curves).data) == 2 * res["hacking"]["regime"].nunique()
    assert len(V.loglog_figure(P.hacking_loglog(res["hacking"])).data) == 2 * res["hacking"]["regime"].nunique()
    df = pd.DataFrame({"lmbda": [0.0, 0.0, 1.0, 1.0], "seed": [0, 1, 0, 1], "it": [5] * 4,
                       "kl_truth": [1.0, 3.0, 2.0, 4.0]})
    assert list(P.gkd_summary(df)["kl_truth_mean"]) == [2.0, 3.0]
    assert len(V.gkd_figure(df).data) == 2 * 2 + 1
    with pytest.raises(LabError, match="lacks columns"):
        V.gkd_figure(pd.DataFrame({"x": [1]}))
    with pytest.raises(LabError, match="lacks columns"):
        P.hacking_curves(df)
    with pytest.raises(LabError, match=">= 1"):
        P.rolling_acceptance(res["osd_groups"], window=0)
    with pytest.raises(LabError, match="allowed: frozen"):
        P.next_token_side_by_side(res["osd_dist"], "nope")
    with pytest.raises(LabError, match="allowed: forward_kl"):
        P.osd_compare(["kl"])
    with pytest.raises(LabError, match="lmbda"):
        P.gkd_compare([2.0])
