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
# # Solutions of 08 · Data-free and guidance
#
# Run these cells in the notebook's kernel, after the notebook: they use its variables (`students`, `teacher`, `ref`,
# `summary`, `msd`, `source`, `N`, `SEED`).

# %% [markdown]
# ## Solution 08.1
#
# The teacher's one-step sample is its x̂0 prediction at pure noise: the mean of the data, a blob at the centre, far
# from all eight modes. The flow map learnt the jump from t = 1 to 0 without seeing a data point, only the teacher's
# velocities at its own states, and lands on the modes.

# %%
import torch

import workshop
from lab.metrics import sliced_wasserstein

z = lab.diffusion.make_noise(N, 2, seed=SEED)
swd_flowmap_1 = sliced_wasserstein(students["flowmap"].sample(z=z, nfe=1, seed=SEED).x, ref)
swd_teacher_1 = sliced_wasserstein(teacher.sample(z=z, nfe=1, seed=SEED).x, ref)
workshop.check("08.1", swd_flowmap_1=swd_flowmap_1, swd_teacher_1=swd_teacher_1)

# %% [markdown]
# ## Solution 08.2
#
# Guidance pulls every sample towards where the label is most likely: each class contracts towards its centre as w
# grows, and the distilled student reproduces that with one pass per step.

# %%
rows = summary[summary.model == "student"].set_index("w")
spread_w1, spread_w4 = float(rows.loc[1.0, "spread"]), float(rows.loc[4.0, "spread"])
workshop.check("08.2", spread_w1=spread_w1, spread_w4=spread_w4)

# %% [markdown]
# ## Solution 08.3
#
# Student k only knows its own classes by their local index (0 or 1). Shifted by one, the router hands class y's
# local index to the next student, which draws the matching class of *its* pair: every sample lands two modes away.

# %%
y = torch.arange(N) % 8
z = lab.diffusion.make_noise(N, 2, seed=SEED)


def own_mode_share(gen):
    x = gen.sample(z=z, y=y, nfe=1).x
    nearest = torch.cdist(x, source.gmm.means.to(x.dtype)).argmin(1)
    return float((nearest == y).float().mean())


shifted = type(msd)(msd.students, [(k + 1) % 4 for k in msd.route], msd.local)
own_mode_true, own_mode_shifted = own_mode_share(msd), own_mode_share(shifted)
workshop.check("08.3", own_mode_true=own_mode_true, own_mode_shifted=own_mode_shifted)
