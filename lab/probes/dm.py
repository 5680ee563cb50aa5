"""Probes for distribution-matching methods (dmd, dmd2, and any score-distillation method alike).

They look at the two scores a distribution-matching generator is pushed by: the REAL score
(the frozen teacher) and the FAKE score (a network fitted online to the generator's own
samples). A method is used by duck typing; the attributes read are

- ``method.generate(z)``: generator samples from noise z (n, 2) (called under no_grad),
- ``method.fake``: the fake-score :class:`~lab.diffusion.Denoiser`,
- ``method.teacher``: the real-score (teacher) Denoiser,
- ``method.process``: the noise process (``alpha``, ``sigma``, ``add_noise``),
- ``method.device`` (optional; CPU if absent).

Functions:

- ``score_field(method, t)``: real, fake and real-minus-fake scores on a grid of x_t.
- ``score_arrows(method, t, n)``: the same at noised generator samples (where the generator
  gradient is actually evaluated).
- ``empirical_score(samples, x_t, t, process)``: the exact score of the noised empirical
  distribution of ``samples`` (a mixture of N(alpha x_i, sigma^2 I)).
- ``fake_score_error(method, t_values, n)``: how well the fake score tracks the true score of
  the CURRENT generator distribution, per t.
- ``FakeScoreTracker(every=50)``: a training-loop callback logging ``fake_score_error`` over training.
"""
from __future__ import annotations

import pandas as pd
import torch

from lab.diffusion.generators import make_noise
from lab.errors import LabError
from lab.probes import grid
from lab.runs.loop import Callback

__all__ = ["empirical_score", "score_field", "score_arrows", "fake_score_error", "FakeScoreTracker"]


def _np(x):
    return x.detach().cpu().numpy()


def _check(method):
    missing = [a for a in ("generate", "fake", "teacher", "process") if not hasattr(method, a)]
    if missing:
        raise LabError(f"{type(method).__name__} is not a distribution-matching method: it lacks "
                       f"{', '.join(missing)} (needed: generate(z), fake, teacher, process)")


def _device(method):
    return getattr(method, "device", torch.device("cpu"))


def _tvec(t, n, device):
    t = float(t)
    if not 0.0 < t <= 1.0:
        raise LabError(f"t must be in (0, 1], got {t!r}")
    return torch.full((n,), t, device=device)


@torch.no_grad()
def empirical_score(samples: torch.Tensor, x_t: torch.Tensor, t, process, chunk: int = 2048) -> torch.Tensor:
    """Score of p_t(x) = mean_i N(x; alpha(t) x_i, sigma(t)^2 I) at x_t (exact for that mixture).

    grad log p_t(x) = sum_i r_i(x) (alpha x_i - x) / sigma^2, r = softmax_i(-|x - alpha x_i|^2 / (2 sigma^2)).
    """
    samples = samples.to(x_t)
    tt = t if torch.is_tensor(t) else torch.tensor(float(t))
    tt = tt.to(x_t).reshape(-1)[:1]
    a, s = process.alpha(tt)[0], process.sigma(tt)[0]
    centres = a * samples
    out = []
    for i in range(0, x_t.shape[0], chunk):
        x = x_t[i:i + chunk]
        d2 = torch.cdist(x.double(), centres.double()) ** 2
        r = torch.softmax(-d2 / (2 * s.double() ** 2), dim=1)
        out.append(((r @ centres.double() - x.double()) / s.double() ** 2).to(x_t.dtype))
    return torch.cat(out)


def _scores(method, x_t, t):
    return method.teacher.score(x_t, t), method.fake.score(x_t, t), method.teacher.x0(x_t, t), method.fake.x0(x_t, t)


def _frame(x_t, t, real, fake, real_x0, fake_x0, extra=None):
    d = {"x": _np(x_t[:, 0]), "y": _np(x_t[:, 1]),
         "real_dx": _np(real[:, 0]), "real_dy": _np(real[:, 1]),
         "fake_dx": _np(fake[:, 0]), "fake_dy": _np(fake[:, 1]),
         "diff_dx": _np(real[:, 0] - fake[:, 0]), "diff_dy": _np(real[:, 1] - fake[:, 1]),
         "real_x0_x": _np(real_x0[:, 0]), "real_x0_y": _np(real_x0[:, 1]),
         "fake_x0_x": _np(fake_x0[:, 0]), "fake_x0_y": _np(fake_x0[:, 1])}
    d.update(extra or {})
    df = pd.DataFrame(d)
    df["t"] = float(t)
    return df


@torch.no_grad()
def score_field(method, t: float = 0.5, lim: float = 3.0, n: int = 21) -> pd.DataFrame:
    """Real (teacher) and fake scores on an n x n grid of x_t in [-lim, lim]^2 at time t.

    Columns: x, y (x_t), real_dx/dy, fake_dx/dy (scores), diff_dx/dy = real - fake (the direction
    the generator's samples are pushed at this x_t), real_x0_x/y, fake_x0_x/y (the denoised
    predictions), t, where = "grid".
    """
    _check(method)
    x_t = grid(lim, n, _device(method))
    tt = _tvec(t, x_t.shape[0], x_t.device)
    df = _frame(x_t, t, *_scores(method, x_t, tt))
    df["where"] = "grid"
    return df


@torch.no_grad()
def score_arrows(method, t: float = 0.5, n: int = 256, seed: int = 0) -> pd.DataFrame:
    """The score_field columns at noised generator samples x_t = alpha G(z) + sigma eps, plus
    sample_x, sample_y (the clean generator sample G(z)); where = "samples"."""
    _check(method)
    dev = _device(method)
    z = make_noise(n, 2, seed=seed, device=dev)
    eps = make_noise(n, 2, seed=seed + 1, device=dev)
    x = method.generate(z)
    tt = _tvec(t, n, dev)
    x_t = method.process.add_noise(x, eps, tt)
    df = _frame(x_t, t, *_scores(method, x_t, tt), {"sample_x": _np(x[:, 0]), "sample_y": _np(x[:, 1])})
    df["where"] = "samples"
    return df


@torch.no_grad()
def fake_score_error(method, t_values=(0.1, 0.2, 0.35, 0.5, 0.7, 0.9), n: int = 2000, n_eval: int = 1000,
                     seed: int = 0) -> pd.DataFrame:
    """Error of the fake score against the true score of the current generator distribution.

    ``n`` generator samples define the (empirical) generator distribution; its noised version at t
    is the mixture of N(alpha x_i, sigma^2 I), whose score is exact (:func:`empirical_score`).
    It is evaluated at ``n_eval`` points drawn from a second, independent set of generator
    samples noised at t (held out, so no point sits on its own mixture component).

    Columns: t, error = E|fake - true|^2 (score units), error_eps = sigma^2 * error (eps units,
    comparable across t), rel_error = error / E|true|^2, teacher_error = E|real - true|^2 (how far
    the teacher's score is from the generator's: what the generator still has to move),
    teacher_error_eps, n.
    At small t (sigma below the spacing of the n samples) the empirical score is itself noisy.
    """
    _check(method)
    dev = _device(method)
    x = method.generate(make_noise(n, 2, seed=seed, device=dev))
    x_eval = method.generate(make_noise(n_eval, 2, seed=seed + 1, device=dev))
    rows = []
    for k, t in enumerate(t_values):
        tt = _tvec(t, n_eval, dev)
        eps = make_noise(n_eval, 2, seed=seed + 2 + k, device=dev)
        x_t = method.process.add_noise(x_eval, eps, tt)
        true = empirical_score(x, x_t, tt, method.process)
        fake = method.fake.score(x_t, tt)
        real = method.teacher.score(x_t, tt)
        err = float(((fake - true) ** 2).sum(-1).mean())
        s2 = float(method.process.sigma(tt[:1])[0] ** 2)
        rows.append({"t": float(t), "error": err, "error_eps": s2 * err,
                     "rel_error": err / max(float((true ** 2).sum(-1).mean()), 1e-12),
                     "teacher_error": float(((real - true) ** 2).sum(-1).mean()), "n": n})
        rows[-1]["teacher_error_eps"] = s2 * rows[-1]["teacher_error"]
    return pd.DataFrame(rows)


class FakeScoreTracker(Callback):
    """Logs :func:`fake_score_error` every ``every`` steps (and at step 0 / the end).

    ``tracker.frame()`` -> DataFrame with the fake_score_error columns plus ``it``. It draws no
    randomness from the method (fixed seeds), so training is unchanged by tracking; the rows are
    kept in ``state_dict()`` for resumed runs.
    """

    def __init__(self, every: int = 50, t_values=(0.2, 0.5, 0.8), n: int = 1000, n_eval: int = 500, seed: int = 0):
        if not isinstance(every, int) or every < 1:
            raise LabError(f"every must be an integer >= 1, got {every!r}")
        self.every, self.t_values, self.n, self.n_eval, self.seed = every, tuple(t_values), n, n_eval, seed
        self.rows: list[dict] = []

    def _log(self, method, it):
        if any(r["it"] == it for r in self.rows):
            return
        df = fake_score_error(method, self.t_values, self.n, self.n_eval, self.seed)
        self.rows += [{**r, "it": int(it)} for r in df.to_dict("records")]

    def on_start(self, trainable, total):
        _check(trainable)
        self._log(trainable, trainable.it)

    def on_step(self, state):
        if state.it % self.every == 0 or state.it == state.total:
            self._log(state.trainable, state.it)

    def frame(self) -> pd.DataFrame:
        cols = ["it", "t", "error", "error_eps", "rel_error", "teacher_error", "teacher_error_eps", "n"]
        return pd.DataFrame(self.rows, columns=cols)

    def state_dict(self):
        return {"rows": list(self.rows)}

    def load_state_dict(self, sd):
        self.rows = list(sd.get("rows", []))

