# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 12 · Language models: on-policy distillation, teacher hacking and speculative decoding
#
# A synthetic hidden-Markov language (`lab.data.language.SyntheticLanguage`) gives the **exact** next-token
# distribution after any prefix, so we can measure how far a tiny language model is from the truth instead of
# estimating it. Three ideas from the language-model distillation papers, each on this controlled setup:
# **GKD** (Agarwal et al. 2024) trains the student on sequences it samples itself, with the teacher labelling every
# position; **teacher hacking** (Tiapkin et al. 2025) asks whether a student that keeps getting closer to an
# imperfect teacher can drift away from the truth; **online speculative decoding** (Liu et al. 2023) keeps a small
# draft model, whose guesses a large target verifies in one call, distilled on the live query stream.
#
# **Learning goals.** After this notebook you can:
# 1. write speculative sampling's accept/reject rule and check that its output follows the target exactly;
# 2. train `gkd` students on- and off-policy and measure their KL to the true language on true sequences and on
#    their own samples;
# 3. read teacher-hacking curves: the proxy (to the teacher) and golden (to the oracle) distances, the
#    proxy–golden plane and the early power law;
# 4. measure a draft's acceptance rate α = Σ min(p, q) on a shifting query stream, frozen and distilled online.
#
# **In the app:** the three sections with the shipped curves and live reruns:
# [Language models](http://localhost:8501/Language_models?lambdas=0&lambdas=1&regimes=offline&regimes=online_teacher&runs=frozen&runs=forward_kl).

# %% tags=["parameters"]
FAST = False  # the test suite sets FAST = True: fewer steps and requests, same lessons

# %%
import pandas as pd
import torch

import lab
import lab.viz.lm as vlm
from lab.kd import hacking as H
from lab.kd import speculative as S
from lab.kd.logit.gkd import kl_on_samples, sample_continuations
from lab.probes import lm as P

torch.set_num_threads(1)  # tiny models: one thread is as fast, and kind to a shared laptop
SEED = 0
REQUESTS = 64 if FAST else 256   # requests of the live speculative-decoding stream
GKD_STEPS = 40 if FAST else 200  # steps of the live gkd run
shipped = P.shipped_results()    # what bench/lm.py measured (the curves the app shows first)
gkd = lab.kd.get("gkd")
print(gkd.paper, "\n", gkd.mechanism)

# %% [markdown]
# ## 1. Speculative sampling is exact
#
# The draft q proposes k tokens; the target p scores them all in one call. Token x_j is accepted with probability
# min(1, p(x_j)/q(x_j)); at the first rejection a token is drawn from norm(max(0, p − q)) and the round ends; if all
# k pass, a bonus token comes from p. Whatever q is, the emitted tokens follow p: the accepted part contributes
# min(p, q) to each token's probability and the residual adds exactly the missing p − min(p, q). The acceptance
# rate of a position is α = Σ_x min(p(x), q(x)) = 1 − TV(p, q).

# %%
target, draft = S.osd_models()
A, B = S.languages()
n = 4000
prompts = torch.full((n, 1), A.bos, dtype=torch.long)
toks, stats = S.speculative_generate(target, draft, prompts, 4, 4, torch.Generator().manual_seed(SEED), forbid=A.bos)
with torch.no_grad():
    p_first = S._probs(target, prompts[:1], A.bos)[0, -1, :A.vocab]
emp_spec = torch.bincount(toks[:, 1], minlength=A.vocab).double() / n
plain = sample_continuations(draft, prompts, 2, torch.Generator().manual_seed(SEED), forbid=A.bos)
emp_draft = torch.bincount(plain[:, 1], minlength=A.vocab).double() / n
tv_spec = float(0.5 * (emp_spec - p_first.double()).abs().sum())
tv_draft = float(0.5 * (emp_draft - p_first.double()).abs().sum())
print(f"TV(first token, target): speculative {tv_spec:.3f}, draft alone {tv_draft:.3f}")
print(S.round_summary(stats, 4))
assert tv_spec < tv_draft, f"speculative decoding should be closer to the target than the draft ({tv_spec}, {tv_draft})"

# %% [markdown]
# ## 2. On-policy distillation (gkd)
#
# `gkd` draws u ~ U(0, 1) each step: if u < λ the continuations after the first 4 ids are sampled by the student
# itself (no gradient through the sampling), else the dataset's are kept; the loss is a token-level divergence
# between teacher and student over the continuation positions. The shipped curves (5 seeds, 200 steps of batch 16,
# 16 training sequences as the prompt set) compare λ = 0, 0.5 and 1:

# %%
SETTING = "16 prompts, batch 16 (claim)"
curves = shipped["gkd_curves"].query("setting == @SETTING").drop(columns="setting")
own = shipped["gkd"].query("setting == @SETTING")
print(own.groupby("lmbda")[["kl_true", "kl_own"]].agg(["mean", "std"]).round(4))
vlm.gkd_figure(curves).show()

# %%
m = gkd("kd/language/teacher", "language", {"steps": GKD_STEPS, "batch": 16, "lr": 1e-2, "lmbda": 0.5,
                                             "divergence": "forward_kl", "n_train": 16}, seed=SEED)
for _ in lab.train(m):
    pass
kl_true_live = m.evaluate()["kl_truth"]
kl_own_live = kl_on_samples(m.student, m.task.language, n=256, prompt_len=4, seed=SEED)
print(f"λ = 0.5 after {GKD_STEPS} steps: KL on true sequences {kl_true_live:.4f}, on own samples {kl_own_live:.4f}")

# %% [markdown]
# ## 3. Teacher hacking
#
# Oracle = a 16-token hidden-Markov language; teacher = a TinyLM trained on only 512 oracle sequences (so it has
# flaws); student = a smaller TinyLM distilled from the teacher with forward KL. Offline: 64 teacher samples reused
# for 125 epochs; online: fresh teacher (or student) samples every step. Proxy = KL(teacher || student), golden =
# KL(oracle || student), both on held-out oracle sequences.

# %%
hack = shipped["hacking"]
print(H.hacking_summary(hack).round(4))
vlm.hacking_figure(P.hacking_curves(hack)).show()
vlm.proxy_golden_figure(P.proxy_golden(hack)).show()
vlm.loglog_figure(P.hacking_loglog(hack)).show()

# %% [markdown]
# ## 4. Online speculative decoding on a shifting stream
#
# The stream's prompts come from language A for the first quarter, then B's share rises linearly to 1. The target
# knows both languages; the draft was distilled on A only. `osd_stream` serves the requests 8 at a time with
# speculative decoding; the online draft takes two optimiser steps of forward KL to the target on each group's
# sequences, the frozen draft none.

# %%
runs = {on: S.osd_stream({"requests": REQUESTS, "online": on}, seed=SEED, models=(target, draft))
        for on in (False, True)}
for on, r in runs.items():
    g = r["groups"]
    q = max(1, len(g) // 4)
    print(f"{'online' if on else 'frozen'}: α first quarter {g.alpha.iloc[:q].mean():.3f}, last quarter "
          f"{g.alpha.iloc[-q:].mean():.3f}; tokens per target call {g.tokens_per_call.iloc[-q:].mean():.2f}")
groups = P.rolling_acceptance(pd.concat([r["groups"].assign(run="online" if on else "frozen") for on, r in runs.items()]))
vlm.acceptance_figure(groups).show()
vlm.side_by_side_figure(P.next_token_side_by_side(runs[True]["dist"])).show()

# %% [markdown]
# ### Exercise 12.1: Exact with any draft
#
# **Find:** whether speculative decoding stays exact when the draft is a badly wrong model. Build an untrained
# draft (`torch.manual_seed(1); bad = lab.nets.classifiers.TinyLM(**S.DRAFT_SPEC).eval()`), generate ONE token after
# BOS for 20,000 prompts with `S.speculative_generate(target, bad, ...)` (k = 2), and measure the total variation
# between the emitted tokens' frequencies and the target's exact `p_first`, and between the untrained draft's own
# next-token distribution after BOS and `p_first`.
#
# **Check:** the emitted tokens are within 0.03 of the target in total variation while the untrained draft's own distribution is more than 0.2 from it

# %%
import workshop

tv_emitted = ...  # your code: TV(frequencies of speculative decoding with the untrained draft, p_first)
tv_bad_draft = ...  # your code: TV(the untrained draft's distribution after BOS, p_first)
workshop.check("12.1", tv_emitted=tv_emitted, tv_bad_draft=tv_bad_draft)

# %% [markdown]
# ### Exercise 12.2: On-policy or off-policy
#
# **Find:** how the share λ of on-policy steps changes the student's KL to the truth on its own samples. Train two
# `gkd` students for 200 steps (batch 16, lr 1e-2, forward KL, `n_train` 16, seed `SEED`) with λ = 0 and λ = 1, and
# measure `kl_on_samples(student, language, n=256, prompt_len=4, seed=SEED)` for each.
#
# **Check:** the on-policy student (λ = 1) is closer to the truth on its own samples than the off-policy one (λ = 0)

# %%
kl_own_off = ...  # your code: λ = 0
kl_own_on = ...   # your code: λ = 1
workshop.check("12.2", kl_own_off=kl_own_off, kl_own_on=kl_own_on)

# %% [markdown]
# ### Exercise 12.3: A smaller offline dataset
#
# **Find:** what a smaller fixed dataset does to teacher hacking. Run `H.run_regime("offline", SEED, ...)` for 300
# steps (`own_n=0, eval_n=128`) with `offline_data=16` and with `offline_data=64`, and read each run's golden rise
# (end minus minimum) from `H.hacking_summary`.
#
# **Check:** the golden distance rises further above its minimum with 16 offline sequences than with 64

# %%
rise_16 = ...  # your code
rise_64 = ...  # your code
workshop.check("12.3", rise_16=rise_16, rise_64=rise_64)

# %% [markdown]
# ### Exercise 12.4: Another divergence for the draft
#
# **Find:** whether distilling the draft online with reverse KL also recovers the acceptance after the shift. Run
# `S.osd_stream({"requests": REQUESTS, "divergence": "reverse_kl"}, seed=SEED, models=(target, draft))` and read the
# held-out α on B at the end (`evals` rows with `source == "B"`, last one); compare with the frozen run's in `runs`.
#
# **Check:** the reverse-KL draft's held-out α on B ends more than 0.1 above the frozen draft's

# %%
alpha_b_reverse = ...  # your code
alpha_b_frozen = ...   # your code: from runs[False]["evals"]
workshop.check("12.4", alpha_b_reverse=alpha_b_reverse, alpha_b_frozen=alpha_b_frozen)

# %% [markdown]
# ## Recap
#
# - Speculative sampling's accept/reject rule makes the output follow the target exactly with any draft; the draft
#   only decides how many tokens each target call yields (α = Σ min(p, q) per position).
# - `gkd` trains on the student's own sequences with the teacher labelling every position. With a scarce prompt set
#   the on-policy student ends closer to the truth, on its own samples and on true-language sequences; with the
#   whole training set λ makes no difference at this scale.
# - With a small fixed offline dataset the student's distance to the teacher keeps falling while its distance to the
#   oracle turns back up: teacher hacking. Fresh samples end closer to the oracle (at this scale the online golden
#   also rises a little, because the student here is smoother than its flawed teacher).
# - A draft distilled online on the query stream tracks a shift in the prompts; a frozen one loses acceptance.
