# ---
# jupyter:
#   jupytext:
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
# # Solutions of 12 · Language models
#
# Run these cells in the notebook's kernel, after the notebook: they use its variables (`target`, `draft`, `A`,
# `p_first`, `SEED`, `REQUESTS`, `runs`, `gkd`, `H`, `S`).

# %% [markdown]
# ## Solution 12.1
#
# The accepted part of a round gives each token q(x) min(1, p(x)/q(x)) = min(p(x), q(x)); a rejection happens with
# probability 1 − Σ min(p, q) and then draws from (p − min(p, q)) / (1 − Σ min(p, q)). The two add up to p(x) for
# any q: a bad draft only lowers α (and the tokens per target call), never the exactness.

# %%
import workshop
from lab.nets.classifiers import TinyLM

torch.manual_seed(1)
bad = TinyLM(**S.DRAFT_SPEC).eval()
n_bad = 20000
bos_prompts = torch.full((n_bad, 1), A.bos, dtype=torch.long)
emitted, _ = S.speculative_generate(target, bad, bos_prompts, 1, 2, torch.Generator().manual_seed(SEED), forbid=A.bos)
freq = torch.bincount(emitted[:, 1], minlength=A.vocab).double() / n_bad
with torch.no_grad():
    q_bad = S._probs(bad, bos_prompts[:1], A.bos)[0, -1, :A.vocab].double()
tv_emitted = float(0.5 * (freq - p_first.double()).abs().sum())
tv_bad_draft = float(0.5 * (q_bad - p_first.double()).abs().sum())
workshop.check("12.1", tv_emitted=tv_emitted, tv_bad_draft=tv_bad_draft)

# %% [markdown]
# ## Solution 12.2
#
# With only 16 training sequences the off-policy student sees the same 16 continuations again and again; the
# on-policy student sees fresh sequences from its own distribution every step, labelled at every position by the
# teacher, and those are exactly the states its own samples visit.

# %%
def own_kl(lmbda):
    m = gkd("kd/language/teacher", "language", {"steps": 200, "batch": 16, "lr": 1e-2, "lmbda": lmbda,
                                                 "divergence": "forward_kl", "n_train": 16}, seed=SEED)
    for _ in lab.train(m):
        pass
    return kl_on_samples(m.student, m.task.language, n=256, prompt_len=4, seed=SEED)


kl_own_off, kl_own_on = own_kl(0.0), own_kl(1.0)
workshop.check("12.2", kl_own_off=kl_own_off, kl_own_on=kl_own_on)

# %% [markdown]
# ## Solution 12.3
#
# Fewer sequences reused for more epochs: the student fits the teacher on fewer states, where it also copies the
# teacher's flaws, and its distance to the oracle turns up sooner and further.

# %%
def rise(n_offline):
    d = H.run_regime("offline", SEED, offline_data=n_offline, steps=300, own_n=0, eval_n=128)
    return float(H.hacking_summary(d)["golden_rise"].iloc[0])


rise_16, rise_64 = rise(16), rise(64)
workshop.check("12.3", rise_16=rise_16, rise_64=rise_64)

# %% [markdown]
# ## Solution 12.4
#
# Reverse KL is mode seeking, but on the target's own continuations it still pulls the draft's distributions towards
# the target's on language B, which is what the acceptance rate Σ min(p, q) rewards.

# %%
rev = S.osd_stream({"requests": REQUESTS, "divergence": "reverse_kl"}, seed=SEED, models=(target, draft))
alpha_b_reverse = float(rev["evals"].query("source == 'B'")["alpha"].iloc[-1])
alpha_b_frozen = float(runs[False]["evals"].query("source == 'B'")["alpha"].iloc[-1])
workshop.check("12.4", alpha_b_reverse=alpha_b_reverse, alpha_b_frozen=alpha_b_frozen)
