"""lab.runs.index: the runs root as a table, the distances behind it, the Pareto front, snapshots, and paths
confined to their roots; lab.viz.runs draws them."""
from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from lab import zoo
from lab.data import toy2d
from lab.diffusion.generators import ConsistencyGenerator, load_generator
from lab.errors import LabError
from lab.metrics import noise_floor, sliced_wasserstein
from lab.runs import Run, index
from lab.runs.recipes import distill_run
from lab.viz import runs as runviz

TEACHER = "toy2d/8gaussians/teacher"


def _run_folder(folder, gen, method: str, data: str = "toy2d:8gaussians", seconds: float = 1.5, steps: int = 100,
                snapshots=(50, 100)):
    """A run folder as ``lab distill`` writes one (config.json, metrics.csv, snapshots, model), around ``gen``."""
    with Run.create(folder, {"kind": "distill", "method": method, "teacher": TEACHER, "data": data, "steps": steps,
                             "config": {"steps": steps}, "seed": 0}) as run:
        run.write_metrics([{"step": s, "stage": method, f"loss/{method}": 1.0 / s} for s in (10, 50, steps)])
        for s in snapshots:
            run.write_snapshot(s, {"samples": np.full((16, 2), float(s), np.float32), "samples_nfe": np.array(1)})
        gen.save(folder, {"data": data, "recipe": {"method": method}, "train_seconds": seconds})
    return folder


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A runs root: a good zoo student and a poor one-step student (both as run folders), a run distilled by the
    recipe (10 steps), a run without a model yet, an unreadable folder, and a symlink to a run outside the root."""
    base = tmp_path_factory.mktemp("runs_index")
    r = base / "runs"
    good = zoo.load("toy2d/8gaussians/consistency", train_if_missing=False, progress=False)
    _run_folder(r / "good", good, "consistency", seconds=36.4)
    teacher = zoo.load(TEACHER, train_if_missing=False, progress=False)
    _run_folder(r / "nested" / "poor", ConsistencyGenerator(teacher.denoiser, native_nfe=(1,)), "dmd", seconds=2.0)
    distill_run("consistency", TEACHER, r / "recipe", steps=10, progress=False)
    with Run.create(r / "training", {"kind": "distill", "method": "sid", "teacher": TEACHER,
                                     "data": "toy2d:8gaussians", "steps": 500, "config": {}}):
        pass
    (r / "broken").mkdir()
    (r / "broken" / "config.json").write_text("{not json")
    _run_folder(base / "outside", good, "consistency")
    os.symlink(base / "outside", r / "escape", target_is_directory=True)
    return r


def test_runs_table_lists_every_run_folder_with_what_it_ran(root):
    df = index.runs_table(root)
    assert set(df.name) == {"good", "nested/poor", "recipe", "training", "broken"}  # the symlink out is left out
    assert list(df.columns) == index.COLUMNS
    rows = df.set_index("name")
    assert rows.loc["good", "kind"] == "distill" and rows.loc["good", "method"] == "consistency"
    assert rows.loc["good", "data"] == "toy2d:8gaussians" and rows.loc["good", "teacher"] == TEACHER
    assert rows.loc["good", "seconds"] == 36.4 and rows.loc["good", "steps"] == 100
    assert rows.loc["good", "steps_done"] == 100 and rows.loc["good", "native_nfe"] == "1, 2, 4"
    assert rows.loc["recipe", "steps"] == 10 and rows.loc["recipe", "steps_done"] == 10
    assert rows.loc["recipe", "seconds"] > 0  # the recipe's model card records its training time
    assert rows.loc["broken", "kind"].startswith("unreadable") and "config.json" in rows.loc["broken", "kind"]
    assert not rows.loc["training", "has_model"] and pd.isna(rows.loc["training", "best_distance"])
    # newest first: the folder written last (the one still training) comes before the first one written
    assert list(df.name).index("training") < list(df.name).index("good")


def test_best_distance_is_the_measured_minimum_over_the_trained_nfes(root):
    q = index.measure(root / "good", root)
    assert list(q.nfe) == [1, 2, 4] and (q.metric == "swd").all()
    gen = load_generator(root / "good")
    source = toy2d.get("8gaussians")
    ref = source.sample(index.N_POINTS, 99)
    for k, d in zip(q.nfe, q.distance):  # measured exactly as documented: n points, seed 1, data seed 99
        assert d == pytest.approx(sliced_wasserstein(gen.sample(index.N_POINTS, nfe=int(k), seed=1).x, ref))
    assert q.floor.iloc[0] == pytest.approx(noise_floor(source, index.N_POINTS))
    row = index.runs_table(root).set_index("name").loc["good"]
    assert row.best_distance == q.distance.min() and row.nfe == int(q.nfe[q.distance.idxmin()])
    assert index.measure(root / "training", root).empty  # no model yet: nothing measured


def test_pareto_front_leaves_out_dominated_points():
    df = pd.DataFrame({"name": list("abcdef"), "data": ["x"] * 5 + ["y"], "nfe": [1, 1, 2, 4, 4, 50],
                       "distance": [0.5, 0.3, 0.3, 0.1, 0.2, 9.0]})
    front = index.pareto(df)
    # b beats a (same NFE, closer); c is no better than b at more NFE; e is beaten by d; y has its own front
    assert list(front.name) == ["b", "d", "f"]
    assert list(index.pareto(df, by=None).name) == ["b", "d"]
    tie = pd.DataFrame({"name": ["p", "q"], "data": ["x", "x"], "nfe": [1, 1], "distance": [0.2, 0.2]})
    assert list(index.pareto(tie).name) == ["p", "q"]  # equal points do not dominate each other


def test_a_dominated_run_is_not_on_the_front(root):
    table = index.runs_table(root)
    points = index.quality_points(table, root)
    assert set(points.name) == {"good", "nested/poor", "recipe"}
    poor = points[points.name == "nested/poor"].iloc[0]
    good1 = points[(points.name == "good") & (points.nfe == 1)].iloc[0]
    assert good1.distance < poor.distance  # the zoo student beats the untrained one-step student at 1 NFE
    front = index.pareto(points)
    assert "nested/poor" not in set(front.name) and ("good", 1) in set(zip(front.name, front.nfe))
    fig = runviz.pareto_figure(points, front)
    lines = [t for t in fig.data if t.name == "Pareto front"]
    assert len(lines) == 1 and list(lines[0].y) == list(front.sort_values("nfe").distance)
    drawn = {(t.text[0], x, y) for t in fig.data if t.text for x, y in zip(t.x, t.y)}
    assert drawn == set(zip(points.name, points.nfe, points.distance))  # every measured point, once


def test_a_damaged_model_is_listed_not_fatal(tmp_path):
    r = tmp_path / "runs"
    _run_folder(r / "damaged", zoo.load(TEACHER, train_if_missing=False, progress=False), "consistency")
    w = r / "damaged" / "weights.safetensors"
    w.write_bytes(w.read_bytes()[:64])
    row = index.runs_table(r).iloc[0]
    assert row["name"] == "damaged" and row.kind == "distill" and pd.isna(row.best_distance)
    assert row.metric.startswith("not measured: ") and "weights.safetensors" in row.metric
    assert index.quality_points(index.runs_table(r), r).empty


def test_filter_runs(root):
    df = index.runs_table(root, evaluate=False)
    assert set(index.filter_runs(df, method=["dmd"]).name) == {"nested/poor"}
    assert set(index.filter_runs(df, kind=["distill"], method=None).name) == set(df.name) - {"broken"}
    assert len(index.filter_runs(df, data=[])) == len(df)
    with pytest.raises(LabError, match="unknown run column 'nope'"):
        index.filter_runs(df, nope=["x"])


def test_snapshots_are_read_back_and_drawn(root):
    assert index.snapshot_steps(root / "good") == [50, 100]
    snap = index.snapshot(root / "good")
    assert snap["step"] == 100 and snap["samples"].shape == (16, 2) and (snap["samples"] == 100).all()
    assert (index.snapshot(root / "good", 50)["samples"] == 50).all()
    with pytest.raises(LabError, match="no snapshot at step 7; allowed: 50, 100"):
        index.snapshot(root / "good", 7)
    fig = runviz.snapshot_figure(snap)
    assert list(fig.data[0].x) == [100.0] * 16 and "step 100" in fig.layout.title.text
    imgs = {"samples": np.zeros((20, 1, 8, 8), np.float32), "samples_nfe": np.array(1), "step": 3}
    grid = runviz.snapshot_figure(imgs)
    assert grid.data[0].type == "image" and list(grid.layout.yaxis.ticktext) == ["#0", "#8", "#16"]


def test_confine_refuses_paths_that_leave_the_root(root, tmp_path):
    assert index.confine(root / "good", root) == (root / "good").resolve()
    assert index.confine(root / "nested" / ".." / "good", root) == (root / "good").resolve()
    for bad in (root / ".." / "outside", root / "escape", root / "escape" / "model.json", "/etc/passwd"):
        with pytest.raises(LabError, match="leaves the allowed folders; allowed: folders under"):
            index.confine(bad, root)
    assert index.confine(tmp_path, root, tmp_path) == tmp_path.resolve()  # any of several roots
    loop = tmp_path / "loop"
    os.symlink(loop, loop)
    with pytest.raises(LabError):
        index.confine(loop / "x", root)


def test_runs_root_follows_lab_runs(monkeypatch, tmp_path):
    monkeypatch.delenv("LAB_RUNS", raising=False)
    assert str(index.runs_root()) == "runs"
    monkeypatch.setenv("LAB_RUNS", str(tmp_path))
    assert index.runs_root() == tmp_path
    assert index.runs_table().empty and list(index.runs_table().columns) == index.COLUMNS


def test_a_data_file_is_read_only_inside_the_root(root, tmp_path):
    """A run's data may be a points file (custom data): it is measured when the file lies inside the runs root,
    never read from elsewhere."""
    teacher = zoo.load(TEACHER, train_if_missing=False, progress=False)
    points = np.random.default_rng(0).normal(size=(500, 2)).astype(np.float32)
    inside_root = tmp_path / "inside"
    np.save(tmp_path / "elsewhere.npy", points)
    (inside_root / "data").mkdir(parents=True)
    np.save(inside_root / "data" / "points.npy", points)
    out = _run_folder(inside_root / "out", teacher, "consistency", data=str(tmp_path / "elsewhere.npy"))
    ok = _run_folder(inside_root / "ok", teacher, "consistency", data=str(inside_root / "data" / "points.npy"))
    assert index.measure(out, inside_root).empty
    q = index.measure(ok, inside_root)
    assert list(q.nfe) == list(index.EVAL_NFE) and (q.distance > 0).all()
    rows = index.runs_table(inside_root).set_index("name")
    assert pd.isna(rows.loc["out", "best_distance"]) and rows.loc["ok", "best_distance"] == q.distance.min()
