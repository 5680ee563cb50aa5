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
# # 06 · Trajectory methods: progressive, consistency, TSCD, sCM and rCM, shortcut, reflow
#
# A flow teacher samples by integrating an ODE from noise (t = 1) to data (t = 0) along curved paths (notebook 05).
# The **trajectory** family distils the *map* that this ODE defines, so that a student jumps along a trajectory in
# one or a few steps instead of crawling along it. The methods differ in what they regress the student to: two
# teacher steps (progressive), the path's origin from any point on it (consistency, TSCD, sCM, rCM), a step of a given
# size (shortcut), or a straightened flow (reflow). This notebook loads the seven shipped students, opens each
# method up with `lab.probes.inside`, and measures what each one buys.
#
# **Learning goals.** After this notebook you can:
# 1. say what each trajectory method regresses its student to, and draw that target with `lab.probes.targets`;
# 2. rebuild a zoo student's method (`lab.probes.inside`) and read its own internal view (halving schedule,
#    consistency grid, segment boundaries, sCM tangent, reflowed paths);
# 3. measure the straightness of sampling paths and explain why reflow makes a few Euler steps enough;
# 4. compare few-step students with the teacher at the same NFE, and see what rCM's DMD term adds to sCM.
#
# **In the app:** the students side by side, with the inside view of one
# ([Generators](http://localhost:8501/Generators?dist=8gaussians&students=consistency&students=tscd&students=shortcut&students=reflow&inside=consistency)),
# the segment jumps of TSCD ([Generators, tscd](http://localhost:8501/Generators?dist=8gaussians&students=tscd&inside=tscd&traj=tscd)),
# and sCM distilled live ([Distill live, scm](http://localhost:8501/Distill_live?dist=8gaussians&method=scm)).

# %% tags=["parameters"]
FAST = False  # the test suite sets FAST = True: fewer points and fitting steps, same lessons

# %%
import pandas as pd
import torch

import lab
import lab.probes
import lab.viz
from lab.metrics import low_density_share
from lab.probes.inside import inside_views, rebuild_method
from lab.probes.quality import quality_curves
from lab.probes.segments import boundary_gaps
from lab.viz.inside import view_figure
from lab.viz.quality import quality_vs_nfe_figure

torch.set_num_threads(1)  # toy networks: one thread is as fast, and kind to a shared laptop
SEED = 0
DATA = "toy2d:8gaussians"
N = 500 if FAST else 2000    # points per distance
FIT = 20 if FAST else 200     # steps fitting a method's auxiliary nets (sCM's adaptive weight) against the student
NP = 256 if FAST else 512     # points per internal probe
source = lab.data.toy2d.get("8gaussians")
teacher = lab.zoo.load("toy2d/8gaussians/teacher")
NAMES = ["progressive", "consistency", "tscd", "scm", "rcm", "shortcut", "reflow"]
students = {name: lab.zoo.load(f"toy2d/8gaussians/{name}") for name in NAMES}
pd.DataFrame([{"method": name, "paper": lab.get_method(name).paper, "mechanism": lab.get_method(name).mechanism,
               "native NFE": students[name].native_nfe} for name in NAMES]).set_index("method")

# %% [markdown]
# | method | the student learns | supervised by |
# |---|---|---|
# | `progressive` (Salimans & Ho 2022) | one step = two teacher DDIM steps | rounds that halve the step count: 64 → 32 → … → 2 |
# | `consistency` (Song et al. 2023) | f(x_t, t) = the path's origin x0, from any t | two **adjacent** points of a teacher path must map to the same origin (EMA target) |
# | `tscd` (Hyper-SD, TCD) | f(x_t, t) = the start of x_t's **segment** | consistency inside K time segments; K jumps to sample |
# | `scm` (Lu & Song 2025) | the consistency f, in TrigFlow time | the **continuous-time** limit: df/dt along the teacher's ODE driven to zero (a JVP) |
# | `rcm` (Zheng et al. 2025) | the same f | sCM plus a DMD reverse-divergence term on its one-step samples (notebook 07) |
# | `shortcut` (Frans et al. 2024) | the average velocity over a step of size d | a 2d step equals two d steps; the smallest d copies the teacher |
# | `reflow` (Liu et al. 2023) | a new flow on (noise, teacher sample) pairs | its paths are straight; then a one-step map is distilled from it |
#
# ## 1. One model, few steps
#
# All students start from the same noise as the teacher, at each step count they were trained for. The teacher at
# the same NFE is the baseline; the teacher's own 50-step distance is the target.

# %%
qc = quality_curves(teacher, students, DATA, nfes=(1, 2, 4), teacher_nfes=(1, 2, 4, 50) if FAST else (1, 2, 4, 8, 16, 50),
                    n=N, seed=SEED, repeats=1)
quality_vs_nfe_figure(qc).show()
qc.pivot(index="nfe", columns="model", values="quality").round(3)

# %%
q = qc.set_index(["model", "nfe"]).quality
best_at_2 = min(q[m, 2] for m in NAMES if (m, 2) in q.index)
assert best_at_2 < q["teacher", 2], f"no student at 2 NFE ({best_at_2:.3f}) beats the teacher at 2 NFE ({q['teacher', 2]:.3f})"
print(f"at 2 NFE: best student {best_at_2:.3f}, teacher {q['teacher', 2]:.3f}; teacher at 50 NFE {q['teacher', 50]:.3f}")

# %% [markdown]
# ## 2. Open each method up
#
# A zoo student carries its recipe in its model card. `rebuild_method` builds the method again from it, loads the
# saved weights into the method's student, and fits the networks the method trains *besides* the student (sCM's
# adaptive-weight head, rCM's fake score) against the frozen student. `inside_views` then computes that method's
# own views; `view_figure` draws each one, and every view carries a caption saying what to look for.

# %%
methods = {name: rebuild_method(students[name], fit_steps=FIT, seed=SEED) for name in NAMES}
views = {name: {v.kind: v for v in inside_views(students[name], method=methods[name], n=NP, seed=SEED)}
         for name in NAMES}
pd.DataFrame([{"method": name, "views": ", ".join(views[name])} for name in NAMES]).set_index("method")

# %% [markdown]
# ## 3. What does each regress to?
#
# `lab.probes.targets(method, t)` returns, at points x_t, the teacher's own one-jump prediction and the method's
# regression target. Progressive and consistency regress to a clean-sample estimate (x0 space): the blue arrows are
# the teacher's one-jump x̂0 (the blurry posterior mean, notebook 05), the green ones where the method says the path
# through x_t really ends. The shortcut model regresses to a *velocity* for a step of size d: the average of two
# half steps.

# %%
for name in ("progressive", "consistency", "shortcut"):
    tg = lab.probes.targets(methods[name], t=0.6, n=144 if FAST else 225)
    lab.viz.targets_figure(tg, title=f"{name}: targets at t = 0.6 ({tg['space'].iloc[0]} space)").show()

# %% [markdown]
# ## 4. Each method's own view
#
# **progressive**: its halving schedule. Each round trains the student to take one step where the round before took
# two; the saved student is the last round's (2 steps).

# %%
view_figure(views["progressive"]["schedule"]).show()

# %% [markdown]
# **consistency**: the student on the time grid it was trained on. Along one teacher path per noise, the gap between
# its outputs at adjacent grid points (what its loss drives to zero) and its distance from the path's true end.

# %%
v = views["consistency"]["consistency_grid"]
print(v.caption)
view_figure(v).show()

# %% [markdown]
# **tscd** and **shortcut**: the jumps between segment boundaries, against the teacher's path through the same
# boundaries. TSCD's student only ever jumps to the start of its segment; the shortcut model serves 1, 2, 4 and 8
# jumps with one network.

# %%
for name in ("tscd", "shortcut"):
    view_figure(views[name]["segments"]).show()
boundary_gaps(views["shortcut"]["segments"].data["boundaries"]).query("t == 0")

# %% [markdown]
# **scm** and **rcm**: continuous time has no discretisation step, so the "target" is built from the tangent df/dt,
# computed exactly with a Jacobian-vector product. Its two stabilisers are visible here: the tangent norm before and
# after normalisation (g / (‖g‖ + c) bounds the update where the tangent grows), and the adaptive weight
# e^{-logvar(t)} that rebalances the loss over noise levels (fitted for `FIT` steps against the frozen student).

# %%
for name in ("scm", "rcm"):
    view_figure(views[name]["scm"]).update_layout(title=f"{name}: tangent and adaptive weight").show()

# %% [markdown]
# **reflow**: the reflowed flow's paths against the teacher's from the same noise, 16 Euler steps each.

# %%
v = views["reflow"]["straightness"]
view_figure(v).show()
v.data["summary"]

# %% [markdown]
# Every method also has a **field** view (what it regresses to, as arrows) and a layer-by-layer **CKA** against the
# teacher. Here are all of one student's views; change `WHICH` to open another.

# %%
WHICH = "consistency"
for v in views[WHICH].values():
    view_figure(v).show()

# %% [markdown]
# *Fidelity notes.* The zoo students are distilled from one small MLP teacher on 2D points with short schedules
# (`bench/RESULTS.md` has them at their defaults on four datasets). sCM and rCM wrap the linear-flow teacher in
# TrigFlow time rather than training a TrigFlow teacher; the rebuilt methods' auxiliary nets (sCM's weight head, rCM's
# fake score) are refitted here against the frozen student, not restored from training. Progressive's last round is
# shown with the original teacher as its target (the round's own teacher, the previous student, is not saved).

# %% [markdown]
# ### Exercise 06.1: Straight paths
#
# **Find:** how much straighter reflow's paths are than the teacher's. Use
# `lab.probes.trajectories(teacher, students["reflow"], teacher_nfe=16, student_nfe=16, seed=SEED)`: its second
# result has one row per model with the mean `straightness` (0 = straight).
#
# **Check:** the reflowed paths' mean straightness is below a tenth of the teacher's

# %%
import workshop

reflow_straightness = ...   # your code
teacher_straightness = ...  # your code
workshop.check("06.1", reflow_straightness=reflow_straightness, teacher_straightness=teacher_straightness)

# %% [markdown]
# ### Exercise 06.2: Small inconsistencies add up
#
# **Find:** where on its training grid the consistency student is furthest from the path's end. The data of
# `views["consistency"]["consistency_grid"]` has one row per grid time t with `endpoint` (distance to the path's end).
#
# **Check:** the endpoint error at t = 1 is more than twice the endpoint error at the first grid time

# %%
endpoint_first = ...  # your code: `endpoint` at the smallest t
endpoint_last = ...   # your code: `endpoint` at t = 1
workshop.check("06.2", endpoint_first=endpoint_first, endpoint_last=endpoint_last)

# %% [markdown]
# ### Exercise 06.3: More jumps, smaller gap
#
# **Find:** how the shortcut student's final error depends on the number of jumps K. `boundary_gaps` of its segments
# view gives the gap to the teacher at each boundary; take the rows at t = 0.
#
# **Check:** the shortcut student's final gap with 8 jumps is below its final gap with 1 jump

# %%
gap_1 = ...  # your code
gap_8 = ...  # your code
workshop.check("06.3", gap_1=gap_1, gap_8=gap_8)

# %% [markdown]
# ### Exercise 06.4: What rCM's DMD term adds
#
# **Find:** whether rCM's distribution-matching term pulls one-step samples out of the gaps between modes. Sample
# `scm` and `rcm` at 1 NFE from the same noise and measure `low_density_share(x, source.gmm)` (the share of samples
# far from every mode).
#
# **Check:** rcm's between-modes share at 1 step is below scm's

# %%
scm_between = ...  # your code
rcm_between = ...  # your code
workshop.check("06.4", scm_between=scm_between, rcm_between=rcm_between)

# %% [markdown]
# ## Recap
#
# - Trajectory methods distil the teacher's ODE map: progressive halves the steps, consistency (and TSCD within
#   segments) maps every point of a path to its origin, sCM does so in continuous time with a JVP, shortcut learns
#   steps of any size, reflow straightens the flow itself.
# - `rebuild_method` + `inside_views` open a saved student's method; each view's caption says what to look for.
# - Small consistency errors accumulate towards t = 1: one step from noise collects them all.
# - Straight paths make few steps cheap; rCM's DMD term (notebook 07) fixes what pure consistency leaves between modes.
