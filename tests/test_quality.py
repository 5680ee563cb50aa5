"""Quality against NFE and against latency (lab.probes.quality, lab.viz.quality): measured curves, the point of
distillation (a consistency student at 1 NFE beats the teacher at 1 NFE), native NFEs, the figures' data, and
one-line errors."""
import numpy as np
import pytest
import torch

import lab
from lab.diffusion.generators import make_noise
from lab.errors import LabError
from lab.metrics import noise_floor, sliced_wasserstein
from lab.probes.quality import COLUMNS, quality_curves
from lab.viz.quality import quality_vs_latency_figure, quality_vs_nfe_figure

DATA = "toy2d:8gaussians"
N = 500


@pytest.fixture(scope="module")
def models():
    return (lab.zoo.load("toy2d/8gaussians/teacher"),
            {"consistency": lab.zoo.load("toy2d/8gaussians/consistency"), "dmd": lab.zoo.load("toy2d/8gaussians/dmd")})


@pytest.fixture(scope="module")
def curves(models):
    teacher, students = models
    calls = []
    df = quality_curves(teacher, students, DATA, nfes=(1, 2, 4, 8), teacher_nfes=(1, 2, 4, 50), n=N, seed=0,
                        progress=lambda done, total: calls.append((done, total)))
    return df, calls


def q(df, model, nfe, col="quality"):
    return float(df[(df.model == model) & (df.nfe == nfe)][col].iloc[0])


def test_teacher_improves_student_beats_teacher_at_one_nfe(curves):
    df, calls = curves
    assert list(df.columns) == COLUMNS and set(df.metric) == {"swd"}
    # the teacher's distance to data falls from 1 to 50 NFE; latency grows with NFE
    assert q(df, "teacher", 50) < 0.5 * q(df, "teacher", 1)
    assert q(df, "teacher", 50, "ms") > max(q(df, "teacher", 4, "ms"), q(df, "teacher", 1, "ms"))
    # the point of distillation: the consistency student at 1 NFE is far closer to the data than the teacher at 1 NFE
    assert q(df, "consistency", 1) < 0.5 * q(df, "teacher", 1)
    # the floor is the metric's noise floor at this n; every row is finite
    assert np.allclose(df.floor, noise_floor(lab.data.resolve(DATA), N))
    assert np.isfinite(df[["quality", "ms"]].to_numpy()).all() and (df.ms > 0).all()
    assert calls == [(i + 1, len(df)) for i in range(len(df))]


def test_native_only_and_same_noise(models, curves):
    teacher, students = models
    df, _ = curves
    # dmd is a one-step student: NFE 1 only; consistency serves 1, 2, 4 (not 8)
    assert df[df.model == "dmd"].nfe.tolist() == [1]
    assert df[df.model == "consistency"].nfe.tolist() == [1, 2, 4]
    assert df[df.kind == "student"].native.all() and df[df.model == "teacher"].nfe.tolist() == [1, 2, 4, 50]
    # the row is the student's sample from make_noise(n, shape, seed), scored against the seeded fresh data
    src = lab.data.resolve(DATA)
    ref = src.sample(N, torch.Generator().manual_seed(0 + 777))
    x = students["consistency"].sample(z=make_noise(N, teacher.shape, 0), nfe=2, seed=0).x
    assert q(df, "consistency", 2) == pytest.approx(sliced_wasserstein(x, ref), rel=1e-9)
    x_other = students["consistency"].sample(z=make_noise(N, teacher.shape, 1), nfe=2, seed=1).x
    assert q(df, "consistency", 2) != pytest.approx(sliced_wasserstein(x_other, ref), rel=1e-6)
    # without native_only, dmd appears at every NFE, flagged off its grid
    off = quality_curves(teacher, {"dmd": students["dmd"]}, DATA, nfes=(1, 4), teacher_nfes=(1,), n=200,
                         native_only=False, repeats=1)
    d = off[off.model == "dmd"]
    assert d.nfe.tolist() == [1, 4] and d.native.tolist() == [True, False]


def test_figures_carry_the_data(curves):
    df, _ = curves
    for fig, col in ((quality_vs_nfe_figure(df), "nfe"), (quality_vs_latency_figure(df), "ms")):
        traces = {t.name: t for t in fig.data}
        assert set(traces) == {"teacher", "consistency", "dmd", "noise floor"}
        for model in ("teacher", "consistency", "dmd"):
            sub = df[df.model == model].sort_values("nfe")
            assert np.allclose(np.asarray(traces[model].x, float), sub[col].to_numpy())
            assert np.allclose(np.asarray(traces[model].y, float), sub.quality.to_numpy())
            assert np.allclose(np.asarray(traces[model].customdata, float)[:, 1], sub.ms.to_numpy())
        assert traces["teacher"].line.dash == "dash" and traces["consistency"].line.dash == "solid"
        assert np.allclose(traces["noise floor"].y, df.floor.iloc[0])
        assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "log"
    assert list(quality_vs_nfe_figure(df).layout.xaxis.tickvals) == [1, 2, 4, 50]


@pytest.mark.parametrize("kw, needle", [
    ({"nfes": ()}, "nfes must be a non-empty list of integers >= 1"),
    ({"nfes": (0, 1)}, "nfes must be a non-empty list of integers >= 1"),
    ({"nfes": (1.5,)}, "nfes must be a non-empty list of integers >= 1"),
    ({"nfes": 3}, "nfes must be a non-empty list of integers >= 1"),
    ({"teacher_nfes": [True]}, "teacher_nfes must be a non-empty list of integers >= 1"),
    ({"n": 1}, "n must be an integer >= 2"),
    ({"n": 10.0}, "n must be an integer >= 2"),
    ({"repeats": 0}, "repeats must be an integer >= 1"),
    ({"data": "digits"}, "holds images"),
    ({"data": "toy2d:nope"}, "unknown"),
])
def test_bad_input_is_one_line(models, kw, needle):
    teacher, students = models
    args = {"data": DATA, **kw}
    with pytest.raises(LabError) as e:
        quality_curves(teacher, {"dmd": students["dmd"]}, args.pop("data"), **args)
    msg = str(e.value)
    assert needle in msg and "\n" not in msg


def test_bad_students_and_frames(models):
    teacher, students = models
    with pytest.raises(LabError, match="may not be named 'teacher'"):
        quality_curves(teacher, {"teacher": students["dmd"]}, DATA)
    with pytest.raises(LabError, match="expected the rows"):
        quality_vs_nfe_figure(quality_curves(teacher, {}, DATA, teacher_nfes=(1,), n=50, repeats=1).iloc[:0])


def test_digits_quality_is_frechet_distance_and_teacher_improves():
    from lab.metrics import images as im

    teacher, student = lab.zoo.load("digits/teacher"), lab.zoo.load("digits/consistency")
    n = 200
    df = quality_curves(teacher, {"consistency": student}, "digits", nfes=(1,), teacher_nfes=(1, 8), n=n, repeats=1)
    assert set(df.metric) == {"fd"}
    assert q(df, "teacher", 8) < 0.5 * q(df, "teacher", 1)
    assert np.allclose(df.floor, im.noise_floor("digits", n=n)["fd"])
    # the student's row: its sample from the shared noise with the shared labels, scored by lab.metrics.images' FD
    y = torch.arange(n) % 10
    x = student.sample(z=make_noise(n, teacher.shape, 0), nfe=1, seed=0, y=y).x
    assert q(df, "consistency", 1) == pytest.approx(im.image_metrics(x, y, data="digits")["fd"], rel=1e-6)
    with pytest.raises(LabError, match="image quality is measured on digits, digits16"):  # 2D data, image teacher
        quality_curves(teacher, {}, DATA, n=50)
