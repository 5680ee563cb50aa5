"""One zoo, one resolver (issue 13, item 1): every kind of model reference resolves through lab.zoo.resolve, the
old entry points give the very same weights, and only one module reads $LAB_CACHE."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import lab
from lab import zoo
from lab.diffusion import Denoiser
from lab.diffusion.generators import FlowGenerator, load_generator
from lab.errors import LabError
from lab.interop.diffusers import export_pipeline, export_source, load_diffusers_teacher
from lab.nets import build_net
from lab.runs import recipes

pytestmark = pytest.mark.filterwarnings("ignore")
ROOT = Path(__file__).resolve().parents[1]
TINY_UNET = {"type": "unet", "channels": 1, "size": 8, "block_out_channels": [8, 16], "norm_num_groups": 8}
NET = {"type": "mlp", "hidden": 32, "depth": 2, "t_dim": 16}


def state(m) -> dict:
    """A network's state dict; a generator's is that of all its networks."""
    if hasattr(m, "state_dict"):
        return m.state_dict()
    return {f"{name}.{k}": v for name, net in m.nets().items() for k, v in net.state_dict().items()}


def same_weights(a, b) -> None:
    sa, sb = state(a), state(b)
    assert sa
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def shipped(entry: str) -> bool:
    return zoo.where(entry) == "shipped"


def test_toy2d_zoo_teacher_through_every_entry_point():
    entry = zoo.entry_name("toy2d", "8gaussians")
    assert entry == "toy2d/8gaussians/teacher" and shipped(entry)
    r = zoo.resolve(entry)
    assert r.kind == "generator" and r.data == "toy2d:8gaussians" and r.name == entry
    same_weights(r.model, zoo.load(entry))
    gen, data = recipes.resolve_teacher(entry)
    assert data == r.data
    same_weights(gen, r.model)
    m = lab.get_method("consistency")(entry, "8gaussians", {"steps": 1})  # a string teacher: the installed hook
    same_weights(m.teacher_gen, r.model)
    same_weights(zoo.resolve(entry, kind="teacher").model, r.model)


def test_analytic_teacher():
    entry = zoo.entry_name("toy2d", "8gaussians", "analytic")
    r = zoo.resolve(entry, kind="teacher")
    assert r.data == "toy2d:8gaussians" and r.model.card["entry"] == entry
    x = torch.randn(5, 2)
    t = torch.full((5,), 0.5)
    gen, _ = recipes.resolve_teacher(entry)
    assert torch.equal(gen.denoiser(x, t), r.model.denoiser(x, t))


def test_digits_image_entries():
    for entry in (zoo.entry_name("images", "digits"), zoo.entry_name("images", "digits", "consistency")):
        assert shipped(entry), f"{entry} is not shipped in assets/zoo"
        r = zoo.resolve(entry, train_if_missing=False)
        assert r.kind == "generator" and r.data == "digits"
        same_weights(r.model, zoo.load(entry, train_if_missing=False))
        gen, name = export_source(entry)  # the diffusers export's source
        assert name == entry
        same_weights(gen, r.model)
    with pytest.raises(LabError, match="is a student"):
        zoo.resolve("digits/consistency", kind="teacher")


def test_kd_teacher_entry():
    entry = zoo.entry_name("kd", "digits")
    assert entry == "kd/digits/teacher" and shipped(entry)
    r = zoo.resolve(entry)
    assert r.kind == "kd" and r.data is None
    same_weights(r.model, lab.kd.load_teacher(entry))
    same_weights(r.model, zoo.load(entry))
    m = lab.kd.get("kd")(entry, "digits", {"steps": 1})  # a string teacher: the installed hook
    same_weights(m.teacher, r.model)
    with pytest.raises(LabError, match="unknown KD zoo entry"):
        zoo.resolve("kd/nope/teacher")


def test_judge_entry():
    entry = zoo.entry_name("images", "digits", "features")
    assert shipped(entry), f"{entry} is not shipped in assets/zoo"
    r = zoo.resolve(entry)
    assert r.kind == "judge"
    from lab.nets.digits_eval import load_eval_net

    same_weights(r.model, load_eval_net("features"))


def test_run_folder(tmp_path):
    recipes.train_teacher_run("toy2d:8gaussians", tmp_path / "T", steps=2, progress=False,
                              config={"batch": 8, "net": NET})
    folder = tmp_path / "T"
    r = zoo.resolve(str(folder))
    assert r.kind == "generator" and r.data == "toy2d:8gaussians" and r.name == str(folder)
    same_weights(r.model, load_generator(folder))
    gen, data = recipes.resolve_teacher(str(folder))
    assert data == r.data
    same_weights(gen, r.model)
    same_weights(zoo.resolve(folder).model, r.model)  # a Path is always a folder
    same_weights(lab.get_method("reflow")(str(folder), data, {"batch": 8, "n_pairs": 8, "steps": 1,
                                                              "student_net": NET}).teacher_gen, r.model)


def test_diffusers_pipeline_folder(tmp_path):
    torch.manual_seed(0)
    FlowGenerator(Denoiser(build_net(TINY_UNET).eval(), "linear", "v"), "euler").save(tmp_path / "teacher")
    pipe = export_pipeline(tmp_path / "teacher", tmp_path / "pipe", nfe=2)
    r = zoo.resolve(str(pipe), kind="teacher", data="digits")
    assert r.kind == "generator" and r.data == "digits"
    same_weights(r.model, load_diffusers_teacher(pipe))
    gen, data = recipes.resolve_teacher(str(pipe), data="digits")
    assert data == "digits"
    same_weights(gen, r.model)
    with pytest.raises(LabError, match="diffusers pipeline"):
        zoo.resolve(str(pipe), kind="teacher")  # no card: the data must be given


def test_unknown_references_are_one_line_naming_the_allowed_entries():
    for ref, kind, needle in (("nope", None, "allowed zoo entries: toy2d/8gaussians/teacher"),
                              ("nope", "teacher", "allowed zoo teachers: "),
                              ("toy2d/nope/teacher", None, "unknown zoo entry"),
                              ("kd/nope/teacher", "kd", "allowed: kd/TASK/teacher"),
                              ("digits/nope", "judge", "allowed: digits/features, digits/classifier")):
        with pytest.raises(LabError) as e:
            zoo.resolve(ref, kind=kind)
        assert needle in str(e.value) and "\n" not in str(e.value), (ref, str(e.value))
    with pytest.raises(LabError, match="unknown model kind"):
        zoo.resolve("toy2d/8gaussians/teacher", kind="nope")


def test_one_module_reads_lab_cache():
    readers = [p.relative_to(ROOT).as_posix() for p in sorted((ROOT / "lab").rglob("*.py"))
               if re.search(r"environ(\.get)?\s*[\[(]\s*['\"]LAB_CACHE", p.read_text())]
    assert readers == ["lab/io.py"], readers
    for rel in ("lab/kd/zoo.py", "lab/nets/digits_eval.py", "lab/zoo/__init__.py"):
        text = (ROOT / rel).read_text()
        assert "os.environ" not in text and '"assets"' not in text, rel
    assert zoo.ASSETS == lab.io.ZOO_ASSETS and zoo.cache_dir().parent == lab.io.cache_root()
    from lab.nets import digits_eval

    assert digits_eval.ASSETS == zoo.ASSETS / "digits" and digits_eval.cache_dir() == zoo.cache_dir() / "digits"


def test_methods_do_not_import_the_zoo():
    """Methods take teacher objects; a name reaches them resolved through lab.trainable's hook."""
    for rel in ("lab/methods/base.py", "lab/kd/base.py", "lab/kd/zoo.py", "lab/interop/diffusers.py"):
        text = (ROOT / rel).read_text()
        assert not re.search(r"^\s*(from lab import zoo|from lab\.zoo|import lab\.zoo)", text, re.M), rel
