"""The noise process: conversions, the x0 parameterisation, and agreement with diffusers' schedulers."""
from __future__ import annotations

import math

import pytest
import torch
from diffusers import DDIMScheduler, FlowMatchEulerDiscreteScheduler
from torch import nn

from lab.diffusion import Denoiser, LinearFlow, Process, VPCosine, get_process, ode_sample
from lab.errors import LabError


PROCESSES = [LinearFlow(), VPCosine()]
PREDS = ["x0", "eps", "v"]


def _batch(n=64, seed=0, t_lo=0.05, t_hi=0.95, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(n, 2, generator=g, dtype=dtype)
    eps = torch.randn(n, 2, generator=g, dtype=dtype)
    t = t_lo + (t_hi - t_lo) * torch.rand(n, generator=g, dtype=dtype)
    return x0, eps, t


class Oracle(nn.Module):
    """A 'network' that returns a fixed tensor, whatever it is asked."""

    def __init__(self, out):
        super().__init__()
        self.out = out
        self.calls = 0

    def forward(self, x, t, y=None, **cond):
        self.calls += 1
        return self.out


# ---------------------------------------------------------------- conversions
@pytest.mark.parametrize("proc", PROCESSES, ids=lambda p: p.name)
def test_conversions_round_trip(proc):
    x0, eps, t = _batch()
    x_t = proc.add_noise(x0, eps, t)
    torch.testing.assert_close(proc.eps_from_x0(x_t, t, x0), eps, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(proc.x0_from_eps(x_t, t, eps), x0, rtol=1e-9, atol=1e-9)
    v = proc.v_from_x0_eps(t, x0, eps, x_t)
    x0_v, eps_v = proc.x0_eps_from_v(x_t, t, v)
    torch.testing.assert_close(x0_v, x0, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(eps_v, eps, rtol=1e-9, atol=1e-9)
    score = proc.score_from_eps(x_t, t, eps)
    torch.testing.assert_close(proc.eps_from_score(x_t, t, score), eps, rtol=1e-9, atol=1e-9)
    # the score of x_t | x0 is -(x_t - alpha x0) / sigma^2
    a, s = proc.alpha(t)[:, None], proc.sigma(t)[:, None]
    torch.testing.assert_close(score, -(x_t - a * x0) / s**2, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("proc", PROCESSES, ids=lambda p: p.name)
def test_velocity_is_time_derivative_of_the_path(proc):
    """v_from_x0_eps must be d/dt (alpha(t) x0 + sigma(t) eps) (checks d_alpha / d_sigma)."""
    x0, eps, t = _batch(n=16)
    t = t.clone().requires_grad_(True)
    x_t = proc.add_noise(x0, eps, t)
    grads = [torch.autograd.grad(x_t[:, j].sum(), t, retain_graph=True)[0] for j in range(2)]
    dxdt = torch.stack(grads, 1)
    torch.testing.assert_close(proc.v_from_x0_eps(t.detach(), x0, eps, x0), dxdt, rtol=1e-9, atol=1e-9)


def test_linear_flow_velocity_is_eps_minus_x0():
    x0, eps, t = _batch()
    torch.testing.assert_close(LinearFlow().v_from_x0_eps(t, x0, eps, x0), eps - x0)


def test_vp_cosine_is_variance_preserving():
    t = torch.linspace(0, 1, 101, dtype=torch.float64)
    p = VPCosine()
    torch.testing.assert_close(p.alpha(t) ** 2 + p.sigma(t) ** 2, torch.ones_like(t))


@pytest.mark.parametrize("proc", PROCESSES, ids=lambda p: p.name)
@pytest.mark.parametrize("pred", PREDS)
def test_x0_coeffs_match_denoiser_and_conversions(proc, pred):
    """Denoiser.x0 == c_skip x + c_out F, and an oracle network of each type recovers x0, eps, v and the score."""
    x0, eps, t = _batch(dtype=torch.float32)
    x_t = proc.add_noise(x0, eps, t)
    v = proc.v_from_x0_eps(t, x0, eps, x_t)
    truth = {"x0": x0, "eps": eps, "v": v}
    d = Denoiser(Oracle(truth[pred]), proc, pred)
    c_skip, c_out = proc.x0_coeffs(t, pred)
    torch.testing.assert_close(d.x0(x_t, t), c_skip[:, None] * x_t + c_out[:, None] * truth[pred])
    tol = dict(rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(d.x0(x_t, t), x0, **tol)
    torch.testing.assert_close(d.eps(x_t, t), eps, **tol)
    torch.testing.assert_close(d.velocity(x_t, t), v, **tol)
    torch.testing.assert_close(d(x_t, t), v, **tol)
    torch.testing.assert_close(d.score(x_t, t), -eps / proc.sigma(t)[:, None], **tol)


@pytest.mark.parametrize("proc", PROCESSES, ids=lambda p: p.name)
@pytest.mark.parametrize("pred", PREDS)
def test_denoiser_accepts_scalar_time(proc, pred):
    x0, eps, _ = _batch(n=8, dtype=torch.float32)
    out = torch.randn(8, 2)
    d = Denoiser(Oracle(out), proc, pred)
    x_t = proc.add_noise(x0, eps, torch.full((8,), 0.3))
    torch.testing.assert_close(d.x0(x_t, 0.3), d.x0(x_t, torch.full((8,), 0.3)))


@pytest.mark.parametrize("proc", PROCESSES, ids=lambda p: p.name)
@pytest.mark.parametrize("pred", ["eps", "v"])
def test_boundary_c_skip_1_c_out_0_at_t0(proc, pred):
    """At t = 0 (alpha = 1, sigma = 0) c_skip = 1 and c_out = 0, so f(x, 0) = x whatever the network says.

    (For pred='x0' the coefficients are (0, 1) by definition -- x0_hat is the network output -- so the
    boundary condition cannot come from x0_coeffs; see the consistency test below.)"""
    t0 = torch.zeros(4)
    c_skip, c_out = proc.x0_coeffs(t0, pred)
    torch.testing.assert_close(c_skip, torch.ones(4))
    torch.testing.assert_close(c_out, torch.zeros(4))
    x = torch.randn(4, 2)
    d = Denoiser(Oracle(torch.full((4, 2), 123.0)), proc, pred)
    torch.testing.assert_close(d.x0(x, t0), x)


@pytest.mark.parametrize("teacher_pred", ["v", "eps", "x0"])
def test_consistency_target_at_t0_is_the_boundary(teacher_pred):
    """Consistency distillation anchors on f(x, 0) = x: for the first interval (t = 1/N -> s = 0) the regression
    target f_target(x_s, 0) must be x_s itself. The student copies a trained teacher's prediction type, and for
    pred='x0' x0_coeffs gives (c_skip, c_out) = (0, 1) at t = 0, so the target is the network's F(x_s, 0)."""
    from lab.diffusion.generators import FlowGenerator
    from lab.diffusion.train import TeacherConfig, TeacherTraining
    from lab.methods import get_method
    from lab.nets import build_net, spec_for

    net = {"type": "mlp", "hidden": 16, "depth": 2, "t_dim": 8}
    if teacher_pred == "eps":  # a trained teacher refuses eps (singular at t = 1); the boundary holds for the Denoiser
        teacher = FlowGenerator(Denoiser(build_net(spec_for((2,), net)), "linear", "eps"))
    else:
        teacher = TeacherTraining("toy2d:8gaussians", TeacherConfig(steps=1, batch=8, pred=teacher_pred, net=net)).generator()
    m = get_method("consistency")(teacher, "toy2d:8gaussians",
                                  {"batch": 8, "steps": 1, "n_intervals": 10, "student_net": net})
    assert m.student.pred == teacher_pred
    batch = m.probe_batch(32, t=0.1, seed=0)
    tg = m.targets(batch, t=0.1)
    assert torch.all(tg.info["s"] == 0) and torch.allclose(tg.t, torch.full((32,), 0.1))
    torch.testing.assert_close(tg.target, tg.info["x_s"])


def test_unknown_pred_and_process_raise_laberror():
    with pytest.raises(LabError, match="allowed: x0, eps, v"):
        LinearFlow().x0_coeffs(torch.zeros(2), "score")
    with pytest.raises(LabError, match="allowed"):
        Denoiser(Oracle(torch.zeros(1)), "linear", "score")
    with pytest.raises(LabError, match="linear"):
        get_process("ve")
    assert isinstance(get_process("vp_cosine"), VPCosine)
    assert isinstance(get_process({"name": "linear"}), LinearFlow)


@pytest.mark.parametrize("proc", PROCESSES, ids=lambda p: p.name)
def test_ddim_step_is_exact_on_the_forward_path(proc):
    """Given the true x0, a deterministic DDIM step from t to s lands on alpha(s) x0 + sigma(s) eps."""
    x0, eps, t = _batch()
    s = t * 0.4
    x_t = proc.add_noise(x0, eps, t)
    torch.testing.assert_close(proc.ddim_step(x_t, t, s, x0), proc.add_noise(x0, eps, s), rtol=1e-9, atol=1e-9)


# ---------------------------------------------------------------- diffusers: flow matching
def _v_field(x, sigma):
    """A fixed nonlinear velocity field used as the 'model' on both sides."""
    sigma = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1, *([1] * (x.ndim - 1)))
    return torch.tanh(x) * (1.0 + sigma) - 0.3 * sigma


class VField(nn.Module):
    def forward(self, x, t, y=None, **cond):
        return _v_field(x, t)


@pytest.mark.parametrize("steps", [1, 4, 7])
def test_flowmatch_scale_noise_equals_linear_add_noise(steps):
    sch = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000)
    sch.set_timesteps(steps)
    g = torch.Generator().manual_seed(1)
    x0, noise = torch.randn(6, 2, generator=g), torch.randn(6, 2, generator=g)
    for i, ts in enumerate(sch.timesteps):
        ours = LinearFlow().add_noise(x0, noise, sch.sigmas[i].expand(6))
        theirs = sch.scale_noise(x0, ts.reshape(1), noise)
        torch.testing.assert_close(theirs, ours, rtol=0, atol=1e-6)


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_flowmatch_euler_step_equals_our_euler_step(shift):
    sch = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)
    sch.set_timesteps(5)
    sigmas = sch.sigmas.clone()
    assert sigmas.shape == (6,) and float(sigmas[-1]) == 0.0 and float(sigmas[0]) == pytest.approx(1.0)
    z = torch.randn(32, 2, generator=torch.Generator().manual_seed(2))
    # one step at a time
    x = z.clone()
    for i, ts in enumerate(sch.timesteps):
        v = _v_field(x, sigmas[i])
        theirs = sch.step(v, ts, x).prev_sample
        ours = x + (sigmas[i + 1] - sigmas[i]) * v
        torch.testing.assert_close(theirs, ours, rtol=0, atol=1e-6)
        x = theirs
    # the whole loop through our sampler on the scheduler's grid
    res = ode_sample(Denoiser(VField(), "linear", "v"), z, steps=5, solver="euler", times=sigmas)
    torch.testing.assert_close(res.x, x, rtol=0, atol=1e-5)
    assert res.nfe == 5


# ---------------------------------------------------------------- diffusers: DDIM
class TabulatedVP(Process):
    """A VP process whose alpha^2 at t = (k + 1) / T is a scheduler's alphas_cumprod[k] (and 1 at t = 0).

    Velocities are in the angle variable phi (alpha = cos phi, sigma = sin phi): d_alpha = -sigma,
    d_sigma = alpha, so our 'v' is exactly diffusers' v_prediction (alpha eps - sigma x0).
    """

    name = "tabulated_vp"

    def __init__(self, alphas_cumprod: torch.Tensor):
        self.acp = torch.cat([torch.ones(1, dtype=alphas_cumprod.dtype), alphas_cumprod])
        self.T = alphas_cumprod.shape[0]

    def _acp(self, t):
        idx = torch.round(t.double() * self.T).long()
        return self.acp[idx].to(t.dtype)

    def alpha(self, t):
        return self._acp(t).sqrt()

    def sigma(self, t):
        return (1 - self._acp(t)).sqrt()

    def d_alpha(self, t):
        return -self.sigma(t)

    def d_sigma(self, t):
        return self.alpha(t)


def _t_of(k):
    """diffusers' integer timestep k <-> our t = (k + 1) / 1000; k = -1 (final_alpha_cumprod = 1) <-> t = 0."""
    return (k + 1) / 1000.0


def _model(x, k):
    return torch.sin(x) * (0.5 + k / 1000.0) + 0.1


def _ddim(pred_type, **kw):
    sch = DDIMScheduler(num_train_timesteps=1000, prediction_type=pred_type, clip_sample=False,
                        set_alpha_to_one=True, timestep_spacing="trailing", **kw)
    sch.set_timesteps(10)
    return sch


@pytest.mark.parametrize("pred_type", ["epsilon", "v_prediction", "sample"])
def test_ddim_step_matches_diffusers_ddim_scheduler(pred_type):
    sch = _ddim(pred_type)
    assert sch.timesteps.tolist() == [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]
    proc = TabulatedVP(sch.alphas_cumprod)
    ours_pred = {"epsilon": "eps", "v_prediction": "v", "sample": "x0"}[pred_type]
    x = torch.randn(32, 2, generator=torch.Generator().manual_seed(3))
    for k in sch.timesteps.tolist():
        out = _model(x, k)
        theirs = sch.step(out, k, x, eta=0.0).prev_sample
        k_prev = k - 1000 // 10
        t = torch.full((32,), _t_of(k))
        s = torch.full((32,), _t_of(k_prev) if k_prev >= 0 else 0.0)
        torch.testing.assert_close(proc.alpha(t) ** 2, sch.alphas_cumprod[k].expand(32))
        x0_hat = Denoiser(Oracle(out), proc, ours_pred).x0(x, t)
        ours = proc.ddim_step(x, t, s, x0_hat)
        # the explicit DDIM formula: sqrt(acp_prev) x0_hat + sqrt(1 - acp_prev) eps_hat
        acp_prev = sch.alphas_cumprod[k_prev] if k_prev >= 0 else sch.final_alpha_cumprod
        eps_hat = proc.eps_from_x0(x, t, x0_hat)
        torch.testing.assert_close(ours, acp_prev.sqrt() * x0_hat + (1 - acp_prev).sqrt() * eps_hat)
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)
        x = theirs


@pytest.mark.parametrize("pred_type", ["epsilon", "v_prediction"])
def test_ddim_sampling_loop_matches_diffusers(pred_type):
    """Our ode_sample(solver='ddim') on the scheduler's trailing grid == diffusers' DDIM loop (eta = 0)."""
    sch = _ddim(pred_type)
    proc = TabulatedVP(sch.alphas_cumprod)
    ks = sch.timesteps.tolist()

    class Net(nn.Module):
        def forward(self, x, t, y=None, **cond):
            k = int(round(float(t[0]) * 1000)) - 1
            return _model(x, k)

    z = torch.randn(64, 2, generator=torch.Generator().manual_seed(4))
    x = z.clone()
    for k in ks:
        x = sch.step(_model(x, k), k, x, eta=0.0).prev_sample
    times = torch.tensor([_t_of(k) for k in ks] + [0.0])
    res = ode_sample(Denoiser(Net(), proc, {"epsilon": "eps", "v_prediction": "v"}[pred_type]), z, steps=len(ks),
                     solver="ddim", times=times)
    torch.testing.assert_close(res.x, x, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("pred_type", ["epsilon", "v_prediction"])
def test_vp_cosine_ddim_matches_diffusers_with_cosine_alphas(pred_type):
    """VPCosine itself against DDIMScheduler whose alphas_cumprod are cos^2(pi t / 2) at t = (k + 1) / 1000."""
    k = torch.arange(1000, dtype=torch.float64)
    acp = torch.cos(0.5 * math.pi * (k + 1) / 1000) ** 2
    acp[-1] = 1e-12  # avoid beta = 1 exactly at the very last index (unused below)
    betas = 1 - acp / torch.cat([torch.ones(1, dtype=torch.float64), acp[:-1]])
    sch = _ddim(pred_type, trained_betas=betas.numpy())
    sch.alphas_cumprod = acp.float()  # remove float32 cumprod drift: compare the formulas, not the rounding
    proc = VPCosine()
    x = torch.randn(32, 2, generator=torch.Generator().manual_seed(5))
    for kk in [899, 599, 299, 99]:
        out = _model(x, kk)
        theirs = sch.step(out, kk, x, eta=0.0).prev_sample
        t = torch.full((32,), _t_of(kk))
        s = torch.full((32,), _t_of(kk - 100) if kk >= 100 else 0.0)
        # diffusers' v is alpha eps - sigma x0; ours is d x_t / dt = (pi / 2) (alpha eps - sigma x0)
        ours_out = out * (0.5 * math.pi) if pred_type == "v_prediction" else out
        d = Denoiser(Oracle(ours_out), proc, "v" if pred_type == "v_prediction" else "eps")
        ours = proc.ddim_step(x, t, s, d.x0(x, t))
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)
