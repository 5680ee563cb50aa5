"""Checks of notebook 02_divergences (see ``workshop/__init__.py``)."""
from workshop import exercise

NB = "02_divergences"


@exercise("02.1", notebook=NB, find="the widest separation of the teacher's two modes at which a one-mode "
          "reverse-KL student still covers both",
          check="the reverse-KL student puts more than 0.3 of its mass on its smaller side at your separation, and "
                "less than 0.3 at a separation two classes larger")
def _(separation: float, minor_share: float, minor_share_wider: float) -> bool:
    return float(separation) > 0 and minor_share > 0.3 > minor_share_wider


@exercise("02.2", notebook=NB, find="the beta at which the generalised JSD switches from covering to seeking",
          check="the JSD student is not mode-seeking at beta_cover, is mode-seeking at beta_seek, and beta_seek is "
                "above beta_cover by at most 0.1")
def _(beta_cover: float, beta_seek: float, seeking_cover: bool, seeking_seek: bool) -> bool:
    return (not bool(seeking_cover)) and bool(seeking_seek) and 0 < beta_seek - beta_cover <= 0.1 + 1e-9


@exercise("02.3", notebook=NB, find="how far TAID's t must move before its target has closed half of its KL gap "
          "to the teacher",
          check="KL(teacher || p_t) at your t is at most half its value at t = 0, and at t - 0.1 it is more than half")
def _(kl_at_t: float, kl_before: float, kl_at_0: float) -> bool:
    return kl_at_t <= 0.5 * kl_at_0 < kl_before
