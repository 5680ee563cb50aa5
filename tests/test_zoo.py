"""The zoo: shipped entries load instantly; a missing entry is trained once with a progress bar, then cached."""
from __future__ import annotations

import pytest

import lab
from lab import zoo
from lab.errors import LabError


def test_every_distribution_ships_a_teacher_with_a_card():
    for name in lab.data.toy2d.names():
        p = zoo.find(f"toy2d/{name}/teacher")
        assert p is not None and zoo.ASSETS in p.parents, name
        card = zoo.card(f"toy2d/{name}/teacher")
        assert card["recipe"]["trainer"] == "flow matching"
        assert card["metrics"]["swd@50"] < card["metrics"]["swd@1"]  # the card's own numbers are sane


def test_unknown_entry_names_the_allowed_ones():
    with pytest.raises(LabError, match="allowed: toy2d/8gaussians/teacher"):
        zoo.load("toy2d/nope/teacher")


def test_missing_entry_trains_on_demand_and_is_cached(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(zoo, "ASSETS", tmp_path / "assets")  # nothing shipped
    monkeypatch.setenv("LAB_CACHE", str(tmp_path / "cache"))
    assert zoo.find("toy2d/moons/teacher") is None
    with pytest.raises(LabError, match="neither shipped nor cached"):
        zoo.load("toy2d/moons/teacher", train_if_missing=False)
    gen = zoo.load("toy2d/moons/teacher", steps=30, progress=True)
    cached = tmp_path / "cache" / "zoo" / "toy2d" / "moons" / "teacher"
    assert (cached / "model.json").exists() and (cached / "weights.safetensors").exists()
    assert gen.card["recipe"]["config"]["steps"] == 30
    assert "zoo toy2d/moons/teacher" in capsys.readouterr().err  # the progress bar was shown
    calls = []
    monkeypatch.setattr(zoo, "build_entry", lambda *a, **k: calls.append(a))
    again = zoo.load("toy2d/moons/teacher")
    assert calls == []  # second load comes from the cache, no training
    x1 = gen.sample(50, nfe=2, seed=0).x
    x2 = again.sample(50, nfe=2, seed=0).x
    assert (x1 == x2).all()


def test_run_folders_with_students_are_found_by_data(tmp_path):
    from lab.runs import find_students
    from lab.runs.recipes import distill_run, train_teacher_run

    small = {"batch": 32, "student_net": {"type": "mlp", "hidden": 16, "depth": 1, "t_dim": 8}}
    distill_run("consistency", "toy2d/8gaussians/analytic", tmp_path / "cd", steps=3, config=small, progress=False)
    train_teacher_run("toy2d:8gaussians", tmp_path / "t", steps=3, progress=False, config={"batch": 32})
    found = find_students("toy2d:8gaussians", tmp_path)
    assert list(found["run"]) == [str(tmp_path / "cd")]  # the teacher run is not a student
    assert find_students("toy2d:moons", tmp_path).empty
    assert lab.load(found["run"][0]).sample(5, nfe=1).x.shape == (5, 2)


def test_every_student_entry_is_shipped_with_its_recipe():
    """The app's generator comparison shows zoo students: every student entry ships in assets/ with a card
    naming its method and the teacher it was distilled from."""
    students = [e for e in zoo.shipped_entries() if not e.endswith("/teacher")]
    assert {e.rsplit("/", 1)[1] for e in students} >= set(zoo.student_methods(zoo.SHOWCASE_DATASET))
    for e in students:
        p = zoo.find(e)
        assert p is not None and zoo.ASSETS in p.parents, f"{e} is not shipped; build it with `lab zoo build`"
        card = zoo.card(e)
        data, method = e.split("/")[-2:]
        assert card["recipe"]["method"] == method and card["recipe"]["teacher"] == zoo.student_teacher(data, method)
        assert method in lab.list_methods()


def test_a_method_class_says_which_zoo_students_it_has(monkeypatch):
    """The zoo's lists are read from the method classes: a method registered with ``zoo_points="showcase"``,
    a conditional teacher and a digits student is an entry on the showcase dataset and on digits only."""
    from lab.methods import REGISTRY

    class Fake(lab.Method):
        zoo_points, needs_conditional_teacher, zoo_digits, digits_recipe = "showcase", True, True, {"steps": 3}

    before = zoo.entries()
    monkeypatch.setitem(REGISTRY, "zz_fake", Fake)
    added = [e for e in zoo.entries() if e not in before]
    assert added == [f"toy2d/{zoo.SHOWCASE_DATASET}/zz_fake", "digits/zz_fake"]
    assert zoo.student_teacher(zoo.SHOWCASE_DATASET, "zz_fake") == f"toy2d/{zoo.SHOWCASE_DATASET}/analytic"
    assert zoo.image_student_recipes()["zz_fake"] == {"steps": 3}
