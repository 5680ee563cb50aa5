"""The contract of the dataset-distillation methods (lab.dd), checked on tiny runs: registry, documentation,
config validation, the synthetic images move and keep their class-by-class labels, exact resume, run folders and
the CLI, the shipped expert trajectories, the gradient-matching distance, and the probes and figures."""
from __future__ import annotations

import importlib
import json

import numpy as np
import pytest
import torch

import lab
from lab.cli import run as cli
from lab.dd import DD_REGISTRY, get, list_methods, load_synset
from lab.dd.base import ConvNet, N_CLASSES, flat_params, labels_for, new_net, random_real
from lab.dd.dc import match_distance
from lab.dd.experts import ASSETS, ExpertRecipe, load_experts, record_expert
from lab.dd.trajectory import accumulated_error, trajectory_error
from lab.errors import LabError

torch.set_num_threads(1)


def _tiny(name, seed=0, **over):
    cls = get(name)
    return cls({**cls.tiny, **over}, seed=seed)


@pytest.fixture(scope="module")
def trained():
    out = {}
    for name in list_methods():
        m = _tiny(name, steps=2)
        before = m.synset.images.detach().clone()
        states = [s.out for s in lab.distill(m)]
        out[name] = (m, before, states)
    return out


def test_registry_lists_the_four_methods():
    assert list_methods() == ["dc", "dm", "ftd", "mtt"] == sorted(DD_REGISTRY)
    with pytest.raises(LabError, match="unknown dataset distillation method 'nope'; allowed: dc, dm, ftd, mtt"):
        get("nope")


@pytest.mark.parametrize("name", ["dc", "dm", "mtt", "ftd"])
def test_method_is_documented(name):
    cls = get(name)
    doc = importlib.import_module(cls.__module__).__doc__ or ""
    d = cls.describe()
    assert d["paper"] and d["mechanism"] and d["family"] == "dataset distillation"
    assert "Fidelity notes:" in doc and "github.com/" in doc


@pytest.mark.parametrize("bad, msg", [({"ipc": 0}, "invalid ipc=0; allowed: an integer in [1, 50]"),
                                      ({"init": "zeros"}, "allowed: real, noise"),
                                      ({"augment": "flip"}, "allowed: dsa, none"),
                                      ({"lr_img": -1.0}, "invalid lr_img=-1.0"),
                                      ({"bogus": 1}, "bogus")])
def test_bad_config_is_one_line(bad, msg):
    with pytest.raises(LabError) as e:
        get("dm")(bad)
    assert msg in str(e.value) and "\n" not in str(e.value)


def test_mtt_refuses_more_epochs_than_recorded():
    with pytest.raises(LabError, match="max_start_epoch \\+ expert_epochs.*at most 6"):
        get("mtt")({"max_start_epoch": 5, "expert_epochs": 2})


@pytest.mark.parametrize("name", ["dc", "dm", "mtt", "ftd"])
def test_images_move_labels_stay(trained, name):
    m, before, states = trained[name]
    assert len(states) == 2 and all(np.isfinite(s.losses["total"]) for s in states)
    assert m.synset.images.shape == (N_CLASSES * m.config.ipc, 1, 8, 8)
    assert not torch.allclose(m.synset.images.detach(), before)
    assert torch.equal(m.labels(), labels_for(m.config.ipc))
    assert len(m.history) == 1 and 0.0 <= m.history[-1]["acc"] <= 1.0  # evaluated after the last iteration
    assert [i for i, _ in m.frames] == [0, 1, 2]


def test_ftd_evaluates_the_moving_average():
    m = _tiny("ftd", steps=1)
    start, d = m.synset.images.detach().clone(), m.config.ema_decay
    for _ in lab.distill(m):
        pass
    raw = m.synset.images.detach()
    assert not torch.equal(raw, start)
    assert torch.allclose(m.images(), d * start + (1 - d) * raw, atol=1e-6)  # the evaluated set is the average
    assert m.expert_kind == "sam" and get("mtt").expert_kind == "sgd"


@pytest.mark.parametrize("name", ["dc", "dm", "mtt", "ftd"])
def test_resume_is_exact(name):
    a = _tiny(name, steps=2, seed=3)
    for _ in lab.distill(a):
        pass
    b = _tiny(name, steps=2, seed=3)
    for _ in lab.distill(b, steps=1):
        pass
    sd = b.state_dict()
    c = _tiny(name, steps=2, seed=3)
    c.load_state_dict(sd)
    for _ in lab.distill(c):
        pass
    assert torch.equal(a.synset.images, c.synset.images) and torch.equal(a.images(), c.images())
    d = _tiny(name, steps=2, seed=4)
    for _ in lab.distill(d, steps=1):
        pass
    assert not torch.equal(d.synset.images, b.synset.images)


def test_random_real_is_class_by_class_and_seeded():
    x, y = random_real(3, 0)
    assert x.shape == (30, 1, 8, 8) and torch.equal(y, labels_for(3))
    assert torch.equal(random_real(3, 0)[0], x) and not torch.equal(random_real(3, 1)[0], x)


def test_convnet_is_deterministic_from_its_seed():
    a, b = new_net(32, 5), new_net(32, 5)
    assert torch.equal(flat_params(a), flat_params(b)) and not torch.equal(flat_params(a), flat_params(new_net(32, 6)))
    assert ConvNet(32)(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def test_match_distance_is_layerwise_one_minus_cos():
    g = [torch.randn(4, 3, 3, 3), torch.randn(4)]
    assert float(match_distance(g, g)) == pytest.approx(0.0, abs=1e-5)
    assert float(match_distance(g, [-g[0], g[1] * 5])) == pytest.approx(8.0, abs=1e-4)  # 4 rows x (1 - (-1))
    assert float(match_distance([g[1]], [-g[1]])) == 0.0  # 1-D tensors are ignored


def test_shipped_experts_are_reproducible_from_their_seed():
    traj, card = load_experts("sgd", build=False)
    assert traj.shape[:2] == (card["recipe"]["experts"], card["recipe"]["epochs"] + 1)
    assert traj.shape[2] == flat_params(new_net(32, 0)).numel()
    assert (ASSETS / "experts_sam.safetensors").exists()
    r = ExpertRecipe(**{**card["recipe"], "epochs": 1})
    t1, _ = record_expert(r, 0)
    assert torch.allclose(t1, traj[0, :2], atol=1e-5)
    sam, _ = load_experts("sam", build=False)
    assert torch.equal(sam[0, 0], traj[0, 0]) and not torch.allclose(sam[0, 1], traj[0, 1])  # same init, other path


def test_trajectory_error_starts_at_zero_and_grows():
    traj, _ = load_experts("sgd", build=False)
    x, y = random_real(1, 0)
    rows = trajectory_error(x, y, 0.01, traj, expert_ids=[0], syn_steps=4, expert_epochs=2, epochs=3)
    assert [r["epoch"] for r in rows] == [0, 1, 2, 3]
    assert rows[0]["dist"] == 0.0 and rows[0]["loss_gap"] == pytest.approx(0.0, abs=1e-6)
    assert rows[3]["dist"] > rows[1]["dist"] > 0
    assert accumulated_error(rows, "dist") == pytest.approx(sum(r["dist"] for r in rows[1:]))


def test_cli_run_eval_and_resume(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli(["dd", "run", "dm", "--ipc", "1", "--steps", "3", "--out", str(out), "--quiet",
                "--config", '{"eval_steps": 5}']) == 0
    assert "distilled set saved to" in capsys.readouterr().out
    x, y, meta = load_synset(out)
    assert x.shape == (10, 1, 8, 8) and meta["ipc"] == 1 and meta["card"]["method"] == "dm"
    assert (out / "checkpoint.safetensors").exists() and (out / "metrics.csv").exists()
    assert cli(["dd", "eval", str(out), "--nets", "1"]) == 0
    ev = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(ev) == {"ipc", "acc", "acc_std", "random_real_acc", "random_real_std"} and 0 <= ev["acc"] <= 1
    assert cli(["distill", "--resume", str(out), "--quiet"]) == 0  # a finished run resumes to itself
    assert torch.equal(load_synset(out)[0], x)


@pytest.mark.parametrize("argv, msg", [
    (["dd", "run", "nope", "--out", "X"], "unknown dataset distillation method 'nope'; allowed: dc, dm, ftd, mtt"),
    (["dd", "run", "dm", "--ipc", "0", "--out", "X"], "allowed: an integer in 1..50"),
    (["dd", "run", "dm", "--out", "X", "--config", '{"init": "x"}'], "allowed: real, noise"),
    (["dd", "eval", "NOWHERE"], "NOWHERE/model.json is missing"),
])
def test_cli_bad_input_is_one_line_exit_2(argv, msg, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and msg in err and "\n" not in err, err
    assert not (tmp_path / "X").exists() or not any((tmp_path / "X").iterdir())


def test_cli_list_names_every_method(capsys):
    assert cli(["dd", "list"]) == 0
    out = capsys.readouterr().out
    assert all(f"{n} " in out for n in ["dc", "dm", "mtt", "ftd"]) and "paper:" in out


def test_probes_and_figures(trained):
    from lab.probes import dd as probes
    from lab.viz import dd as viz

    m = trained["mtt"][0]
    fr = probes.image_frames(m)
    assert fr["images"].shape == (3, 10, 1, 8, 8) and fr["its"] == [0, 1, 2]
    fig = viz.evolution_figure(fr)
    assert len(fig.data) == 1 and list(fig.layout.yaxis.ticktext) == ["it 0", "it 1", "it 2"]
    grid = probes.class_grid(m.images())
    assert grid.shape == (10, 1, 1, 8, 8) and viz.synthetic_set_figure(grid).layout.yaxis.ticktext[9] == "class 9"
    path = probes.student_path(m.images(), m.labels(), m.eval_lr(), m.experts, expert=0, syn_steps=2,
                               expert_epochs=1)
    df = probes.parameter_paths(m.experts[:2], {"mtt": path})
    assert len(df) == 2 * m.experts.shape[1] + len(path) and set(df["kind"]) == {"expert", "student"}
    first = df[df["path"] == "mtt"][["pc1", "pc2"]].iloc[0]
    assert np.allclose(first, df[df["path"] == "expert 0"][["pc1", "pc2"]].iloc[0])  # the student starts at its init
    assert len(viz.parameter_paths_figure(df).data) == 3
    acc = probes.accuracy_table({"accuracy": {"dm": {"1": {"accs": [0.8, 0.9]}},
                                              "full data": {"all": {"accs": [0.97]}}}})
    assert acc.loc[0, "acc"] == pytest.approx(0.85)
    assert acc.loc[0, "acc_std"] == pytest.approx(np.std([0.8, 0.9], ddof=1))
    assert len(viz.accuracy_vs_ipc_figure(acc).data) == 1
    with pytest.raises(LabError, match="lacks columns"):
        viz.trajectory_error_figure(acc)
