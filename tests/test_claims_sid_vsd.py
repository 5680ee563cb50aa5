"""SiD and VSD (one-step score distillation into a generator): claim tests and mechanism checks.

Claims compare numbers measured in the same test, on the same noise and reference data.
"""
from __future__ import annotations

import pytest
import torch

import lab
from _claims import swd  # the shared distance; the `eight` fixture is in conftest.py

N = 4000




def _tiny(name, **over):
    cls = lab.get_method(name)
    return cls(cls.tiny_teacher, "8gaussians", {**cls.tiny, "steps": 6, **over}, seed=0)


# ---------------------------------------------------------------- mechanism (fast)
def test_sid_generator_gradient_flows_through_both_scores_inputs():
    """SiD's generator loss is differentiated through x_t = alpha G(z) + sigma eps into both score
    networks' inputs; the networks' parameters get no gradient from it (unlike DMD, where the
    scores are evaluated under stop-gradient)."""
    m = _tiny("sid")
    b = m.sample_batch(0)
    y = m.generate(b["z"]).detach().requires_grad_(True)
    with m.fake_frozen():
        loss, _, real, fake = m.sid_loss(y, b["t"], b["eps"])
        g_full = torch.autograd.grad(loss.sum(), y)[0]
    # the same loss with the scores' inputs detached: only the explicit (fake - y) term is left
    y2 = y.detach().clone().requires_grad_(True)
    w = (y2 - real.detach()).abs().mean(-1, keepdim=True).detach().clamp_min(1e-5)
    d = (real - fake).detach()
    loss_sg = (((1 - m.config.alpha) * d * d + d * (fake.detach() - y2)) / w).sum(-1)
    g_sg = torch.autograd.grad(loss_sg.sum(), y2)[0]
    assert not torch.allclose(g_full, g_sg, atol=1e-6)
    m.step(b, 0)
    assert all(p.requires_grad for p in m.fake.net.parameters())  # unfrozen again for its own updates
    tg = m.targets(m.probe_batch(16, 0.5), t=0.5)
    assert tg.target.shape == (16, 2) and torch.isfinite(tg.target).all()
    with pytest.raises(ValueError, match="x_t alone"):
        m.targets({"x_t": tg.x_t, "t": tg.t})


def test_sid_fake_params_untouched_by_generator_loss():
    m = _tiny("sid")
    b = m.sample_batch(0)
    before = [p.detach().clone() for p in m.fake.net.parameters()]
    y = m.generate(b["z"])
    with m.fake_frozen():
        loss = m.sid_loss(y, b["t"], b["eps"])[0].mean()
        m.opt_step("generator", loss)
    assert all(p.grad is None for p in m.fake.net.parameters())
    assert all(torch.equal(a, p) for a, p in zip(before, m.fake.net.parameters()))


def test_vsd_lora_fake_starts_equal_to_the_teacher_and_trains_only_the_adapter():
    from lab.methods.distribution_matching.vsd import LoRALinear

    teacher = lab.zoo.load("toy2d/8gaussians/teacher", train_if_missing=False)
    cfg = {"steps": 3, "batch": 32, "lora_rank": 2}
    m = lab.get_method("vsd")(teacher, "8gaussians", cfg, seed=0)
    assert m.fake_kind == "lora"
    loras = [mod for mod in m.fake.net.modules() if isinstance(mod, LoRALinear)]
    n_linear = sum(isinstance(mod, torch.nn.Linear) for mod in teacher.denoiser.net.modules())
    assert len(loras) == n_linear and all(lo.lora_A.shape[0] == 2 for lo in loras)
    x, t = torch.randn(64, 2), torch.rand(64)
    torch.testing.assert_close(m.fake.velocity(x, t), m.teacher.velocity(x, t))
    trainable = {n for n, p in m.fake.net.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    base = [lo.base.weight.detach().clone() for lo in loras]
    for _ in lab.distill(m):
        pass
    assert all(torch.equal(b, lo.base.weight) for b, lo in zip(base, loras))
    assert any(lo.lora_B.abs().sum() > 0 for lo in loras)
    assert not torch.allclose(m.fake.velocity(x, t), m.teacher.velocity(x, t))
    # the teacher itself is untouched
    torch.testing.assert_close(m.teacher.velocity(x, t), teacher.denoiser.velocity(x, t))
    copy = lab.get_method("vsd")(teacher, "8gaussians", {**cfg, "fake_init": "copy"}, seed=0)
    assert copy.fake_kind == "copy" and all(p.requires_grad for p in copy.fake.net.parameters())
    # analytic teacher (no parameters): a fresh MLP fake score
    assert _tiny("vsd").fake_kind == "fresh"


def test_vsd_config_is_validated():
    from lab.errors import LabError

    with pytest.raises(LabError, match="fake_init"):
        lab.get_method("vsd").Config(fake_init="full")
    with pytest.raises(LabError, match="weighting"):
        lab.get_method("vsd").Config(weighting="snr")
    with pytest.raises(LabError, match="alpha"):
        lab.get_method("sid").Config(alpha=-1.0)


@pytest.mark.parametrize("name", ["sid", "vsd"])
def test_dm_probes_work_on_sid_and_vsd(name):
    """The distribution-matching probes (lab.probes.dm) read generate/fake/teacher/process from these methods."""
    import plotly.graph_objects as go

    from lab.probes.dm import fake_score_error, score_arrows, score_field
    from lab.viz.dm import fake_score_error_figure, score_field_figure

    m = _tiny(name)
    for _ in lab.distill(m):
        pass
    df = score_field(m, t=0.5, n=7)
    assert len(df) == 49 and {"x", "y", "real_dx", "fake_dx", "diff_dx", "t"} <= set(df.columns)
    arrows = score_arrows(m, t=0.3, n=32)
    assert len(arrows) == 32
    err = fake_score_error(m, t_values=(0.3, 0.7), n=200, n_eval=100)
    assert list(err["t"]) == [0.3, 0.7] and {"error", "error_eps", "teacher_error"} <= set(err.columns)
    for fig in (score_field_figure(df), fake_score_error_figure(err)):
        assert isinstance(fig, go.Figure) and len(fig.data) > 0


# ---------------------------------------------------------------- claims (zoo teacher, 8 Gaussians)
@pytest.mark.claim
def test_claim_sid(eight):
    """Zhou et al. 2024: a one-step SiD generator, trained data-free from the teacher, gets close to the
    many-step teacher: 1-step SWD within 1.5x of the teacher at 50 NFE and below the teacher at 1 NFE;
    all 8 modes covered."""
    from lab.metrics import mode_stats

    src, teacher, ref, z = eight
    m = lab.get_method("sid")(teacher, src, {}, seed=2)  # the defaults were tuned on seed 0
    for _ in lab.distill(m):
        pass
    one, t1, t50 = swd(m.generator(), 1, z, ref), swd(teacher, 1, z, ref), swd(teacher, 50, z, ref)
    print(f"\nsid: 1-step SWD {one:.4f} (teacher@50 {t50:.4f}, ratio {one / t50:.2f}; teacher@1 {t1:.4f})")
    assert one < t1 and one <= 1.5 * t50, (one, t1, t50)
    assert mode_stats(m.generator().sample(z=z, nfe=1).x, src.gmm)["modes_covered"] == 8


EARLY = (50, 100)  # the generator steps at which SiD and DMD are compared
EARLY_SEEDS = (6, 7, 8)  # the numbers below were measured on seeds 1-5; these seeds were not looked at


@pytest.mark.claim
def test_claim_sid_converges_faster_than_dmd(eight):
    """Zhou et al. 2024 ("Score identity Distillation: Exponentially Fast Distillation of Pretrained
    Diffusion Models for One-Step Generation") claim fast convergence: the one-step generator's FID
    falls exponentially fast with training iterations. Measured here against DMD with the same batch
    (512), total steps (400, which sets SiD's linear lr decay), seeds and no generator EMA (the raw
    generator's progress): after the same number of generator steps SiD's 1-step SWD is below DMD's on
    every seed, by a mean gap larger than one standard deviation across seeds (of the paired
    differences and of either method).

    Against DMD at learning rates 1e-4 for both networks (its default before the issue-16 retune; dmd.py's
    notes: lr 5e-4 diverged) this holds at steps 50 and 100. Against DMD at SiD's learning rates (3e-4 generator,
    1e-3 fake score) it holds at step 50 only, so only that is asserted: on seeds 1-3 that DMD reached
    0.140-0.161 at step 100, level with SiD's 0.134-0.140. Seeds 1-5 (used to choose EARLY): SiD
    0.148-0.178 at step 50 and 0.134-0.149 at 100; default DMD 0.622-0.628 and 0.513-0.526; DMD at
    SiD's rates (seeds 1-3) 0.355-0.373 at step 50."""
    import statistics

    src, teacher, ref, z = eight
    cfg = {"steps": 400, "ema": 0.0}
    # arm -> (method, config overrides, the steps it is compared at); the settings these numbers were measured
    # with are pinned (SiD: 3e-4 / 1e-3 with linear decay, Adam beta1 0; DMD: Adam beta1 0.9)
    sid = {"lr": 3e-4, "lr_fake": 1e-3, "lr_decay": "linear", "beta1": 0.0}
    arms = {"sid": ("sid", sid, EARLY), "dmd": ("dmd", {"lr": 1e-4, "lr_fake": 1e-4, "beta1": 0.9}, EARLY),
            "dmd at sid's lr": ("dmd", {"lr": 3e-4, "lr_fake": 1e-3, "beta1": 0.9}, EARLY[:1])}
    got = {arm: [] for arm in arms}
    for seed in EARLY_SEEDS:
        for arm, (name, over, at) in arms.items():
            m = lab.get_method(name)(teacher, src, {**cfg, **over}, seed=seed)
            row = {}
            for state in lab.distill(m, steps=max(at)):
                if state.it in at:
                    row[state.it] = swd(m.generator(), 1, z, ref)
            got[arm].append(row)
    for k in EARLY:
        print(f"step {k}: " + "; ".join(f"{arm} {[round(r[k], 4) for r in rows]}" for arm, rows in got.items()
                                        if k in rows[0]))

    def sid_ahead(arm, k):
        sid, dmd = [r[k] for r in got["sid"]], [r[k] for r in got[arm]]
        diff = [d - s for s, d in zip(sid, dmd)]
        assert all(d > 0 for d in diff), (arm, k, sid, dmd)
        assert statistics.mean(diff) > max(statistics.stdev(diff), statistics.stdev(sid), statistics.stdev(dmd)), \
            (arm, k, sid, dmd)

    for k in EARLY:
        sid_ahead("dmd", k)
    sid_ahead("dmd at sid's lr", EARLY[0])


@pytest.mark.claim
def test_claim_vsd(eight):
    """SwiftBrush (Nguyen & Tran) with ProlificDreamer's VSD gradient: a one-step generator trained
    data-free against a LoRA fake score that starts as the teacher gets close to the many-step
    teacher: 1-step SWD within 1.5x of the teacher at 50 NFE and below the teacher at 1 NFE, with all
    8 modes covered."""
    from lab.metrics import mode_stats

    src, teacher, ref, z = eight
    m = lab.get_method("vsd")(teacher, src, {}, seed=2)  # the defaults were tuned on seed 0
    assert m.fake_kind == "lora"
    for _ in lab.distill(m):
        pass
    one, t1, t50 = swd(m.generator(), 1, z, ref), swd(teacher, 1, z, ref), swd(teacher, 50, z, ref)
    print(f"\nvsd: 1-step SWD {one:.4f} (teacher@50 {t50:.4f}, ratio {one / t50:.2f}; teacher@1 {t1:.4f})")
    assert one < t1 and one <= 1.5 * t50, (one, t1, t50)
    assert mode_stats(m.generator().sample(z=z, nfe=1).x, src.gmm)["modes_covered"] == 8
