"""Checks of notebook 12 (language models): predicates over values the learner measured."""
from __future__ import annotations

from workshop import exercise

NB = "12_language_models"


@exercise("12.1", notebook=NB, find="whether speculative decoding stays exact when the draft is a badly wrong model",
          check="the emitted tokens are within 0.03 of the target in total variation while the untrained draft's own "
                "distribution is more than 0.2 from it")
def _(tv_emitted: float, tv_bad_draft: float) -> bool:
    return 0 <= float(tv_emitted) < 0.03 and float(tv_bad_draft) > 0.2


@exercise("12.2", notebook=NB, find="how the share λ of on-policy steps changes the student's KL to the truth on its "
                                    "own samples",
          check="the on-policy student (λ = 1) is closer to the truth on its own samples than the off-policy one "
                "(λ = 0)")
def _(kl_own_off: float, kl_own_on: float) -> bool:
    return 0 < float(kl_own_on) < float(kl_own_off)


@exercise("12.3", notebook=NB, find="what a smaller fixed dataset does to teacher hacking",
          check="the golden distance rises further above its minimum with 16 offline sequences than with 64")
def _(rise_16: float, rise_64: float) -> bool:
    return 0 <= float(rise_64) < float(rise_16)


@exercise("12.4", notebook=NB, find="whether distilling the draft online with reverse KL also recovers the acceptance "
                                    "after the shift",
          check="the reverse-KL draft's held-out α on B ends more than 0.1 above the frozen draft's")
def _(alpha_b_reverse: float, alpha_b_frozen: float) -> bool:
    return 0 <= float(alpha_b_frozen) and float(alpha_b_reverse) > float(alpha_b_frozen) + 0.1
