"""Model folders and network specs are validated: every malformed generator or classifier folder is one
LabError line naming the file (the CLI: one `error:` line, exit 2), and a nested network spec is checked
like a top-level config (unknown keys and bad values refused) and recorded complete."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

import lab
from lab import cli
from lab.diffusion import Denoiser
from lab.diffusion.generators import FlowGenerator, load_generator
from lab.errors import LabError
from lab.io import save_tensors
from lab.kd.zoo import KDModel, load_model
from lab.nets import build_net, check_net_spec
from lab.nets.classifiers import build_classifier

GEN_NET = {"type": "mlp", "hidden": 8, "depth": 1, "t_dim": 4}
CLF_NET = {"type": "clf_mlp", "in_dim": 2, "hidden": [4], "n_classes": 3}


def make_generator(folder: Path) -> Path:
    torch.manual_seed(0)
    FlowGenerator(Denoiser(build_net(GEN_NET), "linear", "v")).save(folder, {"data": "toy2d:8gaussians"})
    return folder


def make_classifier(folder: Path) -> Path:
    torch.manual_seed(0)
    KDModel(build_classifier(CLF_NET), {"task": "moons"}).save(folder)
    return folder


def edit_json(folder: Path, fn) -> None:
    mj = folder / "model.json"
    d = json.loads(mj.read_text())
    fn(d)
    mj.write_text(json.dumps(d))


def set_path(d: dict, path: str, value) -> None:
    *head, last = path.split(".")
    for k in head:
        d = d[k]
    if value is DELETE:
        del d[last]
    else:
        d[last] = value


DELETE = object()


def break_folder(folder: Path, case: str, outside: Path) -> str:
    """Damage ``folder`` as ``case`` says; return a word the error must contain."""
    mj, w = folder / "model.json", folder / "weights.safetensors"
    if case == "no_folder":
        import shutil

        shutil.rmtree(folder)
        return "does not exist"
    if case == "no_model_json":
        mj.unlink()
        return "no model.json"
    if case == "not_json":
        mj.write_text('{"kind": "flow", "nets": ')
        return "not valid JSON"
    if case == "not_utf8":
        mj.write_bytes(b"\xff\xfe\x00{")
        return "not valid JSON"
    if case == "not_object":
        mj.write_text("[1, 2, 3]")
        return "JSON object"
    if case == "card_not_object":
        edit_json(folder, lambda d: d.update(card=["x"]))
        return "card"
    if case == "no_weights":
        w.unlink()
        return "weights.safetensors"
    if case == "truncated_weights":
        w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
        return "weights.safetensors"
    if case == "garbage_weights":
        w.write_bytes(os.urandom(300))
        return "weights.safetensors"
    if case == "empty_weights":
        w.write_bytes(b"")
        return "weights.safetensors"
    if case == "nan_weight":
        from lab.io import load_tensors

        t = load_tensors(w)
        k = sorted(t)[0]
        t[k].view(-1)[0] = float("nan")
        save_tensors(w, t)
        return "NaN"
    if case == "model_json_symlink_outside":
        (outside / "model.json").write_text(mj.read_text())
        mj.unlink()
        mj.symlink_to(outside / "model.json")
        return "outside the model folder"
    if case == "weights_symlink_outside":
        (outside / "w.safetensors").write_bytes(w.read_bytes())
        w.unlink()
        w.symlink_to(outside / "w.safetensors")
        return "outside the model folder"
    raise AssertionError(case)


COMMON = ["no_folder", "no_model_json", "not_json", "not_utf8", "not_object", "card_not_object", "no_weights",
          "truncated_weights", "garbage_weights", "empty_weights", "nan_weight", "model_json_symlink_outside",
          "weights_symlink_outside"]
# generator-specific damage: (key path in model.json, new value or DELETE, a word the error must contain)
GEN_SPEC = {
    "no_kind": ("kind", DELETE, "kind"),
    "unknown_kind": ("kind", "teleport", "teleport"),
    "no_nets": ("nets", DELETE, "nets"),
    "nets_not_object": ("nets", [1], "nets"),
    "no_process": ("process", DELETE, "process"),
    "bad_hidden": ("nets.denoiser.hidden", -1, "nets.denoiser.hidden"),
    "hidden_a_string": ("nets.denoiser.hidden", "big", "nets.denoiser.hidden"),
    "unknown_net_option": ("nets.denoiser.foo", 1, "nets.denoiser.foo"),
    "unknown_net_type": ("nets.denoiser.type", "resnet", "resnet"),
    "bad_native_nfe": ("native_nfe", [0], "native_nfe"),
    "wrong_shape": ("nets.denoiser.hidden", 9, "wrong shape"),   # weights for hidden 8, spec says 9
    "missing_net": ("nets.extra_net", dict(GEN_NET), "missing"),  # a listed net without weights
}
KD_SPEC = {
    "no_kind": ("kind", DELETE, "classifier"),
    "no_net": ("net", DELETE, "net"),
    "net_not_object": ("net", "mlp", "net"),
    "bad_hidden": ("net.hidden", [0], "net.hidden"),
    "unknown_net_option": ("net.foo", 1, "net.foo"),
    "missing_in_dim": ("net.in_dim", DELETE, "net.in_dim"),
    "wrong_shape": ("net.hidden", [5], "wrong shape"),
}


def assert_one_line(e: pytest.ExceptionInfo, *needles):
    msg = str(e.value)
    assert "\n" not in msg and msg, msg
    for n in needles:
        assert n in msg, (n, msg)


@pytest.mark.parametrize("case", COMMON)
@pytest.mark.parametrize("loader", ["generator", "classifier"])
def test_malformed_model_folders(tmp_path, case, loader):
    make = make_generator if loader == "generator" else make_classifier
    load = load_generator if loader == "generator" else load_model
    folder = make(tmp_path / "model")
    (tmp_path / "outside").mkdir()
    load(folder)  # the intact folder loads
    needle = break_folder(folder, case, tmp_path / "outside")
    with pytest.raises(LabError) as e:
        load(folder)
    assert_one_line(e, needle)


@pytest.mark.parametrize("case", list(GEN_SPEC))
def test_malformed_generator_specs(tmp_path, case):
    folder = make_generator(tmp_path / "model")
    path, value, needle = GEN_SPEC[case]
    edit_json(folder, lambda d: set_path(d, path, value))
    with pytest.raises(LabError) as e:
        load_generator(folder)
    assert_one_line(e, needle)


@pytest.mark.parametrize("case", list(KD_SPEC))
def test_malformed_classifier_specs(tmp_path, case):
    folder = make_classifier(tmp_path / "model")
    path, value, needle = KD_SPEC[case]
    edit_json(folder, lambda d: set_path(d, path, value))
    with pytest.raises(LabError) as e:
        load_model(folder)
    assert_one_line(e, needle)


def test_extra_weights_and_inside_symlinks(tmp_path):
    folder = make_generator(tmp_path / "gen")
    from lab.io import load_tensors

    t = load_tensors(folder / "weights.safetensors")
    save_tensors(folder / "weights.safetensors", {**t, "ghost.w": torch.zeros(2)})
    with pytest.raises(LabError) as e:
        load_generator(folder)
    assert_one_line(e, "ghost", "weights.safetensors")
    save_tensors(folder / "weights.safetensors", t)
    # a symlink that stays inside the folder is fine
    (folder / "files").mkdir()
    os.replace(folder / "weights.safetensors", folder / "files" / "w.safetensors")
    (folder / "weights.safetensors").symlink_to(Path("files") / "w.safetensors")
    assert load_generator(folder).sample(3, nfe=1).x.shape == (3, 2)


def test_a_spec_claiming_a_huge_net_is_refused_before_it_is_built(tmp_path):
    """hidden 4096 x depth 32 (half a billion parameters, 2 GB) beside small weights: refused from the shapes
    alone (checked on the meta device), in well under the seconds the real allocation would take."""
    import time

    gen, clf = make_generator(tmp_path / "gen"), make_classifier(tmp_path / "clf")
    edit_json(gen, lambda d: d["nets"]["denoiser"].update(hidden=4096, depth=32))
    edit_json(clf, lambda d: d["net"].update(hidden=[4096] * 32))
    for load, folder in ((load_generator, gen), (load_model, clf)):
        t0 = time.perf_counter()
        with pytest.raises(LabError) as e:
            load(folder)
        assert time.perf_counter() - t0 < 0.5
        assert_one_line(e, "weights.safetensors", "wrong shape")


BAD_FOR_CLI = ["not_json", "truncated_weights", "weights_symlink_outside", "no_model_json"]


@pytest.mark.parametrize("case", BAD_FOR_CLI)
def test_cli_on_malformed_folders_exits_2(tmp_path, monkeypatch, capsys, case):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "outside").mkdir()
    gen, clf = make_generator(tmp_path / "gen"), make_classifier(tmp_path / "clf")
    break_folder(gen, case, tmp_path / "outside")
    break_folder(clf, case, tmp_path / "outside")
    for args in (["sample", "gen", "--n", "5", "--out", "s.npy"], ["kd", "eval", "--model", "clf", "--task", "moons"]):
        code = cli.run(args)
        err = capsys.readouterr().err.splitlines()
        assert code == 2 and len(err) == 1 and err[0].startswith("error: "), (args, code, err)
    assert not (tmp_path / "s.npy").exists()


# ---------------------------------------------------------------- nested network specs in configs
def test_net_spec_validation_names_the_field_and_the_range():
    for spec, needles in (({"type": "mlp", "hidden": -1}, ["student_net.hidden", "1..4096"]),
                          ({"hidden": 5000}, ["student_net.hidden", "1..4096"]),
                          ({"depth": 0}, ["student_net.depth", "1..32"]),
                          ({"depth": 2.0}, ["student_net.depth", "1..32"]),
                          ({"t_dim": 7}, ["student_net.t_dim", "even"]),
                          ({"foo": 1}, ["student_net.foo", "allowed: dim, hidden, depth"]),
                          ({"type": "clf_mlp", "in_dim": 2}, ["'clf_mlp'", "allowed: mlp, unet"]),
                          ({"type": "unet", "block_out_channels": [8]}, ["student_net.block_out_channels", "2..8"]),
                          ({"extra": ["w", "w"]}, ["student_net.extra"]),
                          ("mlp", ["student_net", "JSON object"])):
        with pytest.raises(LabError) as e:
            check_net_spec(spec, "student_net", ("mlp", "unet"))
        assert_one_line(e, *needles)


@pytest.mark.parametrize("config,field,value,needles", [
    ("method", "student_net", {"type": "mlp", "hidden": -1}, ["student_net.hidden"]),
    ("method", "student_net", {"foo": 1}, ["student_net.foo"]),
    ("teacher", "net", {"depth": 99}, ["net.depth", "1..32"]),
    ("sds", "gen_net", {"hidden": 0}, ["gen_net.hidden"]),
    ("vsd", "fake_net", {"widht": 3}, ["fake_net.widht"]),
    ("kd", "student", {"type": "clf_mlp", "in_dim": 2, "hidden": [-4]}, ["student.hidden"]),
    ("kd", "student", {"type": "clf_cnn", "chanels": [4]}, ["student.chanels"]),
])
def test_config_dataclasses_validate_nested_net_specs(config, field, value, needles):
    from lab.diffusion.train import TeacherConfig
    from lab.kd.base import KDConfig
    from lab.methods import get_method
    from lab.methods.base import MethodConfig

    cls = {"method": MethodConfig, "teacher": TeacherConfig, "sds": get_method("sds").Config,
           "vsd": get_method("vsd_particles").Config, "kd": KDConfig}[config]
    with pytest.raises(LabError) as e:
        cls(**{field: value})
    assert_one_line(e, *needles)


def test_recorded_net_spec_is_the_built_one():
    """A partial spec is recorded complete: the config says depth 3 because the net has depth 3."""
    from lab.methods import get_method

    m = get_method("progressive")(lab.zoo.load("toy2d/8gaussians/analytic"), "toy2d:8gaussians",
                                  {"student_net": {"hidden": 12}, "batch": 8, "steps": 8})
    rec = m.config_dict()["student_net"]
    assert rec == {"type": "mlp", "hidden": 12, "depth": 3, "t_dim": 32}
    net = m.student.net
    assert (net.hidden, net.depth, net.t_dim) == (rec["hidden"], rec["depth"], rec["t_dim"])
    from lab.kd.base import KDConfig

    assert KDConfig(student={"type": "clf_mlp", "in_dim": 2}).student == {"type": "clf_mlp", "in_dim": 2,
                                                                          "hidden": [128, 128], "n_classes": 10}


def test_cli_refuses_a_bad_nested_spec_before_creating_the_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for args, needle in (
            (["distill", "--method", "progressive", "--teacher", "toy2d/8gaussians/analytic", "--out", "R",
              "--config", json.dumps({"student_net": {"type": "mlp", "hidden": -1}})], "student_net.hidden"),
            (["teacher", "train", "--data", "toy2d:moons", "--out", "R", "--config", json.dumps({"net": {"foo": 1}})],
             "net.foo"),
            (["kd", "run", "--method", "kd", "--task", "moons", "--out", "R",
              "--config", json.dumps({"student": {"type": "clf_mlp", "in_dim": 2, "hidden": [0]}})],
             "student.hidden")):
        code = cli.run(args)
        err = capsys.readouterr().err.splitlines()
        assert code == 2 and len(err) == 1 and needle in err[0], (args, err)
    assert list(tmp_path.iterdir()) == []
