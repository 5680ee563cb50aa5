"""Data sources: the named 2D distributions, users' point files, and data specs."""
from __future__ import annotations

import warnings
import zipfile

import numpy as np
import pytest
import torch

from lab.data import GMM, PointCloud, Source, load_points, resolve, toy2d
from lab.errors import LabError


NAMES = ["8gaussians", "25gaussians", "moons", "swissroll", "checkerboard", "rings", "spirals", "pinwheel"]


def test_the_eight_named_distributions_exist():
    assert sorted(toy2d.names()) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_named_distribution_samples(name):
    src = toy2d.get(name)
    x, y = src.sample(500, 0, labelled=True)
    assert x.shape == (500, 2) and x.dtype == torch.float32 and torch.isfinite(x).all()
    assert y.shape == (500,) and y.dtype == torch.long
    assert int(y.min()) >= 0 and int(y.max()) < src.n_classes
    assert len(torch.unique(y)) == src.n_classes  # every class shows up in 500 draws
    assert float(x.std()) > 0.1 and float(x.abs().max()) < 10
    assert src.sample(7).shape == (7, 2)  # unseeded, unlabelled
    assert src.spec == f"toy2d:{name}"


@pytest.mark.parametrize("name", NAMES)
def test_seeded_reproducibility(name):
    src = toy2d.get(name)
    a, ya = src.sample(300, 42, labelled=True)
    b, yb = src.sample(300, torch.Generator().manual_seed(42), labelled=True)
    assert torch.equal(a, b) and torch.equal(ya, yb)
    assert not torch.equal(a, src.sample(300, 43))


@pytest.mark.parametrize("bad", [0, -3, 2.5, "10"])
def test_bad_sample_count(bad):
    with pytest.raises(LabError, match="positive integer"):
        toy2d.get("moons").sample(bad)


def test_gmm_exposed_for_mixtures_only():
    g8, g25 = toy2d.get("8gaussians").gmm, toy2d.get("25gaussians").gmm
    assert isinstance(g8, GMM) and isinstance(g25, GMM)
    assert g8.n_components == 8 and g25.n_components == 25
    torch.testing.assert_close(g8.means.norm(dim=1), torch.full((8,), 2.0))
    torch.testing.assert_close(g8.stds, torch.full((8,), 0.15))
    torch.testing.assert_close(g25.stds, torch.full((25,), 0.08))
    torch.testing.assert_close(g8.weights.sum(), torch.tensor(1.0))
    for name in set(NAMES) - {"8gaussians", "25gaussians"}:
        assert toy2d.get(name).gmm is None
    # the GMM's log density integrates sensibly: samples are far more likely than points between modes
    x = toy2d.get("8gaussians").sample(100, 0)
    assert float(g8.log_prob(x).mean()) > float(g8.log_prob(torch.zeros(1, 2))) + 5
    # round trip through the JSON form used by the analytic teacher
    g = GMM.from_dict(g8.to_dict())
    assert torch.equal(g.means, g8.means) and torch.equal(g.covs, g8.covs)


def test_mixture_samples_match_their_labels():
    src = toy2d.get("8gaussians")
    x, y = src.sample(2000, 1, labelled=True)
    nearest = torch.cdist(x, src.gmm.means).argmin(1)
    assert (nearest == y).float().mean() > 0.99


def test_unknown_name():
    with pytest.raises(LabError, match="allowed: 8gaussians"):
        toy2d.get("9gaussians")


# ---------------------------------------------------------------- users' files
def _pts(n=50, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 2))


def test_load_points_npy(tmp_path):
    arr = _pts()
    p = tmp_path / "pts.npy"
    np.save(p, arr)
    src = load_points(p)
    assert isinstance(src, PointCloud) and isinstance(src, Source)
    np.testing.assert_allclose(src.points.numpy(), arr.astype(np.float32))
    x, y = src.sample(200, 0, labelled=True)
    assert x.shape == (200, 2) and (y == 0).all()
    # resampling draws only the given points
    assert (x[:, None, :] == src.points[None]).all(-1).any(1).all()
    assert src.spec == str(p) and src.name == "pts"


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_load_points_npy_dtypes(tmp_path, dtype):
    p = tmp_path / "pts.npy"
    np.save(p, (_pts() * 10).astype(dtype))
    assert load_points(p).points.dtype == torch.float32


@pytest.mark.parametrize("header", [False, True])
def test_load_points_csv(tmp_path, header):
    arr = _pts(20)
    p = tmp_path / "pts.csv"
    body = "\n".join(f"{a:.6f},{b:.6f}" for a, b in arr) + "\n"
    p.write_text(("x,y\n" if header else "") + body)
    src = load_points(p)
    assert src.points.shape == (20, 2)
    np.testing.assert_allclose(src.points.numpy(), arr, atol=1e-5)


def _bad_files(tmp_path):
    files = {}

    def npy(name, arr, **kw):
        files[name] = tmp_path / name
        np.save(files[name], arr, **kw)

    npy("three_cols.npy", np.zeros((5, 3)))
    npy("flat.npy", np.zeros(5))
    npy("nan.npy", np.array([[0.0, 1.0], [np.nan, 2.0]]))
    npy("inf.npy", np.array([[0.0, 1.0], [np.inf, 2.0]]))
    npy("strings.npy", np.array([["a", "b"], ["c", "d"]]))
    npy("one_point.npy", np.zeros((1, 2)))
    npy("objects.npy", np.array([[1, None], [2, 3]], dtype=object), allow_pickle=True)
    texts = {
        "garbage.csv": "hello world\nfoo;bar\n",
        "garbage.npy": "this is not an npy file\n",
        "nan.csv": "1,2\nnan,5\n",
        "three_cols.csv": "1,2,3\n4,5,6\n",
        "ragged.csv": "1,2\n3\n4,5\n",
        "semicolons.csv": "1;2\n3;4\n",
        "empty.csv": "",
        "header_only.csv": "x,y\n",
        "points.txt": "1,2\n3,4\n",
        "points.json": "[[1, 2], [3, 4]]",
    }
    for name, text in texts.items():
        files[name] = tmp_path / name
        files[name].write_text(text)
    files["missing.npy"] = tmp_path / "missing.npy"
    files["missing.csv"] = tmp_path / "missing.csv"
    # an .npz archive (np.savez to an open file) under an .npy name: np.load returns an NpzFile, not an array
    files["archive.npy"] = tmp_path / "archive.npy"
    with open(files["archive.npy"], "wb") as f:
        np.savez(f, a=np.zeros((3, 2)))
    files["zip.csv"] = tmp_path / "zip.csv"
    with zipfile.ZipFile(files["zip.csv"], "w") as z:
        z.writestr("a.txt", "1,2\n")
    return files


BAD = ["three_cols.npy", "flat.npy", "nan.npy", "inf.npy", "strings.npy", "one_point.npy", "objects.npy",
       "garbage.csv", "garbage.npy", "nan.csv", "three_cols.csv", "ragged.csv", "semicolons.csv", "empty.csv",
       "header_only.csv", "points.txt", "points.json", "missing.npy", "missing.csv", "archive.npy", "zip.csv"]


@pytest.mark.parametrize("name", BAD)
def test_bad_point_files_raise_one_line_laberror(tmp_path, name):
    p = _bad_files(tmp_path)[name]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(LabError) as ei:
            load_points(p)
    # a warning is a second message (on the CLI: extra stderr lines before "error: ...")
    assert [str(w.message) for w in caught] == []
    msg = str(ei.value)
    assert msg and "\n" not in msg and len(msg) < 300, msg
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(LabError):
            resolve(str(p)) if p.suffix in (".npy", ".csv") else load_points(p)


def test_bad_file_messages_say_what_is_wrong(tmp_path):
    f = _bad_files(tmp_path)
    with pytest.raises(LabError, match=r"\(N, 2\)"):
        load_points(f["three_cols.npy"])
    with pytest.raises(LabError, match="NaN"):
        load_points(f["nan.csv"])
    with pytest.raises(LabError, match=r"\.npy, \.csv"):
        load_points(f["points.txt"])
    with pytest.raises(LabError, match="no such file"):
        load_points(f["missing.npy"])


# ---------------------------------------------------------------- specs
def test_resolve_specs(tmp_path):
    assert resolve("toy2d:moons") is toy2d.get("moons")
    assert resolve("moons") is toy2d.get("moons")
    src = toy2d.get("rings")
    assert resolve(src) is src
    p = tmp_path / "P.NPY"  # suffix check is case-insensitive
    np.save(tmp_path / "tmp.npy", _pts())
    (tmp_path / "tmp.npy").rename(p)
    assert resolve(str(p)).points.shape == (50, 2)
    c = tmp_path / "q.csv"
    c.write_text("1,2\n3,4\n")
    assert resolve(c).points.shape == (2, 2)
    for bad in ["toy2d:nope", "nope", "toy2d:", "data.parquet", ""]:
        with pytest.raises(LabError) as ei:
            resolve(bad)
        assert "\n" not in str(ei.value)
    with pytest.raises(LabError, match="toy2d:NAME"):
        resolve("nope")


def test_point_cloud_validation():
    with pytest.raises(LabError):
        PointCloud(np.zeros((4, 3)))
    with pytest.raises(LabError):
        PointCloud(np.zeros((1, 2)))
    with pytest.raises(LabError):
        PointCloud(np.array([[0.0, np.inf], [1.0, 2.0]]))
    pc = PointCloud(torch.zeros(3, 2), name="z")
    assert pc.spec == "z" and pc.n_classes == 0
