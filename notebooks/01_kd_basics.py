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
# # 01 · Knowledge distillation basics: soft labels, temperature, calibration
#
# Hinton, Vinyals and Dean (2015) train a small **student** on the softened class probabilities of a large
# **teacher**, `softmax(z_T / T)`, instead of (or besides) the one-hot labels. The probabilities of the wrong classes,
# "dark knowledge", say which digits look alike; they carry information the hard label does not. This notebook uses
# the digits task of `lab.kd`: scikit-learn's 8x8 digits (1,437 training and 360 test images), a small CNN teacher
# shipped in `assets/zoo/kd`, and a one-hidden-layer MLP student (32 units). Here distillation makes a *smaller*
# network, not a faster sampler (notebook 00): the teacher is run once per training input and never at test time.
#
# **Learning goals.** After this notebook you can:
# 1. read a teacher's soft labels at any temperature and measure how much dark knowledge they carry;
# 2. train a `kd` student against a `scratch` student at equal compute and say when KD helps (scarce labels);
# 3. measure calibration with the expected calibration error (ECE) and a reliability diagram;
# 4. recalibrate a model by temperature scaling.
#
# **In the app:** [kd against scratch with 200 labels](http://localhost:8501/Knowledge_distillation?task=digits&method=kd&n_train=200&steps=1000) ·
# [the same with all 1,437 labels](http://localhost:8501/Knowledge_distillation?task=digits&method=kd&n_train=0&steps=1000)
# (the page trains both live; below it, where the student and the teacher disagree).

# %% tags=["parameters"]
FAST = False  # True: the test suite's quick mode (one seed); False: the workshop run (three seeds)

# %%
import pandas as pd
import plotly.express as px
import torch

import lab
import lab.probes.kd as kdprobe
import lab.viz.kd as kdviz
import workshop
from lab.probes import calibration as cal
from lab.viz import calibration as calviz

torch.set_num_threads(1)  # toy sizes: one thread is as fast and leaves the other core free
SEED = 0
SEEDS = (0,) if FAST else (0, 1, 2)  # KD against scratch is repeated over these seeds
STEPS = 1000                         # the kd benchmark's setting (lab.kd.base.SCARCE_LABELS)

# %% [markdown]
# ## 1. The teacher and its dark knowledge
#
# `lab.kd.load_teacher` reads the shipped teacher (no training, nothing downloaded). The task object holds the data
# and evaluates any network on it.

# %%
task = lab.kd.get_task("digits")
teacher = lab.kd.load_teacher("kd/digits/teacher")
print(task)
print("teacher:", teacher.spec(), "| test:", {k: round(v, 4) for k, v in task.evaluate(teacher).items()})
t_logits = task.logits(teacher, task.x_test)

# %% [markdown]
# At T = 1 the teacher is almost one-hot. Raising the temperature spreads mass onto the other classes; the mass on
# the non-argmax classes is what the student can learn beyond the label. `temperature_sweep` measures it.

# %%
sweep = cal.temperature_sweep(t_logits, temperatures=(1, 2, 4, 8, 16))
display(sweep.round(3))
calviz.temperature_sweep_figure(sweep).show()
assert sweep["entropy"].is_monotonic_increasing, "a higher temperature must give softer (higher-entropy) labels"

# %%
i = int(torch.nonzero(task.y_test == 3)[0])  # a test "3"
soft = pd.DataFrame({f"T={T}": cal.soft_labels(t_logits[i:i + 1], temperature=T)[0].numpy() for T in (1, 4)})
px.bar(soft, barmode="group", title="Teacher's soft labels for one test '3'",
       labels={"index": "class", "value": "probability"}).show()

# %% [markdown]
# Which classes are hard for the teacher? The per-class entropy of its soft labels:

# %%
ent = cal.entropy_per_class(t_logits, task.y_test, temperature=4.0)
px.bar(ent, x="class", y="entropy", title="Teacher entropy per true class (T = 4)").show()

# %% [markdown]
# ### Exercise 01.1: how hot must the labels be?
#
# **Find:** the lowest temperature of the sweep at which the teacher's soft labels carry at least 20% of their mass
# on the non-argmax classes (the `non_argmax_mass` column of `sweep`).
#
# **Check:** the non-argmax mass is at least 0.2 at your temperature and below 0.2 at the next lower temperature of the sweep

# %%
mass_at_T = None      # sweep's non_argmax_mass at your temperature
mass_at_lower = None  # ... at the next lower temperature of the sweep
workshop.check("01.1", mass_at_T=mass_at_T, mass_at_lower=mass_at_lower)

# %% [markdown]
# ### Exercise 01.2: what does a 3 look like?
#
# **Find:** which digit the teacher thinks a 3 looks most like (dark knowledge). Average the T = 4 soft labels
# (`cal.soft_labels(t_logits, temperature=4)`) over the test images whose label is 3.
#
# **Check:** your digit has the largest mean soft-label probability (T = 4) over the test 3s among the classes other than 3

# %%
soft_mean = None  # 10 numbers: the mean soft label of the test 3s
similar = None    # your digit
workshop.check("01.2", similar=similar, soft_mean=soft_mean)

# %% [markdown]
# ## 2. KD against scratch, at equal compute
#
# `kd` minimises `0.1·CE(y) + 0.9·T²·KL(p_T ‖ q_S)` at T = 4; `scratch` is the same student, steps, batch and
# optimiser with the cross-entropy alone. With all 1,437 labelled digits this student reaches about the same accuracy
# either way (see `bench/RESULTS.md`). KD's advantage shows when **labels are scarce**: here the student sees only
# 200 labelled digits (`n_train=200`), as in the paper's experiment that trained on 3% of the data. The teacher's soft
# labels are still computed on those 200 digits only: what KD adds is information *per example*.

# %%
for name in ("scratch", "kd"):
    print(f"{name}: {lab.kd.get(name).mechanism}")
runs = {}
for seed in SEEDS:
    for name in ("scratch", "kd"):
        m = lab.kd.get(name)("kd/digits/teacher" if name == "kd" else None, task,
                             {"steps": STEPS, "n_train": 200}, seed=seed)
        for _ in lab.train(m):
            pass
        runs[f"{name} s{seed}"] = m
kdviz.run_comparison_figure(kdprobe.history_table(runs), title="Test metrics during training (200 labels)").show()
table = kdprobe.compare_runs(runs)
display(table[["method", "last_acc", "last_nll", "last_ece"]].round(4))

# %%
acc = table.groupby("method")["last_acc"].mean()
print(f"mean last test accuracy over {len(SEEDS)} seed(s): kd {acc['kd']:.3f}, scratch {acc['scratch']:.3f}")
assert acc["kd"] > acc["scratch"], "with 200 labels the KD student should beat the same student trained from scratch"

# %% [markdown]
# One seed is an anecdote; the claim test (`tests/test_claims_kd_logits.py`) and the benchmark (`bench/kd.py`) average
# over seeds and compare against scratch measured in the same run. Early in training (the first evaluations above)
# scratch is often ahead: the KD target at T = 4 is soft, and the student takes longer to become confident.
#
# **Where do they disagree?** `disagreements` lists every test digit with each student's and the teacher's
# prediction; `confusion` counts (teacher prediction, student prediction) pairs. The diagonal (agreement) is blank.

# %%
students = {"kd": runs[f"kd s{SEED}"].student, "scratch": runs[f"scratch s{SEED}"].student}
dis = kdprobe.disagreements(teacher, students, task)
display(kdprobe.disagreement_summary(dis).round(3))
kdviz.confusion_heatmap(kdprobe.confusion(dis, "kd"), title="Teacher vs the kd student").show()

# %% [markdown]
# ### Exercise 01.3: who copies the teacher?
#
# **Find:** which student copies the teacher's decisions more often. `cal.agreement(student_logits, t_logits)` is the
# share of test digits on which both predict the same class (`task.logits(net, task.x_test)` gives the logits).
#
# **Check:** the kd student's top-1 agreement with the teacher is above the scratch student's

# %%
agree_kd = None       # agreement of students["kd"] with the teacher
agree_scratch = None  # agreement of students["scratch"] with the teacher
workshop.check("01.3", agree_kd=agree_kd, agree_scratch=agree_scratch)

# %% [markdown]
# ## 3. Calibration
#
# A model is **calibrated** when its confidence matches its accuracy: of the digits it predicts with 80% confidence,
# 80% are right. A reliability diagram bins the test predictions by their top-1 confidence and plots each bin's
# accuracy (calibrated = on the diagonal). The ECE is the count-weighted gap between confidence and accuracy.

# %%
tables = kdprobe.reliability_tables({k: runs[f"{k} s{SEED}"] for k in ("kd", "scratch")}, n_bins=10)
calviz.reliability_figure(tables).show()
for k, z in {"teacher": t_logits, **{s: task.logits(net, task.x_test) for s, net in students.items()}}.items():
    print(f"{k:8s} ECE {cal.ece(z, task.y_test):.4f}  accuracy {float((z.argmax(1) == task.y_test).float().mean()):.3f}")

# %% [markdown]
# Bars below the diagonal mean over-confidence, above it under-confidence. **Temperature scaling** (Guo et al. 2017)
# divides the logits by one number T fitted after training: T > 1 softens an over-confident model, T < 1 sharpens an
# under-confident one. It never changes the predicted class, so the accuracy stays the same.
#
# ### Exercise 01.4: temperature scaling
#
# **Find:** a temperature that calibrates the KD student better (temperature scaling). Try a few values on both sides
# of 1 with `cal.ece(z_kd / temperature, task.y_test)`.
#
# **Check:** the KD student's ECE with its logits divided by your temperature is below its ECE at T = 1

# %%
z_kd = task.logits(students["kd"], task.x_test)
temperature = None  # your temperature
ece_raw = cal.ece(z_kd, task.y_test)
ece_scaled = None   # cal.ece(z_kd / temperature, task.y_test)
workshop.check("01.4", temperature=temperature, ece_scaled=ece_scaled, ece_raw=ece_raw)

# %% [markdown]
# ## Recap
#
# - Soft labels `softmax(z_T / T)` carry the teacher's view of which classes look alike; the temperature sets how
#   much of that dark knowledge reaches the student.
# - With scarce labels (200 digits) `kd` beats `scratch` at equal compute; with all labels this small student gains
#   little.
# - A KD student agrees with its teacher more often than a student trained on the labels alone.
# - ECE and the reliability diagram measure calibration; temperature scaling fixes it without changing accuracy.
