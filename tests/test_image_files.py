"""Users' own images (lab.data.files): ImageFolder trees, flat folders, .npz, MNIST-style IDX files."""
import gzip

import numpy as np
import pytest
import torch
from PIL import Image

import lab.data
from lab.data.files import load_images
from lab.errors import LabError


def scaled(v):
    """uint8 pixel value(s) -> the expected value in [-1, 1]."""
    return np.asarray(v, dtype=np.float64) / 255.0 * 2.0 - 1.0


def close(t, expected):
    np.testing.assert_allclose(t.numpy() if torch.is_tensor(t) else t, expected, rtol=0, atol=1e-6)


def one_line_error(fn, *needles):
    with pytest.raises(LabError) as e:
        fn()
    msg = str(e.value)
    assert "\n" not in msg
    for n in needles:
        assert n in msg, (n, msg)
    return msg


# ----------------------------------------------------------------------------- folders
def gray(v, h=4, w=4):
    a = (np.arange(h * w, dtype=np.int64).reshape(h, w) * 3 + v) % 256
    return a.astype(np.uint8)


@pytest.fixture
def folder(tmp_path):
    """root/cat (2 gray PNGs), root/ant (1 gray PNG, upper-case extension), plus files that must be ignored."""
    root = tmp_path / "pets"
    (root / "cat").mkdir(parents=True)
    (root / "ant").mkdir()
    (root / ".ipynb_checkpoints").mkdir()
    Image.fromarray(gray(10)).save(root / "cat" / "c0.png")
    Image.fromarray(gray(20)).save(root / "cat" / "c1.png")
    Image.fromarray(gray(200)).save(root / "ant" / "a0.PNG")
    (root / "cat" / "notes.txt").write_text("not an image")
    Image.fromarray(gray(0)).save(root / ".ipynb_checkpoints" / "x.png")
    return root


def test_image_folder_pixels_labels_and_class_names(folder):
    s = load_images(str(folder))
    assert s.shape == (1, 4, 4) and len(s) == 3 and s.x.dtype == torch.float32
    assert s.class_names == ["ant", "cat"] and s.n_classes == 2  # sorted by name
    assert s.y.tolist() == [0, 1, 1]  # ant/a0, cat/c0, cat/c1
    close(s.x[0, 0], scaled(gray(200)))
    close(s.x[1, 0], scaled(gray(10)))
    close(s.x[2, 0], scaled(gray(20)))
    assert s.name == "pets" and s.spec == f"images:{folder.resolve()}"
    assert float(s.x.min()) >= -1 and float(s.x.max()) <= 1


def test_folder_rgb_modes_and_forced_channels(tmp_path):
    root = tmp_path / "col"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    rgb = np.stack([gray(0), gray(50), gray(100)], -1)
    Image.fromarray(rgb, "RGB").save(root / "a" / "rgb.png")
    rgba = np.concatenate([rgb, np.full((4, 4, 1), 7, np.uint8)], -1)
    Image.fromarray(rgba, "RGBA").save(root / "a" / "rgba.png")
    Image.fromarray(gray(30)).save(root / "b" / "g.bmp")  # gray in a color set -> replicated to 3 channels
    Image.fromarray(gray(5)).convert("P").save(root / "b" / "p.gif")
    s = load_images(str(root))
    assert s.shape == (3, 4, 4) and s.y.tolist() == [0, 0, 1, 1]
    close(s.x[0], scaled(rgb.transpose(2, 0, 1)))
    close(s.x[1], scaled(rgb.transpose(2, 0, 1)))  # alpha dropped
    close(s.x[2], scaled(np.stack([gray(30)] * 3)))
    close(s.x[3], scaled(np.stack([gray(5)] * 3)))  # the palette of a gray image holds its exact values
    s1 = load_images(str(root), channels=1)
    assert s1.shape == (1, 4, 4)
    luma = np.asarray(Image.fromarray(rgb, "RGB").convert("L"))
    close(s1.x[0, 0], scaled(luma))
    close(s1.x[2, 0], scaled(gray(30)))
    assert s1.spec.endswith("?channels=1")


def test_flat_folder_is_unlabelled_and_jpeg_webp_read(tmp_path):
    root = tmp_path / "flat"
    root.mkdir()
    Image.fromarray(gray(0)).save(root / "a.png")
    Image.fromarray(np.full((4, 4), 128, np.uint8)).save(root / "b.JPG", quality=100)
    Image.fromarray(np.full((4, 4), 64, np.uint8)).save(root / "c.webp", lossless=True)
    s = load_images(str(root))
    # WebP has no gray mode (Pillow stores it as RGB), so the set is RGB and gray files are replicated
    assert s.n_classes == 0 and s.class_names == [] and len(s) == 3 and s.shape == (3, 4, 4)
    close(s.x[0], scaled(np.stack([gray(0)] * 3)))
    assert np.abs(s.x[1].numpy() - scaled(128)).max() < 2 / 255 * 2  # jpeg: near, not exact
    close(s.x[2], scaled(np.full((3, 4, 4), 64)))
    s1 = load_images(str(root), channels=1)
    assert s1.shape == (1, 4, 4)
    close(s1.x[2, 0], scaled(np.full((4, 4), 64)))


def test_16bit_png_scaled_by_65535(tmp_path):
    root = tmp_path / "deep"
    root.mkdir()
    a = (np.arange(16).reshape(4, 4) * 4369).astype(np.uint16)  # 0 .. 65535
    Image.fromarray(a).save(root / "a.png")
    Image.fromarray(a[::-1].copy()).save(root / "b.png")
    s = load_images(str(root))
    assert s.shape == (1, 4, 4)
    close(s.x[0, 0], a / 65535 * 2 - 1)
    close(s.x[1, 0], a[::-1] / 65535 * 2 - 1)


def test_mixed_sizes_need_size_then_bilinear_resize(tmp_path):
    root = tmp_path / "mixed"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    big = gray(9, 8, 8)
    Image.fromarray(gray(1)).save(root / "a" / "small.png")
    Image.fromarray(big).save(root / "b" / "big.png")
    one_line_error(lambda: load_images(str(root)), "differ in size", "small.png", "big.png", "size=")
    s = load_images(str(root), size=4)
    assert s.shape == (1, 4, 4) and s.spec.endswith("?size=4")
    close(s.x[0, 0], scaled(gray(1)))  # already 4x4: untouched
    close(s.x[1, 0], scaled(np.asarray(Image.fromarray(big).resize((4, 4), Image.BILINEAR))))
    # the spec records the options, so resolving it loads the same images again
    again = lab.data.resolve(s.spec)
    assert again.shape == s.shape and torch.equal(again.x, s.x)


def test_folder_errors(tmp_path):
    one_line_error(lambda: load_images(str(tmp_path / "nope")), "does not exist", "nope", "ImageFolder")
    empty = tmp_path / "empty"
    empty.mkdir()
    one_line_error(lambda: load_images(str(empty)), "no images", "empty", ".png")
    bad = tmp_path / "bad"
    (bad / "k").mkdir(parents=True)
    Image.fromarray(gray(1)).save(bad / "k" / "ok.png")
    (bad / "k" / "broken.png").write_bytes(b"this is not a png")
    one_line_error(lambda: load_images(str(bad)), "cannot read image", "broken.png")
    holes = tmp_path / "holes"
    (holes / "a").mkdir(parents=True)
    (holes / "b").mkdir()
    Image.fromarray(gray(1)).save(holes / "a" / "x.png")
    Image.fromarray(gray(1)).save(holes / "a" / "y.png")
    one_line_error(lambda: load_images(str(holes)), "class folder", "has no images")
    for kw, needle in (({"size": 0}, "size"), ({"channels": 2}, "channels"), ({"size": 2.5}, "size")):
        one_line_error(lambda: load_images(str(holes / "a"), **kw), needle, repr(next(iter(kw.values()))))
    one_line_error(lambda: load_images(str(holes / "a") + "?colour=1"), "colour=1", "size=N")
    txt = tmp_path / "points.txt"
    txt.write_text("1 2 3")
    one_line_error(lambda: load_images(str(txt)), "unsupported", ".npz")


def test_resolve_and_sample(folder):
    src = lab.data.resolve("images:" + str(folder))
    assert src.shape == (1, 4, 4)
    x, y = src.sample(5, 0, labelled=True)
    assert x.shape == (5, 1, 4, 4) and y.shape == (5,) and y.dtype == torch.long
    x2, y2 = src.sample(5, 0, labelled=True)
    assert torch.equal(x, x2) and torch.equal(y, y2)  # same seed, same draw
    # every drawn image is one of the source's images, with its own label
    for xi, yi in zip(x, y):
        k = int(torch.nonzero((src.x == xi).flatten(1).all(1))[0])
        assert int(src.y[k]) == int(yi)


# ----------------------------------------------------------------------------- npz
@pytest.mark.parametrize("layout", ["nhw", "nhwc", "nchw", "nhwc1"])
def test_npz_layouts(tmp_path, layout):
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, size=(6, 3, 5, 7), dtype=np.uint8)  # N, C, H, W with H != W
    x = {"nhw": base[:, 0], "nhwc": base.transpose(0, 2, 3, 1), "nchw": base,
         "nhwc1": base[:, :1].transpose(0, 2, 3, 1)}[layout]
    want = {"nhw": base[:, :1], "nhwc": base, "nchw": base, "nhwc1": base[:, :1]}[layout]
    y = np.array([0, 1, 2, 0, 1, 2], dtype=np.int32)
    f = tmp_path / f"set_{layout}.npz"
    np.savez(f, x=x, y=y)
    s = load_images(str(f))
    assert s.shape == want.shape[1:] and s.name == f"set_{layout}"
    close(s.x, scaled(want))
    assert s.y.tolist() == y.tolist() and s.n_classes == 3


def test_npz_ambiguous_layout_rule(tmp_path):
    """Channels-last only when the last dim is 1 or 3 AND the second is not: (N, 3, 5, 3) is channels-first."""
    a = np.random.default_rng(4).integers(0, 256, (2, 3, 5, 3), dtype=np.uint8)
    np.savez(tmp_path / "first.npz", x=a)
    s = load_images(str(tmp_path / "first.npz"))
    assert s.shape == (3, 5, 3)
    close(s.x, scaled(a))
    b = a.transpose(0, 2, 3, 1).copy()  # (2, 5, 3, 3): second dim 5 -> channels-last
    np.savez(tmp_path / "last.npz", x=b)
    s = load_images(str(tmp_path / "last.npz"))
    assert s.shape == (3, 5, 3)
    close(s.x, scaled(a))


def test_npz_float_ranges_class_names_and_channels(tmp_path):
    rng = np.random.default_rng(1)
    u = rng.random((4, 3, 3)).astype(np.float32)
    np.savez(tmp_path / "unit.npz", x=u)
    s = load_images(str(tmp_path / "unit.npz"))
    assert s.n_classes == 0
    close(s.x[:, 0], u.astype(np.float64) * 2 - 1)
    m = (u * 2 - 1).astype(np.float32)
    m[0, 0, 0] = -1.0  # make sure the range really reaches below 0
    np.savez(tmp_path / "sym.npz", x=m, y=np.array([1, 0, 1, 0]), class_names=np.array(["zero", "one"]))
    s = load_images(str(tmp_path / "sym.npz"))
    close(s.x[:, 0], m)  # already in [-1, 1]: kept
    assert s.class_names == ["zero", "one"] and s.n_classes == 2
    s3 = load_images(str(tmp_path / "sym.npz"), channels=3)
    assert s3.shape == (3, 3, 3)
    close(s3.x[:, 2], m)
    rgb = rng.integers(0, 256, size=(3, 2, 2, 3), dtype=np.uint8)
    np.savez(tmp_path / "rgb.npz", x=rgb)
    g = load_images(str(tmp_path / "rgb.npz"), channels=1)
    luma = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114]) / 255
    close(g.x[:, 0], luma * 2 - 1)


def test_npz_errors(tmp_path):
    np.savez(tmp_path / "keys.npz", images=np.zeros((3, 4, 4), np.uint8), labels=np.zeros(3))
    one_line_error(lambda: load_images(str(tmp_path / "keys.npz")), "images, labels", "required: x")
    np.savez(tmp_path / "count.npz", x=np.zeros((3, 4, 4), np.uint8), y=np.array([0, 1]))
    one_line_error(lambda: load_images(str(tmp_path / "count.npz")), "2 labels", "3 images")
    np.savez(tmp_path / "range.npz", x=np.full((3, 4, 4), 2.5, np.float32))
    one_line_error(lambda: load_images(str(tmp_path / "range.npz")), "2.5", "[0, 1] or [-1, 1]")
    np.savez(tmp_path / "int.npz", x=np.zeros((3, 4, 4), np.int64))
    one_line_error(lambda: load_images(str(tmp_path / "int.npz")), "int64", "uint8")
    np.savez(tmp_path / "ch.npz", x=np.zeros((3, 5, 4, 4), np.uint8))
    one_line_error(lambda: load_images(str(tmp_path / "ch.npz")), "(3, 5, 4, 4)", "1 or 3")
    np.savez(tmp_path / "fy.npz", x=np.zeros((3, 4, 4), np.uint8), y=np.array([0.0, 1.0, 0.5]))
    one_line_error(lambda: load_images(str(tmp_path / "fy.npz")), "float64", "integers")
    np.savez(tmp_path / "obj.npz", x=np.array([{"a": 1}, None], dtype=object))  # needs pickle: refused
    one_line_error(lambda: load_images(str(tmp_path / "obj.npz")), "cannot read npz", "obj.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    one_line_error(lambda: load_images(str(tmp_path / "junk.npz")), "cannot read npz", "junk.npz")


# ----------------------------------------------------------------------------- IDX
def write_idx(path, arr, magic):
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    head = np.array([magic, *arr.shape], dtype=">i4")
    if str(path).endswith(".gz"):
        with gzip.open(path, "wb") as f:
            f.write(head.tobytes() + arr.tobytes())
    else:
        with open(path, "wb") as f:
            head.tofile(f)
            arr.tofile(f)


@pytest.fixture
def mnist(tmp_path):
    """An MNIST-like folder: train and t10k images/labels, 5x6 images (H != W)."""
    d = tmp_path / "mnist"
    d.mkdir()
    rng = np.random.default_rng(2)
    tr, te = rng.integers(0, 256, (7, 5, 6), dtype=np.uint8), rng.integers(0, 256, (3, 5, 6), dtype=np.uint8)
    ytr, yte = np.array([3, 1, 4, 1, 5, 9, 2], np.uint8), np.array([0, 7, 7], np.uint8)
    write_idx(d / "train-images-idx3-ubyte", tr, 0x803)
    write_idx(d / "train-labels-idx1-ubyte", ytr, 0x801)
    write_idx(d / "t10k-images-idx3-ubyte.gz", te, 0x803)
    write_idx(d / "t10k-labels-idx1-ubyte.gz", yte, 0x801)
    return d, tr, ytr, te, yte


def test_idx_file_gz_and_folder(mnist):
    d, tr, ytr, te, yte = mnist
    s = load_images(str(d / "train-images-idx3-ubyte"))
    assert s.shape == (1, 5, 6) and len(s) == 7 and s.name == "train-images-idx3-ubyte"
    close(s.x[:, 0], scaled(tr))
    assert s.y.tolist() == ytr.tolist() and s.n_classes == 10
    t = load_images(str(d / "t10k-images-idx3-ubyte.gz"))
    close(t.x[:, 0], scaled(te))
    assert t.y.tolist() == yte.tolist() and t.n_classes == 8
    f = load_images(str(d))  # the folder: its train files
    assert f.name == "mnist" and torch.equal(f.x, s.x) and torch.equal(f.y, s.y)
    src = lab.data.resolve("images:" + str(d))
    x, y = src.sample(5, 0, labelled=True)
    assert x.shape == (5, 1, 5, 6) and set(y.tolist()) <= set(ytr.tolist())


def test_idx_without_labels_and_kaggle_names(tmp_path):
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (4, 3, 3), dtype=np.uint8)
    write_idx(tmp_path / "mine-images-idx3-ubyte", a, 0x803)
    s = load_images(str(tmp_path / "mine-images-idx3-ubyte"))
    assert s.n_classes == 0
    close(s.x[:, 0], scaled(a))
    k = tmp_path / "kaggle"
    k.mkdir()
    write_idx(k / "train-images.idx3-ubyte", a, 0x803)
    write_idx(k / "train-labels.idx1-ubyte", np.array([1, 0, 1, 0]), 0x801)
    s = load_images(str(k / "train-images.idx3-ubyte"))
    assert s.y.tolist() == [1, 0, 1, 0]


def test_idx_errors(mnist, tmp_path):
    d, tr, ytr, te, yte = mnist
    bad = tmp_path / "bad"
    bad.mkdir()
    write_idx(bad / "x-images-idx3-ubyte", tr, 0x801)  # wrong magic
    one_line_error(lambda: load_images(str(bad / "x-images-idx3-ubyte")), "0x00000801", "expected 0x00000803")
    raw = (d / "train-images-idx3-ubyte").read_bytes()
    (bad / "y-images-idx3-ubyte").write_bytes(raw[:-5])  # truncated data
    one_line_error(lambda: load_images(str(bad / "y-images-idx3-ubyte")), "data bytes", "(7, 5, 6)", str(7 * 5 * 6))
    (bad / "z-images-idx3-ubyte").write_bytes(raw[:2])
    one_line_error(lambda: load_images(str(bad / "z-images-idx3-ubyte")), "too short")
    write_idx(bad / "w-images-idx3-ubyte", tr, 0x803)
    write_idx(bad / "w-labels-idx1-ubyte", ytr[:5], 0x801)
    one_line_error(lambda: load_images(str(bad / "w-images-idx3-ubyte")), "5 labels", "7 images")
    write_idx(bad / "v-images-idx3-ubyte", tr, 0x803)
    write_idx(bad / "v-labels-idx1-ubyte", tr, 0x803)  # an images file where labels should be
    one_line_error(lambda: load_images(str(bad / "v-images-idx3-ubyte")), "v-labels-idx1-ubyte", "0x00000801")
    (bad / "u-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    one_line_error(lambda: load_images(str(bad / "u-images-idx3-ubyte.gz")), "cannot read IDX", "u-images")
    one_line_error(lambda: load_images(str(bad)), "cannot pick", "train")  # many files, none named train


def test_idx_resize(mnist):
    d, tr, ytr, *_ = mnist
    s = load_images(str(d), size=3)
    assert s.shape == (1, 3, 3)
    want = np.stack([np.asarray(Image.fromarray((a / 255).astype(np.float32), "F").resize((3, 3), Image.BILINEAR))
                     for a in tr])
    close(s.x[:, 0], np.clip(want, 0, 1) * 2 - 1)
    assert s.y.tolist() == ytr.tolist()
