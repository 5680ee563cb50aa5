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
# # Solutions of 05 · A diffusion refresher
#
# Run these cells in the notebook's kernel, after the notebook: they use its variables (`proc`, `x0`, `eps`, `N`,
# `qc`, `teacher`, `SEED`).

# %% [markdown]
# ## Solution 05.1
#
# On the linear process v = dx_t/dt = ε − x0, so x_t − t·v = (1 − t) x0 + t ε − t ε + t x0 = x0 exactly: one Euler
# step with the *true* velocity of this pair lands on its data point. The teacher only knows the average velocity
# over all pairs through x_t, which is why its one-step jump is blurry.

# %%
import workshop

t = torch.full((N,), 0.7)
xt = proc.add_noise(x0, eps, t)
v = proc.v_from_x0_eps(t, x0, eps, x0)
recon_error = float((xt - 0.7 * v - x0).abs().max())
wrong_sign_error = float((xt + 0.7 * v - x0).abs().max())
workshop.check("05.1", recon_error=recon_error, wrong_sign_error=wrong_sign_error)

# %% [markdown]
# ## Solution 05.2
#
# Walk the teacher's rows in NFE order and take the first within 1.25x of the 50-step distance.

# %%
teacher_quality = qc[qc.model == "teacher"].set_index("nfe").quality.to_dict()
nfe = min(k for k, v in teacher_quality.items() if v <= 1.25 * teacher_quality[50])
print("the teacher is within 1.25x of its best from", nfe, "NFE")
workshop.check("05.2", nfe=nfe, teacher_quality=teacher_quality)

# %% [markdown]
# ## Solution 05.3
#
# One Euler step from t = 1 is the teacher's x̂0 at pure noise: the average of the data, near the origin for the
# ring of eight Gaussians.

# %%
one_step_radius = float(teacher.sample(N, nfe=1, seed=SEED).x.norm(dim=1).mean())
data_radius = float(x0.norm(dim=1).mean())
print(f"one-step samples: mean radius {one_step_radius:.3f}; data: {data_radius:.3f}")
workshop.check("05.3", one_step_radius=one_step_radius, data_radius=data_radius)
