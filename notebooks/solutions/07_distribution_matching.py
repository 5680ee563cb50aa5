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
# # Solutions of 07 · Distribution matching
#
# Run these cells in the notebook's kernel, after the notebook: they use its variables (`fresh_max_diff`, `methods`,
# `dm`, `track`, `coverage`, `NAMES`).

# %% [markdown]
# ## Solution 07.1
#
# The fresh fake score is an exact copy of the teacher, so the difference is zero to the last bit; once it is fitted
# to a trained generator's samples it differs from the teacher wherever the generator's distribution differs from
# the data's.

# %%
import workshop

f1 = dm.score_field(methods["dmd"], t=0.5, n=15)
fitted_max_diff = float((f1.diff_dx ** 2 + f1.diff_dy ** 2).pow(0.5).max())
workshop.check("07.1", fresh_max_diff=fresh_max_diff, fitted_max_diff=fitted_max_diff)

# %% [markdown]
# ## Solution 07.2
#
# At step 0 the fake score is the teacher, far from the score of the collapsed one-step samples; its denoising
# updates on those samples pull it towards their true score, fastest where t is small.

# %%
e = track[track.t == 0.2].sort_values("it").error_eps
error_first, error_last = float(e.iloc[0]), float(e.iloc[-1])
workshop.check("07.2", error_first=error_first, error_last=error_last)

# %% [markdown]
# ## Solution 07.3
#
# The teacher at one step gives the mean of the data (notebook 05), near no mode; every distilled one-step student
# puts most of its samples on the modes and covers all of them.

# %%
student_high_quality = coverage.loc[NAMES, "high_quality"].to_dict()
student_modes = coverage.loc[NAMES, "modes_covered"].to_dict()
teacher_high_quality = float(coverage.loc["teacher @1", "high_quality"])
workshop.check("07.3", student_high_quality=student_high_quality, student_modes=student_modes,
               teacher_high_quality=teacher_high_quality)
