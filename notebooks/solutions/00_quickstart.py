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
# # Solutions of 00 · Quickstart
#
# Run these cells in the same kernel right after the notebook `00_quickstart`: they use its variables
# (`teacher`, `students`, `m1`, `fresh`, `swd`, `floor`, `N`, `SEED`).

# %% [markdown]
# ## Solution 00.1
#
# Measure the teacher at 1, 2, 4, 8, ... steps and stop at the first NFE within 1.5 times the floor. One step lands
# on the posterior mean, two steps are still blurry; four are enough on 8 Gaussians.

# %%
import workshop

by_nfe = {k: swd(teacher.sample(N, nfe=k, seed=SEED).x) for k in (1, 2, 4, 8, 16)}
nfe = next(k for k in (2, 4, 8, 16) if by_nfe[k] <= 1.5 * floor)
print({k: round(v, 3) for k, v in by_nfe.items()}, "-> NFE", nfe)
workshop.check("00.1", nfe=nfe, swd_at_nfe=by_nfe[nfe], swd_at_half=by_nfe[nfe // 2], floor=floor)

# %% [markdown]
# ## Solution 00.2
#
# The zoo consistency student at 1 step is near the noise floor. The teacher at 2 steps is still about three times
# farther from the data; at 4 steps it is as close as the student. So one student call replaces about four teacher
# calls on this easy distribution.

# %%
student_1 = swd(students["consistency"].sample(N, nfe=1, seed=SEED).x)
beaten = max(k for k in (1, 2, 4, 8) if by_nfe[k] > 2 * student_1)
print(f"the 1-step student ({student_1:.3f}) beats the teacher by 2x up to {beaten} steps")
workshop.check("00.2", student_1=student_1, teacher_at_nfe=by_nfe[beaten], teacher_at_double=by_nfe[2 * beaten])

# %% [markdown]
# ## Solution 00.3
#
# The untrained method's student is a copy of the teacher, so its 1-step samples are the teacher's blurry 1-step
# samples. A short consistency run already pulls the 1-step samples a good part of the way to the modes (the 600-step
# workshop run gets close to the noise floor).

# %%
trained_1 = swd(m1.generator().sample(N, nfe=1, seed=SEED).x)
untrained_1 = swd(fresh.generator().sample(N, nfe=1, seed=SEED).x)
workshop.check("00.3", trained_1=trained_1, untrained_1=untrained_1)
