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
# # 08 · Data-free and guidance: BOOT, flow maps, guidance and multi-student distillation
#
# The methods of notebooks 06 and 07 draw training points from a dataset, or from the teacher's own samples. This
# notebook is about four methods that change *what* is distilled. **BOOT** and **flow maps without data** never touch
# a data point: they start from pure noise, where the teacher is right by construction, and follow the teacher's ODE
# from there, checking themselves against the teacher at their own predictions. **Guidance distillation** folds the
# two network passes of classifier-free guidance into one network that takes the guidance weight as an input.
# **Multi-student distillation** splits the classes among several small one-step students and routes each class to
# its own student. All four run here on 2D points, from students shipped in the zoo.
#
# **Learning goals.** After this notebook you can:
# 1. say how BOOT and a data-free flow map learn from noise alone, and distil one from scratch in a few seconds;
# 2. measure a student's *path error* (its distance from the teacher's ODE path at every time) and tell one long jump
#    from a chain of short ones;
# 3. sweep the guidance weight of a guidance-distilled student and measure what guidance trades away, at half the
#    network passes of the guided teacher;
# 4. explain what a multi-student generator's router does, and show what goes wrong when it routes a class to the
#    wrong student.
#
# **In the app:** the data-free students next to each other, with BOOT's internals:
# [Generators: BOOT and flow map](http://localhost:8501/Generators?dist=8gaussians&students=boot&students=flowmap&inside=boot);
# guidance and multi-student distillation:
# [Generators: guidance and MSD](http://localhost:8501/Generators?dist=8gaussians&students=guidance&students=msd&inside=guidance);
# a flow map distilled live, without data:
# [Distill live: flowmap](http://localhost:8501/Distill_live?dist=8gaussians&method=flowmap).

# %% tags=["parameters"]
FAST = False  # the test suite sets FAST = True: fewer points and training steps, same lessons

# %%
import time

import pandas as pd
import torch

import lab
import lab.probes
import lab.viz
import lab.viz.guidance
import lab.viz.inside
import lab.viz.paths
from lab.metrics import mode_stats, sliced_wasserstein
from lab.probes.guidance import guidance_sweep, student_split
from lab.probes.inside import inside_views
from lab.probes.paths import path_error

torch.set_num_threads(1)  # toy networks: one thread is as fast, and kind to a shared laptop
SEED = 0
DATA = "toy2d:8gaussians"
N = 512 if FAST else 2000              # points per probe
DEMO_STEPS = 80 if FAST else 400       # steps of the short data-free run in section 4
source = lab.data.toy2d.get("8gaussians")
ref = source.sample(4000, 1234)        # fresh data, for distances only
teacher = lab.zoo.load("toy2d/8gaussians/teacher")     # a flow-matching MLP, unconditional
analytic = lab.zoo.load("toy2d/8gaussians/analytic")   # the exact mixture, class-conditional (label = component)
for name in ("boot", "flowmap", "guidance", "msd"):
    M = lab.get_method(name)
    print(f"{name:8s} {M.paper}\n         {M.mechanism}")


def show(views):
    """Draw every internal view of a student, each with its caption."""
    for v in views:
        print(f"— {v.title}: {v.caption}")
        lab.viz.inside.view_figure(v).show()


# %% [markdown]
# ## 1. Distillation without data
#
# Both data-free methods learn a map that starts at the noise z (t = 1), where the teacher's ODE starts and where no
# data is needed, and move down in time:
#
# * **BOOT** (Gu et al. 2023) learns g(z, t), the teacher's ODE state at time t on the path that starts at z. The
#   boundary g(z, 1) = z is known exactly; each training step takes the student's own g(z, t), makes *one* teacher ODE
#   step to t − dt, and regresses g(z, t − dt) onto it (bootstrapping). One-step sampling is g(z, 0).
# * **Flow maps without data** (Tong et al. 2025) learn X(x_t, t, s), a jump from time t to time s. The training
#   states are prior noise or the map's *own* states X(z, 1, t); the condition is that d/ds X equals the teacher's
#   velocity *at the map's output*, so the teacher corrects the map where it actually lands.
#
# Neither `sample_batch` ever calls the data source: the teacher is the only thing they learn from. Below, the zoo's
# students at the step counts they serve (of 1 and 4) against the teacher at 50 steps, all from the same noise; each
# panel's title gives its sliced Wasserstein distance (SWD) to fresh data.

# %%
students = {name: lab.zoo.load(f"toy2d/8gaussians/{name}") for name in ("boot", "flowmap")}
for name, g in students.items():
    print(f"{name:8s} kind {g.kind!r}, native NFE {tuple(g.native_nfe)}, recipe steps "
          f"{g.card['recipe']['config']['steps']}")
panels = lab.probes.sample_panels(teacher, students, source, n=N, student_nfe=(1, 4), seed=SEED)
lab.viz.sample_panels_figure(panels).show()

# %% [markdown]
# ## 2. Path error: following the teacher's path, not only its end
#
# A data-free student is trained along the *whole* path, so it can be checked along the whole path.
# `lab.probes.paths.path_error` runs the teacher's ODE finely from the same noise and, at eight times, measures the
# mean distance of the student's state from the teacher's: `jump` is one evaluation from the noise straight to t
# (BOOT's g(z, t), the flow map's X(z, 1, t)); `chain` (flow maps only) is k short jumps of 1/8 each. The dotted line
# is the teacher's own spread at that time, a scale for the errors.

# %%
paths = {name: path_error(g, teacher, n=N, seed=SEED) for name, g in students.items()}
for name, df in paths.items():
    lab.viz.paths.path_error_figure(df).update_layout(title=f"{name}: distance from the teacher's ODE path").show()
at_end = pd.concat({name: df[df.t == 0].set_index("kind").error for name, df in paths.items()}).unstack()
at_end

# %% [markdown]
# The errors grow as t goes down: every bootstrap link (BOOT) or self-generated state (flow map) adds a little. The
# flow map's chain of short jumps stays closer to the teacher than one long jump: each short jump is an easier map,
# and it starts from where the previous one landed. That is why its samples improve from 1 to 4 steps.

# %%
fm = paths["flowmap"][paths["flowmap"].t == 0].set_index("kind").error
assert fm["chain"] < fm["jump"], f"the flow map's chain ({fm['chain']:.3f}) should end closer than one jump ({fm['jump']:.3f})"
print(f"flow map at t = 0: chain of 8 jumps {fm['chain']:.3f} < one jump {fm['jump']:.3f} (teacher spread "
      f"{paths['flowmap'].teacher_spread.iloc[-1]:.2f})")

# %% [markdown]
# ## 3. Inside BOOT and the flow map
#
# `lab.probes.inside.inside_views(student)` rebuilds the student's method from the recipe in its model card, loads
# the saved weights, and returns the method's own views; `lab.viz.inside.view_figure` draws each one. For these two
# methods: the path error (as above, at the probe's size), the method's own field (what the student is regressed to,
# as arrows) and the teacher-student CKA of their hidden layers.

# %%
for name, g in students.items():
    print(f"=== {name}")
    show(inside_views(g, n=256, seed=SEED))

# %% [markdown]
# ## 4. A short data-free run
#
# BOOT from scratch: at initialisation g(z, t) is one teacher Euler step from z, so g(z, 0) is the teacher's blurry
# one-step sample. A few hundred bootstrap steps, noise only, pull the whole path towards the teacher's.

# %%
boot = lab.get_method("boot")(teacher, DATA, {"steps": DEMO_STEPS, "batch": 256}, seed=SEED)
before = path_error(boot.generator(), teacher, n=N, seed=SEED)
t0 = time.perf_counter()
for _ in lab.distill(boot):
    pass
after = path_error(boot.generator(), teacher, n=N, seed=SEED)
print(f"{boot.it} BOOT steps in {time.perf_counter() - t0:.1f} s")
demo = pd.concat([before.assign(kind="untrained"), after.assign(kind=f"after {boot.it} steps")])
lab.viz.paths.path_error_figure(demo).update_layout(title="BOOT from scratch, no data: path error").show()
e0, e1 = before.error.iloc[-1], after.error.iloc[-1]
assert e1 < e0, f"training should bring g(z, 0) closer to the teacher's endpoint ({e1:.3f} vs {e0:.3f} untrained)"
print(f"one-step error at t = 0: {e0:.3f} untrained -> {e1:.3f} trained (the zoo's 800-step student: "
      f"{paths['boot'].error.iloc[-1]:.3f})")

# %% [markdown]
# ## 5. Guidance distillation
#
# Classifier-free guidance (CFG) samples a class-conditional teacher with the velocity v_u + w (v_c − v_u): the
# unconditional velocity plus w times the pull of the label. w = 0 ignores the label, w = 1 is the plain conditional
# model, w > 1 exaggerates the label, trading variety for fidelity. It costs **two** network passes per step.
# **Guidance distillation** (Meng et al. 2023) trains one student that takes w as an input and regresses the guided
# teacher's velocity at every w in a range: **one** pass per step, any w at sampling time.
#
# The teacher here is the *analytic* mixture, class-conditional (label = mixture component), so its guided velocity is
# exact. `guidance_sweep` samples the guided teacher and the student at the same number of steps, at each w, from the
# same noise and labels; `spread` is the mean radius of each class around its own mean.

# %%
guided_student = lab.zoo.load("toy2d/8gaussians/guidance")
guided_teacher = lab.get_method("guidance")(analytic, DATA, {"n_traj": 64}, seed=SEED).guided_teacher()
summary, samples = guidance_sweep(guided_student, guided_teacher, ws=(0.0, 1.0, 2.0, 4.0), nfe=4, n=N, seed=SEED,
                                  ref_steps=16 if FAST else 32, gmm=source.gmm)
lab.viz.guidance.guidance_sweep_figure(summary, samples).show()
lab.viz.guidance.guidance_sweep_lines(summary, "spread").show()
summary.round(3)

# %% [markdown]
# Both rows tighten as w grows: at w = 0 the label is ignored and the samples fill the whole mixture, from w = 1 each
# class sits on its own mode, and beyond that the classes shrink towards their centres. The student follows the
# guided teacher at half the passes (compare the `swd` columns; its classes are a little wider at the same w). The internal views of the zoo student: the sweep again (from the probe), the
# field it is regressed to and its schedule over training (the w range it saw).

# %%
show(inside_views(guided_student, n=256, seed=SEED))

# %% [markdown]
# ## 6. Multi-student distillation
#
# **MSD** (Song et al. 2024) splits the conditions among K small one-step students: a **router** sends class y to
# student `route[y]`, which knows it by a local index `local[y]`. Each student is trained by regression onto
# **pairs** (z, y, teacher ODE(z | y)) made once from the teacher, and only on the pairs of its own classes; with
# the same total capacity, each student has an easier job. (Fidelity note: the paper trains each student with DMD2's
# distribution matching; the lab uses only its regression term, see the method's docstring.)

# %%
msd = lab.zoo.load("toy2d/8gaussians/msd")
print("route (class -> student):", msd.route, "| local label:", msd.local)
print("parameters per student:", [sum(p.numel() for p in net.parameters()) for net in msd.nets().values()],
      "| training pairs (made once):", msd.card["recipe"]["config"]["n_pairs"], "teacher ODE solutions of",
      msd.card["recipe"]["config"]["pair_steps"], "Heun steps")
split = student_split(msd, n=N, seed=SEED)
lab.viz.guidance.student_split_figure(split).show()
show(inside_views(msd, n=256, seed=SEED))

# %% [markdown]
# ### Exercise 08.1: A student that never saw the data
#
# **Find:** whether a data-free flow map beats the teacher at the same step count. Sample the zoo's `flowmap` student
# and the teacher at one step each, from `N` points of the same noise, and measure each one's
# `sliced_wasserstein` distance to the fresh data `ref`.
#
# **Check:** the flow map's one-step distance to the data is below half the teacher's one-step distance

# %%
import workshop

swd_flowmap_1 = ...  # your code: sliced_wasserstein of students["flowmap"].sample(N, nfe=1, seed=SEED).x to ref
swd_teacher_1 = ...  # your code: the same for the teacher
workshop.check("08.1", swd_flowmap_1=swd_flowmap_1, swd_teacher_1=swd_teacher_1)

# %% [markdown]
# ### Exercise 08.2: What guidance trades away
#
# **Find:** how the guidance weight changes the spread of each class in the distilled student's samples. Read the
# `summary` table of section 5 (the rows with `model == "student"`), or run `guidance_sweep` yourself with other
# weights.
#
# **Check:** the student's class spread at w = 4 is below half its spread at w = 1

# %%
spread_w1 = ...  # your code: the student's spread at w = 1
spread_w4 = ...  # your code: the student's spread at w = 4
workshop.check("08.2", spread_w1=spread_w1, spread_w4=spread_w4)

# %% [markdown]
# ### Exercise 08.3: The router
#
# **Find:** what the multi-student generator's router does. Sample `msd` with labels `y = torch.arange(N) % 8`
# (`msd.sample(z=z, y=y, nfe=1)`), and measure the share of samples whose nearest mode centre (`source.gmm.means`) is
# the mode of their own label. Then build a generator whose route is shifted by one student,
# `type(msd)(msd.students, [(k + 1) % 4 for k in msd.route], msd.local)`, and measure the same share from the same
# noise.
#
# **Check:** the share of samples on their own label's mode is above 0.9 with the true route and below 0.1 with the shifted route

# %%
own_mode_true = ...     # your code: share on their own mode, true route
own_mode_shifted = ...  # your code: the same, shifted route
workshop.check("08.3", own_mode_true=own_mode_true, own_mode_shifted=own_mode_shifted)

# %% [markdown]
# ## Recap
#
# - BOOT and data-free flow maps learn from noise and the teacher alone: they start where the teacher's ODE starts
#   and correct themselves with teacher steps taken at their own predictions.
# - The path error measures a student along the teacher's whole path; for a flow map, a chain of short jumps follows
#   it more closely than one long jump.
# - A guidance-distilled student takes w as an input: one network pass per step instead of the guided teacher's two,
#   with the same trade of class spread (variety) for fidelity as w grows.
# - Multi-student distillation gives each small student a few classes; the router is part of the model, and a wrong
#   route sends every sample to another class's modes.
