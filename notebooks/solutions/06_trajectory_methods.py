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
# # Solutions of 06 · Trajectory methods
#
# Run these cells in the notebook's kernel, after the notebook: they use its variables (`teacher`, `students`,
# `views`, `source`, `SEED`, `N`, `boundary_gaps`, `low_density_share`).

# %% [markdown]
# ## Solution 06.1
#
# The teacher's paths head for the data mean first and turn late; the reflowed flow was retrained on the teacher's
# own (noise, sample) pairs, so each path is close to the straight line between its two ends.

# %%
import workshop

_, straight = lab.probes.trajectories(teacher, students["reflow"], teacher_nfe=16, student_nfe=16, seed=SEED)
s = straight.set_index("model").straightness
reflow_straightness, teacher_straightness = float(s["student"]), float(s["teacher"])
workshop.check("06.1", reflow_straightness=reflow_straightness, teacher_straightness=teacher_straightness)

# %% [markdown]
# ## Solution 06.2
#
# The loss only ties adjacent grid points together; each link has a small error, and a point at t = 1 reaches the
# data through every link of the grid.

# %%
cg = views["consistency"]["consistency_grid"].data.sort_values("t")
endpoint_first, endpoint_last = float(cg.endpoint.iloc[0]), float(cg.endpoint.iloc[-1])
workshop.check("06.2", endpoint_first=endpoint_first, endpoint_last=endpoint_last)

# %% [markdown]
# ## Solution 06.3
#
# With more jumps the student lands on the teacher's path at more boundaries, and each jump is shorter.

# %%
gaps = boundary_gaps(views["shortcut"]["segments"].data["boundaries"]).query("t == 0").set_index("K").gap
gap_1, gap_8 = float(gaps[1]), float(gaps[8])
workshop.check("06.3", gap_1=gap_1, gap_8=gap_8)

# %% [markdown]
# ## Solution 06.4
#
# Consistency alone leaves a trail of samples between modes at one step (the path map is hard to learn where paths
# split); the DMD term pushes the one-step samples towards where the teacher's score says the data is.

# %%
z = lab.diffusion.make_noise(N, 2, seed=99)
scm_between = low_density_share(students["scm"].sample(z=z, nfe=1, seed=SEED).x, source.gmm)
rcm_between = low_density_share(students["rcm"].sample(z=z, nfe=1, seed=SEED).x, source.gmm)
workshop.check("06.4", scm_between=scm_between, rcm_between=rcm_between)
