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
# # Solutions of 09 · Images
#
# Run these cells in the notebook's kernel, after the notebook: they use its variables (`teacher`, `students`,
# `views`, `pipe`, `export_dir`, `im`, `N_IMG`, `SEED`).

# %% [markdown]
# ## Solution 09.1
#
# At one step the teacher returns its x̂0 at pure noise: the mean of all digits with that label, a smooth blur that
# the feature network places far from real digits. The consistency student was trained to land on a digit in one
# evaluation.

# %%
import numpy as np
import torch

import workshop

y = torch.arange(N_IMG) % 10
fd_student_1 = im.image_metrics(students["consistency"].sample(N_IMG, nfe=1, y=y, seed=SEED).x, y)["fd"]
fd_teacher_1 = im.image_metrics(teacher.sample(N_IMG, nfe=1, y=y, seed=SEED).x, y)["fd"]
workshop.check("09.1", fd_student_1=fd_student_1, fd_teacher_1=fd_teacher_1)

# %% [markdown]
# ## Solution 09.2
#
# The teacher's first prediction is the class average (the posterior mean given only the label); each step narrows
# the posterior, and by t = 0.5 the particular digit is mostly decided: later steps only sharpen the strokes.

# %%
v = views["teacher"]
gap = {float(t): float(np.abs(v["x0"][i] - v["final"]).mean()) for i, t in enumerate(v["times"])}
gap_first, gap_half = gap[1.0], gap[0.5]
workshop.check("09.2", gap_first=gap_first, gap_half=gap_half)

# %% [markdown]
# ## Solution 09.3
#
# `label=3` folds the class embedding of 3 into the UNet's time-embedding bias: the exported pipeline is a plain
# unconditional diffusers pipeline that happens to draw threes. The unconditional one draws every digit, about a
# tenth of them threes.

# %%
from diffusers import DiffusionPipeline


def share_of_threes(p):
    out = p(batch_size=100, num_inference_steps=1, generator=torch.Generator().manual_seed(SEED), output_type="np")
    x = torch.tensor(out.images).permute(0, 3, 1, 2) * 2 - 1
    return float((im.predict(x) == 3).mean())


three = DiffusionPipeline.from_pretrained(lab.interop.export_pipeline("digits/consistency", export_dir / "three",
                                                                      label=3), low_cpu_mem_usage=False)
three.set_progress_bar_config(disable=True)
share_three_label, share_three_unconditional = share_of_threes(three), share_of_threes(pipe)
workshop.check("09.3", share_three_label=share_three_label, share_three_unconditional=share_three_unconditional)
