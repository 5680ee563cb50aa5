"""`lab export` never deletes what it did not write: --overwrite replaces only a previous export (a folder
carrying the lab_export.json marker and nothing else), never the source model folder or unrelated files."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

import lab
from lab.cli import app
from lab.errors import LabError
from lab.interop.diffusers import MARKER, export_pipeline

pytestmark = pytest.mark.filterwarnings("ignore")
ENTRY = "digits/consistency"  # a shipped digits student (1 M parameter UNet)


def tree(folder: Path) -> dict:
    """Every file and folder under ``folder`` with its bytes' hash and mtime (folders: None)."""
    return {str(p.relative_to(folder)): ((hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
                                         if p.is_file() else None) for p in sorted(folder.rglob("*"))}


def export(*args) -> tuple[int, list[str]]:
    r = CliRunner().invoke(app, ["export", *map(str, args)])
    return r.exit_code, r.stderr.splitlines()


def refused(code, err, *needles):
    assert code == 2 and len(err) == 1 and err[0].startswith("error: "), (code, err)
    for n in needles:
        assert n in err[0], (n, err[0])


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """A copy of the shipped student (so a broken guard could never touch assets/)."""
    found = lab.zoo.find(ENTRY)
    assert found is not None, f"{ENTRY} is not shipped"
    dst = tmp_path_factory.mktemp("src") / "student"
    shutil.copytree(found, dst)
    return dst


def test_export_writes_the_marker(source, tmp_path):
    out = export_pipeline(ENTRY, tmp_path / "pipe")
    info = json.loads((out / MARKER).read_text())
    assert info["source"] == ENTRY and info["lab_version"] == lab.__version__
    assert Path(info["source_folder"]) == lab.zoo.find(ENTRY).resolve()
    written = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    assert set(info["files"]) == written and {"model_index.json", MARKER, "README.md"} <= written
    assert [p.name for p in tmp_path.iterdir()] == ["pipe"]  # no temporary folders left


def test_overwrite_refuses_unrelated_files(source, tmp_path):
    mine = tmp_path / "mine"
    (mine / "sub").mkdir(parents=True)
    (mine / "thesis.tex").write_text("years of work")
    (mine / "sub" / "data.bin").write_bytes(bytes(range(256)))
    (mine / "model_index.json").write_text("{}")  # even a file an export would also write
    before = tree(tmp_path)
    refused(*export(source, "--out", mine, "--overwrite"), str(mine), "not a lab export")
    refused(*export(source, "--out", mine), "exists", "--overwrite")
    assert tree(tmp_path) == before


def test_overwrite_refuses_the_source_and_its_neighbours(source):
    before = tree(source.parent)
    refused(*export(source, "--out", source, "--overwrite"), "source model folder")
    refused(*export(source, "--out", source / "pipe", "--overwrite"), "inside the source")
    refused(*export(source, "--out", source.parent, "--overwrite"), "containing the source")
    (source.parent / "link").symlink_to(source, target_is_directory=True)
    try:
        refused(*export(source, "--out", source.parent / "link", "--overwrite"), "source model folder")
    finally:
        (source.parent / "link").unlink()
    assert tree(source.parent) == before
    lab.load(source)  # still a working model folder


def test_overwrite_replaces_a_previous_export(source, tmp_path):
    out = tmp_path / "pipe"
    assert export(source, "--out", out, "--nfe", "1")[0] == 0
    w = out / "unet" / "diffusion_pytorch_model.safetensors"
    first_w, first_sched = w.read_bytes(), (out / "scheduler" / "scheduler_config.json").read_text()
    refused(*export(source, "--out", out, "--nfe", "2"), "exists")  # without --overwrite: refused
    assert w.read_bytes() == first_w
    code, err = export(source, "--out", out, "--nfe", "2", "--overwrite")
    assert code == 0, err
    assert json.loads((out / MARKER).read_text())["nfe"] == 2
    assert (out / "scheduler" / "scheduler_config.json").read_text() != first_sched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]
    # a previous export the user has added a file to is no longer ours to delete
    (out / "notes.txt").write_text("mine")
    before = tree(out)
    refused(*export(source, "--out", out, "--overwrite"), "did not write", "notes.txt")
    assert tree(out) == before


def test_existing_empty_folder_is_used_without_overwrite(source, tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    code, err = export(source, "--out", out)
    assert code == 0, err
    assert (out / MARKER).is_file() and (out / "unet").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


def test_refusals_through_the_api(source, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(LabError, match="not a folder"):
        export_pipeline(source, tmp_path / "file", overwrite=True)
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "keep").write_text("keep")
    (tmp_path / "ln").symlink_to(tmp_path / "real", target_is_directory=True)
    with pytest.raises(LabError, match="symlink"):
        export_pipeline(source, tmp_path / "ln", overwrite=True)
    assert (tmp_path / "file").read_text() == "x" and (tmp_path / "real" / "keep").read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "ln", "real"]
