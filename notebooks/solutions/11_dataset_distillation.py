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
# # Solutions of 11 · Dataset distillation
#
# Run these cells in the notebook's kernel, after the notebook: they use its variables (`dm`, `mtt`, `SEED`,
# `experts_sgd`, `card_sgd`).

# %% [markdown]
# ## Solution 11.1
#
# One random image per class is a lottery ticket: a thin "1" or an unusual "7" stands for its whole class. DM moves
# each image towards the class's mean embedding under many random networks, so it becomes a typical member.

# %%
import workshop

acc_distilled = evaluate_set(dm.images(), dm.labels(), [SEED], EvalProtocol())["acc"]
x_rr, y_rr = random_real(1, SEED)
acc_random = evaluate_set(x_rr, y_rr, [SEED], EvalProtocol())["acc"]
workshop.check("11.1", acc_distilled=acc_distilled, acc_random=acc_random)

# %% [markdown]
# ## Solution 11.2
#
# Nothing pulls the student back to the expert: every epoch adds its own deviation to the one it carries, so the
# distance keeps growing.

# %%
rows = pd.DataFrame(trajectory_error(mtt.images(), mtt.labels(), mtt.eval_lr(), experts_sgd, syn_steps=10))
per_epoch = rows.groupby("epoch")["dist"].mean()
dist_first, dist_last = float(per_epoch.loc[1]), float(per_epoch.iloc[-1])
workshop.check("11.2", dist_first=dist_first, dist_last=dist_last)

# %% [markdown]
# ## Solution 11.3
#
# N = 10 synthetic steps must cover M = 2 expert epochs (about 90 real steps): with so few images, the cheapest way
# to go as far as the expert is a larger step.

# %%
lr_learned, lr_experts = mtt.eval_lr(), float(card_sgd["recipe"]["lr"])
workshop.check("11.3", lr_learned=lr_learned, lr_experts=lr_experts)
