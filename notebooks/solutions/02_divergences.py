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
# # Solutions of 02 · Divergences
#
# Run these cells in the same kernel right after the notebook `02_divergences`: they use its variables
# (`dv`, `taidprobe`, `zs`, `zt`, `FIT_STEPS`, `RESTARTS`).

# %% [markdown]
# ## Solution 02.1
#
# Narrow the gap between the modes from the default 12 classes down, two classes at a time, and keep the first
# separation at which the reverse-KL student spreads over both. When the two bumps overlap enough, the valley
# between them is shallow and one wide bump costs reverse KL less than ignoring half of the teacher's mass; further
# apart, the valley's low probability makes any mass there expensive and the student sits on one mode.

# %%
import workshop


def minor(sep: float) -> float:
    fit = dv.fit_categorical(dv.two_mode_teacher(separation=sep), "reverse_kl", steps=FIT_STEPS, restarts=RESTARTS)
    return 1.0 - fit["dominant_share"]


shares = {}
for sep in range(12, 1, -1):
    shares[sep] = minor(sep)
    if shares[sep] > 0.3:
        break
shares.setdefault(sep + 2, minor(sep + 2))
print({s: round(v, 3) for s, v in sorted(shares.items())}, "-> separation", sep)
workshop.check("02.1", separation=sep, minor_share=shares[sep], minor_share_wider=shares[sep + 2])

# %% [markdown]
# ## Solution 02.2
#
# Sweep β from 0 in steps of 0.1. JSD_β is forward KL at β = 0 and reverse KL at β = 1; the one-mode student covers
# both modes until β is large, then jumps onto one mode between two neighbouring β.

# %%
seeking = {}
for b in [round(0.1 * i, 1) for i in range(11)]:
    seeking[b] = bool(dv.fit_categorical(dv.two_mode_teacher(), ("jsd", {"beta": b}), steps=FIT_STEPS,
                                         restarts=RESTARTS)["mode_seeking"])
    if seeking[b]:
        break
beta_seek = b
beta_cover = round(b - 0.1, 1)
print(seeking, f"-> switches between {beta_cover} and {beta_seek}")
workshop.check("02.2", beta_cover=beta_cover, beta_seek=beta_seek, seeking_cover=seeking[beta_cover],
               seeking_seek=seeking[beta_seek])

# %% [markdown]
# ## Solution 02.3
#
# The KL to the teacher falls fast and non-linearly in t: the interpolation is in logit space, so half of the gap is
# closed well before t = 0.5 or well after it depending on how far apart the two sets of logits are.

# %%
ts = [round(0.1 * i, 1) for i in range(11)]
kl = taidprobe.interpolated(zs, zt, t_values=ts).groupby("t")["kl_to_teacher"].first()
t_half = next(t for t in ts[1:] if kl[t] <= 0.5 * kl[0.0])
print(kl.round(4).to_dict(), "-> t", t_half)
workshop.check("02.3", kl_at_t=float(kl[t_half]), kl_before=float(kl[round(t_half - 0.1, 1)]), kl_at_0=float(kl[0.0]))
