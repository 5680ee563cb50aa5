"""KD probes: teacher-vs-student layer CKA (once and over training), run comparison tables, 2D embeddings
(PCA; UMAP on an exact k-NN graph with its on-disk cache) and the figures drawn from them."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import lab
import lab.kd
from lab.errors import LabError
from lab.nets.classifiers import build_classifier
from lab.probes import cka_matrix
from lab.probes import embeddings as emb
from lab.probes import kd as probes
from lab.viz import kd as viz

TEACHER = "kd/digits/teacher"


@pytest.fixture(scope="module")
def task():
    return lab.kd.get_task("digits")


@pytest.fixture(scope="module")
def teacher():
    return lab.kd.load_teacher(TEACHER)


@pytest.fixture(scope="module")
def runs(teacher):
    """scratch and kd, 60 steps each, same seed and student; kd with a CKA tracker every 20 steps."""
    out, frames = {}, None
    for name in ("scratch", "kd"):
        m = lab.kd.get(name)(teacher if name == "kd" else None, "digits", {"steps": 60}, seed=0)
        if name == "kd":
            frames = probes.cka_over_training(m, every=20, n=128)
        else:
            for _ in lab.train(m):
                pass
        out[name] = m
    return out, frames


def _mlp(seed=0):
    torch.manual_seed(seed)
    return build_classifier({"type": "clf_mlp", "in_dim": 64, "hidden": [32, 16], "n_classes": 10})


def test_layer_cka_of_a_net_with_itself_is_one_on_the_diagonal(teacher, task):
    x = task.x_test[:200]
    for net in (teacher, _mlp()):
        df = probes.layer_cka(net, net, x)
        layers = list(net.feature_layers)
        assert list(df.columns) == ["teacher_layer", "student_layer", "cka"]
        assert list(dict.fromkeys(df.teacher_layer)) == layers == list(dict.fromkeys(df.student_layer))
        diag = df[df.teacher_layer == df.student_layer].cka.to_numpy()
        off = df[df.teacher_layer != df.student_layer].cka.to_numpy()
        assert np.allclose(diag, 1.0, atol=1e-9), diag
        assert (off < 1 - 1e-6).all() and (off > 0).all(), off  # distinct layers are not identical representations
        m = df.pivot(index="teacher_layer", columns="student_layer", values="cka").to_numpy()
        assert np.allclose(m, m.T)  # symmetric when both sides are the same net


def test_layer_cka_matches_the_cka_matrix_probe(teacher, task):
    """The Gram-matrix fast path gives linear_cka's numbers; debiased goes through cka_matrix itself."""
    x, student = task.x_test[:60], _mlp(1)
    ft = probes.features(teacher, x, teacher.feature_layers)
    fs = probes.features(student, x, student.feature_layers)
    for debiased in (False, True):
        with emb.blas_threads():  # one BLAS thread, as the probe uses ($LAB_NUM_THREADS)
            ref = cka_matrix(ft, fs, debiased=debiased)
        df = probes.layer_cka(teacher, student, x, debiased=debiased)
        got = df.pivot(index="teacher_layer", columns="student_layer", values="cka").loc[ref.index, ref.columns]
        assert np.allclose(got.to_numpy(), ref.to_numpy(), atol=1e-10)
    one = probes.layer_cka(teacher, student, x, teacher_layers="pool", student_layers=["fc2"])
    with emb.blas_threads():
        assert one.shape == (1, 3) and one.cka[0] == pytest.approx(float(cka_matrix(ft, fs).loc["pool", "fc2"]))
    with pytest.raises(LabError, match="unknown layer 'nope'.*available: conv1, conv2, pool, head"):
        probes.layer_cka(teacher, student, x, teacher_layers=["nope"])
    with pytest.raises(LabError, match="batch tensor"):
        probes.layer_cka(teacher, student, x.numpy())


def test_cka_tracker_records_every_steps_and_matches_a_direct_probe(runs, teacher, task):
    (methods, frames) = runs
    kd = methods["kd"]
    assert [int(f.step.iloc[0]) for f in frames] == [0, 20, 40, 60]
    assert all(list(f.columns) == ["step", "teacher_layer", "student_layer", "cka"] for f in frames)
    direct = probes.layer_cka(teacher, kd.student, probes.probe_batch(task, 128, 0))
    assert np.allclose(frames[-1].cka.to_numpy(), direct.cka.to_numpy(), atol=1e-10)
    # training moved the student's representation: the head-head CKA at step 60 differs from the initial one
    head = [float(f[(f.teacher_layer == "head") & (f.student_layer == "head")].cka.iloc[0]) for f in frames]
    assert head[-1] > head[0] + 0.05, head  # the student's logits become teacher-like as it learns its outputs
    assert kd.student.training  # the probe restored the train mode the loop had set
    with pytest.raises(LabError, match="no teacher"):
        probes.cka_over_training(methods["scratch"], steps=61, every=1)
    with pytest.raises(LabError, match="every must be an integer >= 1"):
        probes.CKATracker(every=0)


def test_compare_runs_history_and_reliability_tables(runs, task):
    methods, _ = runs
    table = probes.compare_runs(methods)
    assert list(table.index) == ["scratch", "kd"] and list(table.method) == ["scratch", "kd"]
    for name, m in methods.items():
        s = m.summary()
        assert table.loc[name, "best_acc"] == s["best/acc"] and table.loc[name, "last_ece"] == s["last/ece"]
        assert table.loc[name, "steps"] == 60
    assert np.isnan(table.loc["scratch", "best_agree"]) and table.loc["kd", "last_agree"] == methods["kd"].history[-1][
        "agree"]
    assert "best_kl_truth" not in table.columns  # classification: no kl_truth

    hist = probes.history_table(methods)
    assert len(hist) == sum(len(m.history) for m in methods.values()) and list(hist.columns[:3]) == ["run", "method",
                                                                                                      "it"]
    rel = probes.reliability_tables(methods)
    assert list(rel) == ["teacher", "scratch", "kd"]
    assert all(int(t["count"].sum()) == len(task.y_test) for t in rel.values())
    z = task.logits(methods["kd"].student, task.x_test)  # the table's accuracy is the student's test accuracy
    acc = float((z.argmax(1) == task.y_test).float().mean())
    t = rel["kd"]
    assert (t["count"] * t["accuracy"].fillna(0)).sum() / t["count"].sum() == pytest.approx(acc)
    with pytest.raises(LabError, match="no evaluations yet"):
        probes.compare_runs({"fresh": lab.kd.get("scratch")(None, "digits", {"steps": 5})})

    for fig in (viz.run_comparison_figure(hist), viz.run_comparison_figure(table)):
        assert len(fig.data) == 2 * 4  # two runs (or best/last) x acc, nll, ece, agree
    assert len(viz.cka_over_training_figure(runs[1]).data) == 4


def test_embed_2d_pca_shape_determinism_and_errors(task):
    x = task.x_test
    a = emb.embed_2d(x, "pca", seed=0)
    b = emb.embed_2d(x.clone(), "pca", seed=0)
    assert a.shape == (len(x), 2) and a.dtype == np.float64
    assert np.array_equal(a, b)
    assert a[:, 0].var() >= a[:, 1].var() > 0  # principal components in order of variance
    from sklearn.decomposition import PCA

    with emb.blas_threads():
        ref = PCA(2).fit(x.reshape(len(x), -1).double().numpy())
    assert a[:, 0].var(ddof=1) == pytest.approx(ref.explained_variance_[0], rel=1e-6)
    assert emb.embed_2d(np.random.default_rng(0).normal(size=(10, 1)), "pca").shape == (10, 2)
    with pytest.raises(LabError, match="unknown embedding method 'tsne'; allowed: pca, umap"):
        emb.embed_2d(x, "tsne")
    with pytest.raises(LabError, match="NaN"):
        emb.embed_2d(np.full((5, 3), np.nan))


def test_teacher_student_embeddings_are_tidy_and_aligned(teacher, task):
    student = _mlp(2)
    x, y = task.x_test, task.y_test
    df = emb.teacher_student_embeddings(teacher, student, x, y, "pool", "fc2", method="pca")
    assert list(df.columns) == ["model", "layer", "index", "x", "y", "label"]
    assert list(df.model.unique()) == ["teacher", "student"] and len(df) == 2 * len(x)
    assert (df[df.model == "student"].label.to_numpy() == y.numpy()).all()
    raw = emb.teacher_student_embeddings(teacher, student, x, y, "pool", "fc2", method="pca", align=False)
    t = df[df.model == "teacher"][["x", "y"]].to_numpy()
    s_al, s_raw = (d[d.model == "student"][["x", "y"]].to_numpy() for d in (df, raw))
    # the aligned panel is the raw one rotated/reflected and scaled: pairwise distances keep their ratios
    dist = lambda a: np.linalg.norm(a[:, None] - a[None], axis=-1)  # noqa: E731
    ratio = dist(s_al)[dist(s_raw) > 0] / dist(s_raw)[dist(s_raw) > 0]
    assert np.allclose(ratio, ratio[0])
    # and it is closer to the teacher's panel than the raw one brought to the same centre and scale
    rc, tc = s_raw - s_raw.mean(0), t - t.mean(0)
    scaled = rc * np.linalg.norm(tc) / np.linalg.norm(rc) + t.mean(0)
    assert np.linalg.norm(s_al - t) < np.linalg.norm(scaled - t)
    fig = viz.embedding_figure(df)
    assert len(fig.data) == 2 * 10 and sum(tr.showlegend for tr in fig.data) == 10
    with pytest.raises(LabError, match="one label per input"):
        emb.teacher_student_embeddings(teacher, student, x, y[:5], "pool", "fc2")


def test_exact_knn_layout_for_umap():
    a = np.random.default_rng(0).normal(size=(30, 4))
    idx, dist = emb.exact_knn(a, 6)
    assert idx.shape == dist.shape == (30, 6)
    assert (idx[:, 0] == np.arange(30)).all() and (dist[:, 0] == 0).all()
    d = np.linalg.norm(a[:, None] - a[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    assert np.allclose(np.sort(d, 1)[:, :5], dist[:, 1:], atol=1e-5)  # the exact nearest other points


def test_umap_cache_keys_and_hits_without_recomputing(tmp_path, monkeypatch):
    """The cache logic with a stand-in for the UMAP fit (the real fit is the slow test below)."""
    x = np.random.default_rng(0).normal(size=(40, 6))
    calls = []

    def fake(a, seed, k):
        calls.append((seed, k))
        return np.random.default_rng(seed + k).normal(size=(len(a), 2))

    monkeypatch.setattr(emb, "_umap", fake)
    z = emb.embed_2d(x, "umap", seed=0, cache_dir=tmp_path, n_neighbors=8)
    assert calls == [(0, 8)] and len(list(tmp_path.glob("umap-*.npz"))) == 1
    assert np.array_equal(emb.embed_2d(x.copy(), "umap", seed=0, cache_dir=tmp_path, n_neighbors=8), z)
    assert calls == [(0, 8)]  # a hit: not recomputed
    emb.embed_2d(x, "umap", seed=1, cache_dir=tmp_path, n_neighbors=8)  # the key covers seed, k and the features
    emb.embed_2d(x, "umap", seed=0, cache_dir=tmp_path, n_neighbors=9)
    emb.embed_2d(x + 1e-9, "umap", seed=0, cache_dir=tmp_path, n_neighbors=8)
    emb.embed_2d(x[:5], "umap", seed=0, cache_dir=tmp_path, n_neighbors=8)  # k clipped to n - 1
    assert calls == [(0, 8), (1, 8), (0, 9), (0, 8), (0, 4)] and len(list(tmp_path.glob("umap-*.npz"))) == 5
    monkeypatch.setenv("LAB_CACHE", str(tmp_path / "lab_cache"))  # default folder: $LAB_CACHE/embeddings
    emb.embed_2d(x, "umap", seed=0, n_neighbors=8)
    assert len(list((tmp_path / "lab_cache" / "embeddings").glob("umap-*.npz"))) == 1
    with pytest.raises(LabError, match="n_neighbors must be an integer >= 2"):
        emb.embed_2d(x, "umap", n_neighbors=1)


@pytest.mark.slow
def test_umap_real_fit_on_the_exact_knn_graph_is_cached(tmp_path, monkeypatch):
    """umap-learn on a tiny n (its numba compilation is most of the time): a finite (n, 2) embedding that keeps
    two far-apart clusters apart; the second call is served from the .npz without calling UMAP."""
    import umap  # noqa: F401 - a declared dependency (the notebooks extra that make installs): never skipped
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(size=(20, 6)), rng.normal(size=(20, 6)) + 20.0])
    calls = []
    real = emb._umap
    monkeypatch.setattr(emb, "_umap", lambda *a, **k: calls.append(1) or real(*a, **k))
    z = emb.embed_2d(x, "umap", seed=0, cache_dir=tmp_path, n_neighbors=8)
    assert z.shape == (40, 2) and np.isfinite(z).all() and calls == [1]
    within = max(np.ptp(z[:20], 0).max(), np.ptp(z[20:], 0).max())
    assert np.linalg.norm(z[:20].mean(0) - z[20:].mean(0)) > within  # the clusters stay separate
    again = emb.embed_2d(x.copy(), "umap", seed=0, cache_dir=tmp_path, n_neighbors=8)
    assert calls == [1] and np.array_equal(again, z)  # served from the cache, bit for bit
    files = list(tmp_path.glob("umap-*.npz"))
    with np.load(files[0]) as f:  # plain arrays (no pickle) with the parameters recorded
        assert len(files) == 1 and '"n_neighbors": 8' in str(f["params"])
