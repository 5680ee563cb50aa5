"""The contract every registered method keeps, checked on a tiny run of each.

A new method file is picked up by the registry and lands here automatically: it must name
its paper and fidelity notes, validate its config, expose targets (or say why it has none),
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


@pytest.mark.parametrize("name", list_methods())
def test_targets_are_exposed_or_refused_with_a_reason(name, trained):
    m = trained(name)
    try:
        tg = m.targets(m.probe_batch(32, 0.5, seed=0), t=0.5)
    except ValueError as e:
        assert len(str(e)) > 20, f"{name}: targets() refused without a reason"
        return
    assert isinstance(tg, Targets) and tg.space in ("x0", "v")
    assert tg.target.shape == tg.x_t.shape and torch.isfinite(tg.target).all()
