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
# # Solutions of 04 · Learning without a fixed teacher
#
# Run these cells in the same kernel right after the notebook `04_without_a_fixed_teacher`: they use its variables
# and helpers (`hard_run`, `logits`, `agreement`, `dml`, `scratch`, `ban`, `z`, `fm`, `digits`, `FM_CONFIG`, `SEED`).

# %% [markdown]
# ## Solution 04.1
#
# The notebook's `scratch` student (seed `SEED`) and a second one with another seed are the pair trained apart. The
# DML peers started from different initialisations too, but each was pulled towards the other's predictions all
# along: they agree on several more points in a hundred than the independent pair, at about the same accuracy.

# %%
import workshop

scratch_b = hard_run("scratch", seed=SEED + 100)
agree_dml = agreement(logits(dml.peers[0]), logits(dml.peers[1]))
agree_scratch = agreement(logits(scratch.student), logits(scratch_b.student))
print(f"agreement: dml peers {agree_dml:.3f}, two scratch students {agree_scratch:.3f}")
workshop.check("04.1", agree_dml=agree_dml, agree_scratch=agree_scratch)

# %% [markdown]
# ## Solution 04.2
#
# Generation 0 was trained from the labels for `ban.boundaries()[0]` steps; an independent network of the same
# architecture, trained the same way with another seed, is the baseline. It agrees with generation 0 noticeably less
# often than generation 1, which was distilled from it.

# %%
independent = hard_run("scratch", steps=ban.boundaries()[0], seed=SEED + 100)
agree_gen1 = agreement(z["gen 1"], z["gen 0"])
agree_independent = agreement(logits(independent.student), z["gen 0"])
print(f"agreement with generation 0: generation 1 {agree_gen1:.3f}, an independent network {agree_independent:.3f}")
workshop.check("04.2", agree_gen1=agree_gen1, agree_independent=agree_independent)

# %% [markdown]
# ## Solution 04.3
#
# With independent views the teacher's target belongs to a different image than the one the student sees: the
# target is partly noise, and the student learns the teacher's function much less well. Its agreement with the
# teacher on the clean test digits stays far lower.

# %%
fm_independent = lab.kd.get("function_matching")("kd/digits/teacher", digits, {**FM_CONFIG, "consistent": False},
                                                 seed=SEED)
for _ in lab.train(fm_independent):
    pass
agree_consistent, agree_independent = fm.evaluate()["agree"], fm_independent.evaluate()["agree"]
print(f"agreement with the teacher on the test digits: consistent {agree_consistent:.3f}, "
      f"independent {agree_independent:.3f}")
workshop.check("04.3", agree_consistent=agree_consistent, agree_independent=agree_independent)
