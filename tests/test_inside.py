"""lab.probes.inside / lab.viz.inside: a saved student's method rebuilt around it, and views of its internals."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import lab
from lab.errors import LabError
from lab.probes.dm import fake_score_error
from lab.probes.inside import (OWN_KINDS, auxiliary_nets, cka_view, consistency_grid, fit_auxiliary, get_method,
                               inside_views, rebuild_method)
from lab.viz.inside import view_figure


def _student(m):
    return lab.zoo.load(f"toy2d/8gaussians/{m}", train_if_missing=False)


#: per kind, the columns (of the view's frame, or of a frame in its dict) that must be finite and non-empty
FINITE = {"field": {None: ["x", "y", "u", "v"]}, "cka": {None: ["cka"]},
          "fake_score_error": {None: ["it", "error_eps"]}, "decision": {"field": ["logit"], "samples": ["x", "y"]},
          "scm": {None: ["tangent_norm", "weight"]}, "path_error": {None: ["error", "teacher_spread"]},
          "guidance_sweep": {"summary": ["swd"], "samples": ["x", "y"]},
          "student_split": {None: ["x", "y"]}, "segments": {"gaps": ["gap"]},
          "consistency_grid": {None: ["consistency", "endpoint"]},
          "straightness": {"paths": ["x", "y"], "summary": ["straightness"]}, "schedule": {None: ["step"]}}


def _finite(view):
    if view.kind in ("x0", "guidance_grid"):
        arrays = [v for v in view.data.values() if isinstance(v, np.ndarray) and v.dtype.kind == "f"] + \
            [a for d in view.data.values() if isinstance(d, dict) for a in d.values()
             if isinstance(a, np.ndarray) and a.dtype.kind == "f"]
        assert arrays and all(a.size and np.isfinite(a).all() for a in arrays)
        return
    for key, cols in FINITE[view.kind].items():
        f = view.data if key is None else view.data[key]
        assert isinstance(f, pd.DataFrame) and len(f) > 0
        assert np.isfinite(f[cols].to_numpy(float)).all()


def _check_drawn(view, fig):
    """The figure draws the view's data: trace counts and lengths follow the data."""
    d, kind = view.data, view.kind
    if kind == "field":
        names = {tr.name for tr in fig.data}
        for k in d.kind.unique():
            assert ("discriminator gradient" if k == "discriminator" else k) in names
    elif kind == "cka":
        z = np.asarray(fig.data[0].z)
        assert z.shape == (d.teacher_layer.nunique(), d.student_layer.nunique())
        np.testing.assert_allclose(np.sort(z.ravel()), np.sort(d.cka.to_numpy()))
    elif kind == "fake_score_error":
        assert len(fig.data) == d.t.nunique()
        assert all(len(tr.x) == d.it.nunique() for tr in fig.data)
    elif kind == "decision":
        assert np.asarray(fig.data[0].z).size == len(d["field"])
        assert sum(len(tr.x) for tr in fig.data[1:]) == len(d["samples"])
    elif kind in ("scm", "consistency_grid"):
        assert len(fig.data[0].y) == len(d)
    elif kind == "path_error":
        assert len(fig.data) == d.kind.nunique() + 1
        assert sum(len(tr.x) for tr in fig.data[:-1]) == len(d)
    elif kind == "guidance_sweep":
        assert len(fig.data) == len(d["summary"])
        assert sum(len(tr.x) for tr in fig.data) == len(d["samples"])
    elif kind == "student_split":
        assert sum(len(tr.x) for tr in fig.data) == len(d)
    elif kind == "segments":
        assert len(fig.data) == 3 * d["boundaries"].loc[d["boundaries"].kind == "boundary", "K"].nunique()
    elif kind == "straightness":
        assert len(fig.data) == 2 * len(d["summary"])
    elif kind == "schedule":
        assert len(fig.data) == d.quantity.nunique()
        assert all(len(tr.x) == d.step.nunique() for tr in fig.data)
    else:
        raise AssertionError(f"no check for kind {kind}")


METHODS_2D = sorted(m for m in lab.list_methods() if "points" in get_method(m).data_kinds)


def test_the_2d_methods_are_the_step_methods_with_their_own_view():
    assert len(METHODS_2D) == 20 and set(METHODS_2D) == set(OWN_KINDS)


@pytest.mark.parametrize("name", METHODS_2D)
def test_every_method_gets_a_view_of_its_own(name):
    steps = []
    views = inside_views(_student(name), fit_steps=6, n=128, progress=lambda f, text="": steps.append(f))
    kinds = [v.kind for v in views]
    assert OWN_KINDS[name] in kinds and "field" in kinds
    assert steps and steps[-1] == 1.0 and steps == sorted(steps)
    for v in views:
        assert v.title and len(v.title) <= 45
        assert v.caption.count(". ") + v.caption.count("; ") >= 1 and v.caption.rstrip().endswith(".")
        _finite(v)
        _check_drawn(v, view_figure(v))
    for v in views:  # 2D planes are drawn with equal scales
        if v.kind in ("field", "decision"):
            assert view_figure(v).layout.yaxis.scaleanchor == "x"


def test_rebuilt_method_samples_like_the_saved_student_and_a_wrong_one_does_not():
    saved = _student("dmd")
    z = torch.randn(256, 2, generator=torch.Generator().manual_seed(3))
    ref = saved.sample(z=z, nfe=1, seed=0).x
    method = rebuild_method(saved, fit_steps=0)
    assert torch.equal(method.generator().sample(z=z, nfe=1, seed=0).x, ref)
    # the same recipe without the saved weights (the teacher-initialised generator) samples elsewhere
    fresh = get_method("dmd")(method.teacher_gen, "toy2d:8gaussians", {"reg_weight": 0.0, "batch": 64}, seed=0)
    assert (fresh.generator().sample(z=z, nfe=1, seed=0).x - ref).norm(dim=1).mean() > 0.1
    # a student of another method does not load into dmd's networks
    other = _student("sds")
    other.card = {**saved.card}
    with pytest.raises(LabError, match="do not match"):
        rebuild_method(other, fit_steps=0)


def test_fitting_lowers_the_fake_score_error_and_leaves_the_student_frozen():
    method = rebuild_method(_student("dmd"), fit_steps=0)
    before = fake_score_error(method, (0.2, 0.5), n=1000, n_eval=500).error_eps.to_numpy()
    student = {k: v.clone() for k, v in method.gen.net.state_dict().items()}
    assert fit_auxiliary(method, 150) == 150
    after = fake_score_error(method, (0.2, 0.5), n=1000, n_eval=500).error_eps.to_numpy()
    assert after[0] < 0.8 * before[0]  # the teacher-initialised fake score lags the student's distribution
    assert all(torch.equal(v, method.gen.net.state_dict()[k]) for k, v in student.items())


def test_step_and_restore_fits_only_the_discriminator():
    method = rebuild_method(_student("add"), fit_steps=0)
    assert auxiliary_nets(method) == ["discriminator"]
    student = {k: v.clone() for k, v in method.student.net.state_dict().items()}
    disc = {k: v.clone() for k, v in method.disc.state_dict().items()}
    fit_auxiliary(method, 3)
    assert all(torch.equal(v, method.student.net.state_dict()[k]) for k, v in student.items())
    assert any(not torch.equal(v, method.disc.state_dict()[k]) for k, v in disc.items())


def test_consistency_grid_separates_the_trained_student_from_its_start():
    method = rebuild_method(_student("consistency"), fit_steps=0)
    trained = consistency_grid(method, n=256)
    untrained = consistency_grid(get_method("consistency")(method.teacher_gen, "toy2d:8gaussians", {"batch": 64}),
                                 n=256)
    assert list(trained.t) == [k / method.config.n_intervals for k in range(1, method.config.n_intervals + 1)]
    # one step from noise: the teacher-initialised student predicts about the data mean, the trained one the end
    assert trained.endpoint.iloc[-1] < 0.5 * untrained.endpoint.iloc[-1]


def test_progressive_schedule_ends_at_the_saved_students_nfe():
    saved = _student("progressive")
    views = {v.kind: v for v in inside_views(saved, fit_steps=0, n=64)}
    nfe = views["schedule"].data.query("quantity == 'student steps (NFE)'").value.to_numpy()
    assert nfe[0] == saved.card["recipe"]["config"]["start_steps"] // 2
    assert nfe[-1] == min(saved.native_nfe)
    assert (np.diff(nfe) <= 0).all() and len(set(nfe)) == saved.card["recipe"]["config"]["halvings"]


def test_cka_of_the_teacher_with_itself_is_one_and_an_scm_student_drifts_from_it():
    teacher, student = lab.zoo.load("toy2d/8gaussians/teacher"), _student("scm")
    own = cka_view(teacher, teacher, "teacher", n=128).data
    vs = cka_view(teacher, student, "scm", n=128)  # its TrigFlow wrapper has no layers of its own: unwrapped
    assert vs is not None and list(vs.data.student_layer.unique()) == list(own.student_layer.unique())
    diag = lambda d: d[d.teacher_layer == d.student_layer].cka.to_numpy()  # noqa: E731
    assert np.allclose(diag(own), 1.0, atol=1e-5)
    assert diag(vs.data)[-1] < 0.99 < diag(own)[-1]
    assert cka_view(teacher, _student("sds"), "sds") is None  # particles: no network to compare


def test_a_teacher_has_no_recipe():
    teacher = lab.zoo.load("toy2d/8gaussians/teacher")
    for call in (lambda: inside_views(teacher), lambda: rebuild_method(teacher)):
        with pytest.raises(LabError) as e:
            call()
        assert "\n" not in str(e.value) and "allowed:" in str(e.value)


def test_digits_views():
    teacher = lab.zoo.load("digits/teacher", train_if_missing=False)
    for name, own in (("guidance", "guidance_grid"), ("progressive", "schedule")):
        student = lab.zoo.load(f"digits/{name}", train_if_missing=False)
        views = inside_views(student, teacher)
        kinds = [v.kind for v in views]
        assert {"x0", "cka", own} <= set(kinds)
        for v in views:
            _finite(v)
            assert len(view_figure(v).data) >= 1
        x0 = next(v for v in views if v.kind == "x0").data
        assert x0[name]["x0"].shape[2:] == tuple(student.shape)
