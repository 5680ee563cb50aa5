"""Image probes (sample grid, diffusion-target view, guidance grid) and their figures, on tiny untrained UNets."""
from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import torch

from lab.diffusion import ConsistencyGenerator, Denoiser, FlowGenerator, ReflowGenerator, make_noise
from lab.diffusion.generators import Generator
from lab.diffusion.samplers import SampleResult
from lab.errors import LabError
from lab.nets import build_net
from lab.probes.images import guidance_grid, sample_grid, x0_view, x0_views
from lab.viz.images import guidance_grid_figure, image_grid_figure, sample_grid_figure, tile, x0_view_figure

SHAPE = (1, 8, 8)


def tiny_unet(seed=0, n_classes=10, extra=()):
    torch.manual_seed(seed)
    net = build_net({"type": "unet", "channels": 1, "size": 8, "block_out_channels": [8, 16], "norm_num_groups": 8,
                     "n_classes": n_classes, "extra": list(extra)})
    if n_classes:  # the wrapper initialises label embeddings near zero; make labels matter clearly
        with torch.no_grad():
            net.y_emb.weight.normal_(0.0, 1.0, generator=torch.Generator().manual_seed(seed + 1))
    return net.eval()


@pytest.fixture(scope="module")
def gens():
    d = Denoiser(tiny_unet(0), "linear", "v")
    return {"flow": FlowGenerator(d, "euler"), "cm": ConsistencyGenerator(d), "den": d,
            "one": ConsistencyGenerator(Denoiser(tiny_unet(1), "linear", "v"), native_nfe=(1,))}


def close(a, b, tol=1e-5):
    a, b = np.asarray(a), b.detach().cpu().numpy() if torch.is_tensor(b) else np.asarray(b)
    return a.shape == b.shape and float(np.abs(a - b).max()) <= tol


# ---------------------------------------------------------------- sample_grid
def test_sample_grid_rows_share_noise_and_labels(gens):
    T, cm, one = gens["flow"], gens["cm"], gens["one"]
    g = sample_grid(T, {"cm": cm, "one": one}, teacher_nfe=8, n=6, seed=3)
    assert [(r["model"], r["nfe"]) for r in g["rows"]] == [("teacher", 8), ("teacher", 1), ("teacher", 2), ("teacher", 4),
                                                           ("cm", 1), ("cm", 2), ("cm", 4), ("one", 1)]
    assert g["images"].shape == (8, 6, *SHAPE) and g["images"].dtype == np.float32
    y = torch.arange(6) % 10
    assert np.array_equal(g["labels"], y.numpy())
    z = make_noise(6, SHAPE, 3)
    assert close(g["images"][0], T.sample(z=z, nfe=8, y=y).x)
    assert close(g["images"][1], T.sample(z=z, nfe=1, y=y).x)
    assert close(g["images"][5], cm.sample(z=z, nfe=2, seed=3, y=y).x)  # same seed for the re-noising too
    assert close(g["images"][7], one.sample(z=z, nfe=1, seed=3, y=y).x)
    # the noise really depends on the seed (so the equalities above are not trivially true)
    g2 = sample_grid(T, {}, teacher_nfe=2, student_nfe=(1,), n=6, seed=4)
    assert np.abs(g2["images"][1] - g["images"][1]).max() > 1e-2
    # native_only=False shows every NFE for a one-step student
    g3 = sample_grid(T, {"one": one}, teacher_nfe=2, student_nfe=(1, 2), n=2, native_only=False)
    assert [(r["model"], r["nfe"]) for r in g3["rows"]][-2:] == [("one", 1), ("one", 2)]


def test_sample_grid_labels_reach_the_net(gens):
    T = gens["flow"]
    a = sample_grid(T, {}, teacher_nfe=2, student_nfe=(1,), n=5, labels=[0, 1, 2, 3, 4])["images"]
    b = sample_grid(T, {}, teacher_nfe=2, student_nfe=(1,), n=5, labels=[5, 6, 7, 8, 9])["images"]
    c = sample_grid(T, {}, teacher_nfe=2, student_nfe=(1,), n=5, labels=np.array([0, 1, 2, 3, 4]))["images"]
    assert np.abs(a - b).max() > 1e-2
    assert np.array_equal(a, c)
    unc = FlowGenerator(Denoiser(tiny_unet(2, n_classes=0), "linear", "v"))
    assert sample_grid(unc, {}, teacher_nfe=2, student_nfe=(1,), n=3)["labels"] is None


def test_sample_grid_bad_inputs(gens):
    T = gens["flow"]
    with pytest.raises(LabError, match=r"labels must be in \[0, 9\].*\[10\]"):
        sample_grid(T, {}, n=2, labels=[1, 10])
    with pytest.raises(LabError, match="one entry per sample"):
        sample_grid(T, {}, n=3, labels=[1, 2])
    with pytest.raises(LabError, match="teacher_nfe must be an integer >= 1"):
        sample_grid(T, {}, teacher_nfe=0)
    points = FlowGenerator(Denoiser(build_net({"type": "mlp", "dim": 2, "hidden": 8, "depth": 1}), "linear", "v"))
    with pytest.raises(LabError, match=r"image generator .*\(2,\)"):
        sample_grid(points, {})


# ---------------------------------------------------------------- x0_view
def test_x0_view_flow_is_the_sampler(gens):
    T = gens["flow"]
    y = torch.tensor([3, 1, 4])
    v = x0_view(T, 4, n=3, labels=y, seed=5)
    z = make_noise(3, SHAPE, 5)
    assert v["x_t"].shape == v["x0"].shape == (4, 3, *SHAPE) and v["final"].shape == (3, *SHAPE)
    assert np.allclose(v["times"], [1.0, 0.75, 0.5, 0.25])
    assert close(v["x_t"][0], z, 0)
    assert close(v["final"], T.sample(z=z, nfe=4, y=y).x)
    assert close(v["x0"][0], T.denoiser.x0(z, 1.0, y))
    # the prediction moves along the path (not a constant) and labels reach it
    assert np.abs(v["x0"][0] - v["x0"][2]).max() > 1e-3
    assert np.abs(x0_view(T, 4, n=3, labels=[0, 0, 0], seed=5)["x0"] - v["x0"]).max() > 1e-2
    one = x0_view(T, 1, n=3, seed=5)
    assert one["x0"].shape[0] == 1 and close(one["x0"][-1], torch.as_tensor(one["final"]))
    heun = FlowGenerator(T.denoiser, "heun")
    vh = x0_view(heun, 5, n=2, seed=1)
    assert vh["x_t"].shape[0] == 3 and "Heun" in vh["note"]
    assert close(vh["final"], heun.sample(z=make_noise(2, SHAPE, 1), nfe=5).x)


def test_x0_view_consistency_replays_the_renoising(gens):
    cm = gens["cm"]
    y = torch.arange(3)
    v = x0_view(cm, 4, n=3, labels=y, seed=7)
    z = make_noise(3, SHAPE, 7)
    assert np.allclose(v["times"], cm.times(4).numpy())
    assert close(v["final"], cm.sample(z=z, nfe=4, seed=7, y=y).x)
    assert close(v["x0"][-1], torch.as_tensor(v["final"]))
    # x_{t_1} is x0_hat re-noised (not x0_hat itself), and the re-noising follows the seed
    assert np.abs(v["x_t"][1] - v["x0"][0]).max() > 1e-2
    other = x0_view(cm, 4, z=z, labels=y, seed=8)
    assert close(other["x_t"][0], z, 0) and np.abs(other["x_t"][1] - v["x_t"][1]).max() > 1e-2


class _OneStep(Generator):
    kind = "test_onestep"
    native_nfe = (1,)

    def __init__(self, denoiser):
        self.denoiser = denoiser

    def nets(self):
        return {"denoiser": self.denoiser.net}

    def sample_from(self, z, nfe, *, seed=0, y=None, return_trajectory=False, **cond):
        return SampleResult(self.denoiser.x0(z, 0.9, y), None, torch.tensor([0.9, 0.0]), 1)


def test_x0_view_reflow_fallback_and_errors(gens):
    d, d1 = gens["den"], gens["one"].denoiser
    rf = ReflowGenerator(d, d1)
    z = make_noise(2, SHAPE, 0)
    with torch.no_grad():
        v1, v2 = x0_view(rf, 1, z=z), x0_view(rf, 2, z=z)
        assert close(v1["x0"][0], d1.x0(z, 1.0)) and close(v1["final"], rf.sample(z=z, nfe=1).x)
        assert close(v2["x0"][0], d.x0(z, 1.0)) and close(v2["final"], rf.sample(z=z, nfe=2).x)
        g = _OneStep(d)
        vf = x0_view(g, 1, z=z)
        assert vf["x0"].shape == (1, 2, *SHAPE) and np.allclose(vf["times"], [0.9])
        assert close(vf["final"], d.x0(z, 0.9))
    with pytest.raises(LabError, match="flow, consistency, reflow.*'test_onestep' at nfe=2"):
        x0_view(g, 2, z=z)
    with pytest.raises(LabError, match=r"z must have shape \(n, 1, 8, 8\)"):
        x0_view(gens["flow"], 1, z=torch.zeros(2, 2))


def test_x0_views_side_by_side_from_same_noise(gens):
    vs = x0_views(gens["flow"], {"cm": gens["cm"], "one": gens["one"]}, nfe_teacher=6, nfe_student=4, n=2, seed=2)
    assert list(vs) == ["teacher", "cm", "one"]
    assert [vs[k]["x_t"].shape[0] for k in vs] == [6, 4, 1]
    for k in ("cm", "one"):
        assert np.array_equal(vs[k]["x_t"][0], vs["teacher"]["x_t"][0])
        assert np.array_equal(vs[k]["labels"], vs["teacher"]["labels"])


# ---------------------------------------------------------------- guidance_grid
def test_guidance_grid_flow_teacher_endpoints(gens):
    T = gens["flow"]
    gg = guidance_grid(T, ws=(0, 1, 3), nfe=3, n=4, seed=1)
    assert gg["images"].shape == (3, 4, *SHAPE) and gg["passes"] == 6 and np.allclose(gg["ws"], [0, 1, 3])
    z, y = make_noise(4, SHAPE, 1), torch.arange(4)
    unc, cond = T.sample(z=z, nfe=3).x, T.sample(z=z, nfe=3, y=y).x
    assert close(gg["images"][0], unc) and close(gg["images"][1], cond)
    assert np.abs(gg["images"][0] - gg["images"][1]).max() > 1e-2  # w matters because labels matter
    assert np.abs(gg["images"][2] - gg["images"][1]).max() > 1e-2


def test_guidance_grid_guided_student_and_errors(gens):
    from lab.methods.trajectory.guidance import GuidedFlowGenerator

    st = GuidedFlowGenerator(Denoiser(tiny_unet(3, extra=("w",)), "linear", "v"), w=2.0)
    gg = guidance_grid(st, ws=(0.0, 4.0), nfe=2, n=3, labels=[7, 8, 9])
    z = make_noise(3, SHAPE, 0)
    assert gg["passes"] == 2
    assert close(gg["images"][1], st.sample(z=z, nfe=2, y=torch.tensor([7, 8, 9]), w=4.0).x)
    assert np.abs(gg["images"][0] - gg["images"][1]).max() > 1e-3
    with pytest.raises(LabError, match="flow, cfg, guided_flow.*'consistency'"):
        guidance_grid(gens["cm"])
    unc = FlowGenerator(Denoiser(tiny_unet(2, n_classes=0), "linear", "v"))
    with pytest.raises(LabError, match="class-conditional"):
        guidance_grid(unc)
    with pytest.raises(LabError, match="ws must be"):
        guidance_grid(gens["flow"], ws=[])


# ---------------------------------------------------------------- figures
def _png(trace) -> np.ndarray:
    from PIL import Image

    data = base64.b64decode(trace.source.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(data)))


def test_tile_and_grid_figure_draw_the_pixels():
    imgs = np.stack([np.full((3, 1, 2, 2), -1.0), np.full((3, 1, 2, 2), 1.0)])  # 2 rows x 3 cols of 2x2
    imgs[0, 1, 0, 0, 0] = 0.0
    t = tile(imgs)
    assert t.shape == (2 * 3 - 1, 3 * 3 - 1) and t.dtype == np.uint8
    assert t[0, 0] == 0 and t[3, 0] == 255 and t[2, 0] == 255 and t[0, 2] == 255  # gaps are white
    assert t[0, 3] == 128  # 0.0 -> 127.5 -> 128
    fig = image_grid_figure(imgs, ["a", "b"], ["x", "y", "z"], title="t")
    assert len(fig.data) == 1 and fig.data[0].type == "image"
    assert np.array_equal(_png(fig.data[0]), t)  # the figure shows exactly these pixels (one PNG, no smoothing)
    assert list(fig.layout.yaxis.ticktext) == ["a", "b"] and list(fig.layout.xaxis.ticktext) == ["x", "y", "z"]
    with pytest.raises(LabError, match="row titles"):
        image_grid_figure(imgs, ["a"])


def test_figures_from_probes(gens):
    g = sample_grid(gens["flow"], {"cm": gens["cm"]}, teacher_nfe=2, student_nfe=(1, 2), n=3)
    f = sample_grid_figure(g)
    assert len(f.data) == 1 and list(f.layout.yaxis.ticktext)[:2] == ["teacher @ 2 NFE", "teacher @ 1 NFE"]
    assert len(f.layout.yaxis.ticktext) == 5 and list(f.layout.xaxis.ticktext) == ["label 0", "label 1", "label 2"]
    assert _png(f.data[0]).shape == (5 * 9 - 1, 3 * 9 - 1)
    vs = x0_views(gens["flow"], {"cm": gens["cm"]}, nfe_teacher=3, nfe_student=2, n=3)
    fx = x0_view_figure(vs, max_samples=2)
    assert [d.type for d in fx.data] == ["image", "image"]
    assert _png(fx.data[0]).shape == (4 * 9 - 1, 4 * 9 - 1)  # 2 samples x (x_t, x0); 3 steps + final
    assert list(fx.layout.xaxis2.ticktext) == ["t=1.00", "t=0.50", "t=0 (final)"]
    assert len(x0_view_figure(vs["cm"]).data) == 1
    fg = guidance_grid_figure(guidance_grid(gens["flow"], ws=(0, 1, 2), nfe=1, n=2))
    assert len(fg.data) == 1 and list(fg.layout.yaxis.ticktext) == ["w = 0 (unconditional)", "w = 1 (conditional)", "w = 2"]
