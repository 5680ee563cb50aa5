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
# # Solutions of 01 · Knowledge distillation basics
#
# Run these cells in the same kernel right after the notebook `01_kd_basics`: they use its variables
# (`sweep`, `t_logits`, `task`, `students`, `z_kd`, `ece_raw`, `cal`).

# %% [markdown]
# ## Solution 01.1
#
# Walk up the sweep to the first temperature with at least 20% non-argmax mass. The teacher is nearly one-hot at
# T = 1 and 2; the Hinton default T = 4 is the first that carries a fair share of dark knowledge.

# %%
import workshop

s = sweep.sort_values("temperature").reset_index(drop=True)
k = int(s.index[s["non_argmax_mass"] >= 0.2][0])
print(f"T = {s.temperature[k]:g}: non-argmax mass {s.non_argmax_mass[k]:.3f} "
      f"(T = {s.temperature[k - 1]:g}: {s.non_argmax_mass[k - 1]:.3f})")
workshop.check("01.1", mass_at_T=float(s.non_argmax_mass[k]), mass_at_lower=float(s.non_argmax_mass[k - 1]))

# %% [markdown]
# ## Solution 01.2
#
# Average the soft labels of the test 3s and take the largest probability outside class 3.

# %%
soft_mean = cal.soft_labels(t_logits[task.y_test == 3], temperature=4).mean(0)
others = soft_mean.clone()
others[3] = -1.0
similar = int(others.argmax())
print(f"a 3 looks most like a {similar} ({float(soft_mean[similar]):.3f} of the mass at T = 4)")
workshop.check("01.2", similar=similar, soft_mean=[round(p, 4) for p in soft_mean.tolist()])

# %% [markdown]
# ## Solution 01.3
#
# The kd student is trained to reproduce the teacher's whole distribution, so it also copies the teacher's mistakes:
# its agreement with the teacher is higher than the scratch student's (and higher than its own accuracy).

# %%
agree = {k: cal.agreement(task.logits(net, task.x_test), t_logits) for k, net in students.items()}
print({k: round(v, 3) for k, v in agree.items()})
workshop.check("01.3", agree_kd=agree["kd"], agree_scratch=agree["scratch"])

# %% [markdown]
# ## Solution 01.4
#
# Sweep temperatures around 1 and keep the one with the lowest ECE. Which side of 1 wins says whether the student
# is over-confident (T > 1) or under-confident (T < 1); a student trained on T = 4 soft labels often comes out
# under-confident.

# %%
grid = [round(0.5 + 0.05 * i, 2) for i in range(31)]  # 0.5 ... 2.0
eces = {T: cal.ece(z_kd / T, task.y_test) for T in grid if T != 1.0}
temperature = min(eces, key=eces.get)
print(f"best temperature {temperature}: ECE {eces[temperature]:.4f} (T = 1: {ece_raw:.4f})")
workshop.check("01.4", temperature=temperature, ece_scaled=eces[temperature], ece_raw=ece_raw)
