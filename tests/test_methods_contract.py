"""The contract every registered method keeps, checked on a tiny run of each.

A new method file is picked up by the registry and lands here automatically: it must name
its paper and fidelity notes, validate its config, expose real targets on its probe batch and on a plain
(x_t, t) batch (or refuse with the reason listed for it in NO_TARGET_AT_T / NEEDS_MORE_THAN_X_T),
produce a generator that samples finite points at each native NFE, and survive save/load.
"""
from __future__ import annotations

import pytest
import torch

import lab
import lab.trainable
from lab.diffusion.generators import load_generator, make_noise
from lab.errors import LabError
from lab.methods import Targets, get_method, list_methods

STEPS = 12


@pytest.fixture(scope="module")
def trained():
    cache = {}

    def get(name):
        if name not in cache:
            cls = get_method(name)
            m = cls(cls.tiny_teacher, cls.tiny_teacher.split("/")[1], {**cls.tiny, "steps": STEPS}, seed=0)
            for _ in lab.distill(m):
                pass
            cache[name] = m
        return cache[name]

    return get


@pytest.mark.parametrize("name", list_methods())
def test_method_is_documented(name):
    cls = get_method(name)
    import importlib

    doc = importlib.import_module(cls.__module__).__doc__ or ""
    assert cls.paper and cls.mechanism and cls.family, cls.describe()
    assert "fidelity" in doc.lower(), f"{name}: module docstring needs fidelity notes"
    assert "paper" in doc.lower(), f"{name}: module docstring needs to name the paper"


@pytest.mark.parametrize("name", list_methods())
def test_config_is_validated(name):
    cls = get_method(name)
    with pytest.raises(LabError, match="steps"):
        cls.Config(steps=0)
    with pytest.raises(LabError, match="allowed|unknown"):
        lab.trainable.config_from_dict(cls.Config, {"no_such_option": 1})


@pytest.mark.parametrize("name", list_methods())
def test_tiny_run_gives_a_working_generator(name, trained, tmp_path):
    m = trained(name)
    gen = m.generator()
    z = make_noise(64, 2, seed=5)
    assert gen.native_nfe, f"{name}: generator declares no native NFE"
    for nfe in gen.native_nfe:
        x = gen.sample(z=z, nfe=nfe, seed=1).x
        assert x.shape == (64, 2) and torch.isfinite(x).all(), (name, nfe)
    gen.save(tmp_path / "g")
    back = load_generator(tmp_path / "g")
    nfe = min(gen.native_nfe)
    torch.testing.assert_close(back.sample(z=z, nfe=nfe, seed=1).x, gen.sample(z=z, nfe=nfe, seed=1).x)


#: the methods that expose no regression target on their own probe batch (t = 0.5), with the reason they must give
#: (a regex over the ValueError's text) and the batch they do have targets on. Every other method must expose real
#: targets there.
NO_TARGET_AT_T = {
    "msd": (r"^msd's students map noise at t = 1 straight to the teacher's ODE endpoint; there is no regression "
            r"target at an intermediate x_t \(pass a batch from sample_batch\(\), t = 1\)$", 1.0),
}
_G_OF_Z = r"'s target depends on the generator sample G\(z\)[^,]*, not on x_t alone; pass a batch from sample_batch\(\) or probe_batch\(\)$"
_SCORE_DISTILLATION = (r"'s target is the current point x minus its score-distillation gradient; it depends on the "
                       r"particle and the injected noise, not on x_t alone")
#: the methods whose target depends on more than (x_t, t) -- the noise a sample came from, the generator's input,
#: a coupling, a particle -- and that must refuse a plain batch {x0, eps, t, x_t} (Method.probe_batch) with the reason.
#: Every other method must give real targets from x_t and t alone.
NEEDS_MORE_THAN_X_T = {
    "add": r"^add's distillation target is the teacher's x̂0 at the RE-NOISED student output, so it depends on the "
           r"re-noising noise, not on x_t alone",
    "boot": r"^boot's target depends on the noise z the trajectory starts from, not on x_t alone",
    "dmd": r"^dmd" + _G_OF_Z,
    "dmd2": r"^dmd2" + _G_OF_Z,
    "sid": r"^sid" + _G_OF_Z,
    "vsd": r"^vsd" + _G_OF_Z,
    "msd": NO_TARGET_AT_T["msd"][0],
    "reflow": r"^reflow's target depends on the \(noise, teacher sample\) coupling, not on x_t alone",
    "sds": r"^sds" + _SCORE_DISTILLATION,
    "vsd_particles": r"^vsd_particles" + _SCORE_DISTILLATION,
    "esd": r"^esd" + _SCORE_DISTILLATION,
    "dsd": r"^dsd" + _SCORE_DISTILLATION,
}


def _real_targets(name: str, tg, t: float) -> None:
    """Targets a probe can show: the declared space, x_t's shape, finite, at the asked time, not x_t passed through,
    and not one constant for the whole batch."""
    assert isinstance(tg, Targets) and tg.space in ("x0", "v"), (name, type(tg), getattr(tg, "space", None))
    assert tg.target.shape == tg.x_t.shape and torch.isfinite(tg.target).all(), name
    assert torch.allclose(tg.t, torch.full_like(tg.t, t)), (name, tg.t.min(), tg.t.max())
    assert (tg.target - tg.x_t).abs().max() > 1e-3, f"{name}: the target is x_t itself"
    assert tg.target.std(0).min() > 1e-4, f"{name}: one target for the whole batch"


@pytest.mark.parametrize("name", list_methods())
def test_targets_on_the_probe_batch_or_the_named_refusal(name, trained):
    """At t = 0.5 on the method's own probe batch: real targets, or (NO_TARGET_AT_T) a ValueError with the
    method's stated reason, and then real targets on the batch and time the reason names."""
    m = trained(name)
    batch = m.probe_batch(32, 0.5, seed=0)
    if name not in NO_TARGET_AT_T:
        _real_targets(name, m.targets(batch, t=0.5), 0.5)
        return
    reason, t_ok = NO_TARGET_AT_T[name]
    with pytest.raises(ValueError, match=reason):
        m.targets(batch, t=0.5)
    _real_targets(name, m.targets(m.sample_batch(0), t=t_ok), t_ok)


@pytest.mark.parametrize("name", list_methods())
def test_targets_from_x_t_alone_or_the_named_refusal(name, trained):
    """On a plain batch {x0, eps, t, x_t} at t = 0.5 (the base Method.probe_batch): real targets from x_t and t
    alone, or (NEEDS_MORE_THAN_X_T) a ValueError naming what else the target depends on -- never a KeyError or a
    shape error from inside the method."""
    from lab.methods.base import Method

    m = trained(name)
    plain = Method.probe_batch(m, 32, 0.5, seed=0)
    if name in NEEDS_MORE_THAN_X_T:
        with pytest.raises(ValueError, match=NEEDS_MORE_THAN_X_T[name]):
            m.targets(plain, t=0.5)
    else:
        _real_targets(name, m.targets(plain, t=0.5), 0.5)
