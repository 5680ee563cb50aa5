"""The animated trajectory view (lab.probes.animation.trajectory_frames, lab.viz.animation.trajectory_animation):
the slider's steps are the frames, t runs 1 -> 0, the teacher glides (between its path points) and the student
jumps (always at one of its path points), and both end at their samples from the same noise."""
import numpy as np
import pytest

import lab
from lab import probes
from lab.diffusion.generators import make_noise
from lab.errors import LabError
from lab.probes.animation import trajectory_frames
from lab.viz.animation import trajectory_animation

N, FRAMES = 16, 25


@pytest.fixture(scope="module")
def setup():
    teacher, student = lab.zoo.load("toy2d/8gaussians/teacher"), lab.zoo.load("toy2d/8gaussians/consistency")
    paths, summary = probes.trajectories(teacher, student, n=N, teacher_nfe=50, student_nfe=2, seed=0)
    return teacher, student, paths, summary, trajectory_animation(paths, summary, frames=FRAMES)


def particles(fig, f, model):
    """(N, 2) positions of ``model``'s particles in frame ``f`` of the figure."""
    (tr,) = [d for d in fig.frames[f].data if d.name.startswith(model)]
    return np.stack([np.asarray(tr.x, float), np.asarray(tr.y, float)], 1)


def path_points(paths, model, k):
    return paths[(paths.model == model) & (paths.k == k)].sort_values("path")[["x", "y"]].to_numpy()


def test_slider_steps_are_the_frames_and_t_runs_from_one_to_zero(setup):
    *_, fig = setup
    steps = fig.layout.sliders[0].steps
    assert len(fig.frames) == len(steps) == FRAMES
    assert [s.args[0][0] for s in steps] == [fr.name for fr in fig.frames]
    ts = np.array([float(s.label) for s in steps])
    assert ts[0] == 1.0 and ts[-1] == 0.0 and np.all(np.diff(ts) < 0)
    assert [b.label for b in fig.layout.updatemenus[0].buttons] == ["▶", "❚❚"]
    assert fig.layout.yaxis.scaleanchor == "x" and fig.layout.xaxis.autorange is False
    assert all(fr.layout.xaxis.range is None for fr in fig.frames)  # fixed ranges: no frame changes the axes


def test_last_frame_is_each_models_sample_from_the_same_noise(setup):
    teacher, student, paths, _, fig = setup
    kt = paths[paths.model == "teacher"].k.max()
    assert np.allclose(particles(fig, -1, "teacher"), path_points(paths, "teacher", kt))
    x = student.sample(z=make_noise(N, teacher.shape, 0), nfe=2, seed=0).x.numpy()
    assert np.allclose(particles(fig, -1, "student"), x, atol=1e-6)
    z = make_noise(N, teacher.shape, 0).numpy()  # and both start at that noise
    assert np.allclose(particles(fig, 0, "teacher"), z) and np.allclose(particles(fig, 0, "student"), z)


def test_student_jumps_teacher_glides(setup):
    _, _, paths, _, fig = setup
    f = 15  # t = 1 - 15/24 = 0.375: after the student's jump at t = 0.5, between the teacher's grid times 0.38 and 0.36
    t = trajectory_frames(paths, FRAMES).groupby("frame").t.first()[f]
    assert 0.36 < t < 0.38 and fig.layout.sliders[0].steps[f].label == f"{t:.2f}"
    s = particles(fig, f, "student")
    assert np.allclose(s, path_points(paths, "student", 1))  # the point it jumped to at t = 0.5
    assert not np.allclose(s, path_points(paths, "student", 0)) and not np.allclose(s, path_points(paths, "student", 2))
    te = particles(fig, f, "teacher")
    tp = paths[paths.model == "teacher"]
    for p in range(N):  # the teacher is at none of its path points ...
        pts = tp[tp.path == p][["x", "y"]].to_numpy()
        assert np.linalg.norm(pts - te[p], axis=1).min() > 1e-6
    # ... but between the points at t = 0.38 (k = 31) and t = 0.36 (k = 32), a quarter of the way
    a, b = path_points(paths, "teacher", 31), path_points(paths, "teacher", 32)
    assert np.allclose(te, 0.75 * a + 0.25 * b, atol=1e-5)


def test_frames_probe_shape_and_bad_input(setup):
    _, _, paths, _, _ = setup
    fr = trajectory_frames(paths, n_frames=7)
    assert list(fr.columns) == ["frame", "t", "model", "path", "k", "x", "y"]
    assert len(fr) == 7 * 2 * N and sorted(fr.frame.unique()) == list(range(7))
    assert (fr[fr.model == "student"].k % 1 == 0).all() and (fr[fr.model == "teacher"].k % 1 != 0).any()
    for bad, needle in ((1, "n_frames must be an integer >= 2"), (2.5, "n_frames must be an integer >= 2")):
        with pytest.raises(LabError, match=needle):
            trajectory_frames(paths, bad)
    with pytest.raises(LabError, match="columns model, path, k, t, x, y"):
        trajectory_frames(paths.drop(columns="t"))
    with pytest.raises(LabError, match="same points k"):
        trajectory_frames(paths.iloc[1:])
