"""Hypothesis strategies and file builders for tests/test_fuzz.py: malformed arrays, files, JSON, numbers.

Every builder writes into a folder it is given (a fresh per-case folder inside the fuzz sandbox) and returns
the path a loader should be pointed at. Nothing here imports the lab beyond what a builder needs.
"""
from __future__ import annotations

import copy
import gzip
import io
import json
import math
import struct
from pathlib import Path

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as npst

# ----------------------------------------------------------------------------------------------- numbers
#: magnitudes that no bound should accept; allocating them fails at once (never a slow, half-valid run)
HUGE_INTS = (10**12, 10**15, 2**63 - 1, 2**63, 2**64, 10**30, -(2**63) - 1, -(10**12))
SPECIAL_FLOATS = (math.nan, math.inf, -math.inf, 1e308, -1e308, 1e-320, -0.0, 0.5, 1.5, 0.999, 1.0, -1.0)

small_ints = st.integers(-3, 40)
huge_ints = st.sampled_from(HUGE_INTS)
any_ints = st.one_of(small_ints, small_ints, huge_ints)
any_floats = st.one_of(st.sampled_from(SPECIAL_FLOATS), st.floats(allow_nan=True, allow_infinity=True))

#: anything a Python caller might pass where a number is expected
py_numbers = st.one_of(
    any_ints, any_floats, st.booleans(), st.none(),
    st.sampled_from(["3", "1.5", "", "abc", "nan", "1e3", [], [1], {}, b"1", 3 + 0j]),
    st.builds(np.int64, small_ints), st.builds(np.float32, st.floats(-100, 100)),
)

#: what a user might type for a number on the command line
NUMBER_WORDS = ["1.5", "1e3", "1e400", "-0", "0", "nan", "NaN", "inf", "-inf", "", " ", "abc", "1_000", "0x10",
                "1,000", "+7", "٣", "--n", "-", "1 2", "2.0", "true", "None", "1e-9"]
cli_numbers = st.one_of(
    small_ints.map(str), small_ints.map(str), huge_ints.map(str), st.sampled_from(NUMBER_WORDS),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6).map(repr),
    st.text(alphabet="0123456789.-+eE xa", min_size=1, max_size=6),
)


# ----------------------------------------------------------------------------------------------- JSON
json_scalars = st.one_of(
    st.none(), st.booleans(), any_ints, st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8), st.sampled_from(["mlp", "unet", "linear", "v", "x", "eps", "euler", "heun", "cosine", "", "-1"]),
)


def json_values(max_leaves: int = 12):
    return st.recursive(json_scalars, lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)), max_leaves=max_leaves)


def dump_json(v) -> str:
    """JSON text as Python writes it (NaN and Infinity included: json.loads reads them back)."""
    return json.dumps(v)


# ----------------------------------------------------------------------------------------------- arrays
DTYPES = ("float32", "float64", "float16", "int8", "int32", "int64", "uint8", "uint16", "bool", "complex64", "<U3",
          "|S3", "datetime64[s]", "timedelta64[ms]")


def arrays(shape=None, dtypes=DTYPES, max_dims: int = 4, max_side: int = 6):
    """Numeric and non-numeric arrays of any small shape; floats include NaN, +-Inf, huge and subnormal values."""
    shapes = shape if shape is not None else npst.array_shapes(min_dims=0, max_dims=max_dims, min_side=0,
                                                               max_side=max_side)

    @st.composite
    def build(draw):
        dt = np.dtype(draw(st.sampled_from(dtypes)))
        shp = draw(shapes)
        if dt.kind == "f":
            info = np.finfo(dt)
            elems = st.one_of(st.floats(width=dt.itemsize * 8, allow_nan=True, allow_infinity=True),
                              st.sampled_from([float(info.max), float(info.min), 0.0, 1.0, -1.0, 0.5]))
            return draw(npst.arrays(dt, shp, elements=elems))
        return draw(npst.arrays(dt, shp))

    return build()


def object_array():
    return st.sampled_from([np.array([{"a": 1}, None], dtype=object), np.array([1, "x", 2.5], dtype=object),
                            np.array([[1, 2], [3, 4]], dtype=object)])


# ----------------------------------------------------------------------------------------------- byte damage
@st.composite
def damage(draw, data: bytes) -> bytes:
    """A damaged copy of ``data``: truncated, bytes flipped, bytes inserted, emptied or replaced by noise."""
    kind = draw(st.sampled_from(["truncate", "truncate", "flip", "flip", "insert", "empty", "noise", "head-noise"]))
    n = len(data)
    if kind == "truncate":
        return data[:draw(st.integers(0, max(0, n - 1)))]
    if kind == "flip":
        b = bytearray(data)
        for _ in range(draw(st.integers(1, 8))):
            if not b:
                break
            i = draw(st.integers(0, len(b) - 1))
            b[i] = draw(st.integers(0, 255))
        return bytes(b)
    if kind == "insert":
        i = draw(st.integers(0, n))
        return data[:i] + draw(st.binary(min_size=1, max_size=16)) + data[i:]
    if kind == "empty":
        return b""
    if kind == "noise":
        return draw(st.binary(max_size=256))
    return draw(st.binary(min_size=1, max_size=64)) + data[64:]  # header replaced


# ----------------------------------------------------------------------------------------------- points files
def _npy_bytes(arr) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)
    return buf.getvalue()


def _npz_bytes(arrs: dict, compress: bool = False) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compress else np.savez)(buf, **arrs)
    return buf.getvalue()


def _maybe(draw, kinds: list[str], valid_weight: int) -> str | None:
    """None (keep the input valid) or ONE corruption: most inputs are nearly valid, so every check is reached."""
    return draw(st.sampled_from([None] * valid_weight + kinds))


finite_floats = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, width=32)


# ----------------------------------------------------------------------------------------------- points files
POINT_DAMAGE = ["shape", "ndim", "nan", "inf", "beyond-float32", "empty", "one-point", "object", "dtype", "npz-as-npy",
                "truncated", "bytes-damage", "noise", "random-array", "csv-cells", "csv-header", "csv-ragged",
                "odd-name"]


@st.composite
def point_files(draw):
    """(file name, bytes, what): a valid (N, 2) point file (.npy or .csv), or one with ONE thing wrong."""
    n = draw(st.integers(2, 12))
    pts = np.asarray(draw(npst.arrays(np.float64, (n, 2), elements=finite_floats)))
    fmt = draw(st.sampled_from([".npy", ".npy", ".csv"]))
    bad = _maybe(draw, POINT_DAMAGE, 8)
    name = "points" + fmt
    if bad == "shape":
        pts = pts.reshape(-1, 1) if draw(st.booleans()) else np.concatenate([pts, pts[:, :1]], 1)
    elif bad == "ndim":
        pts = pts.reshape(draw(st.sampled_from([(-1,), (n, 2, 1), (1, n, 2)])))
    elif bad in ("nan", "inf"):
        pts[draw(st.integers(0, n - 1)), draw(st.integers(0, 1))] = math.nan if bad == "nan" else -math.inf
    elif bad == "beyond-float32":
        pts[0, 0] = draw(st.sampled_from([1e39, -1e300, 3.5e38]))
    elif bad == "empty":
        pts = np.zeros((0, 2)) if draw(st.booleans()) else np.zeros((0,))
    elif bad == "one-point":
        pts = pts[:1]
    elif bad == "object":
        return name, _npy_bytes(draw(object_array())), bad
    elif bad == "dtype":
        dt = draw(st.sampled_from(["<U3", "|S3", "complex64", "bool", "datetime64[s]", "float16", "int8", "uint64"]))
        pts = pts.astype(dt) if dt not in ("<U3", "|S3") else pts.astype(int).astype(dt)
    elif bad == "npz-as-npy":
        return "points.npy", _npz_bytes({"x": pts}), bad
    elif bad == "random-array":
        return name, _npy_bytes(draw(arrays())), bad
    elif bad == "noise":
        return name, draw(st.binary(max_size=200)), bad
    elif bad == "odd-name":
        name = draw(st.sampled_from(["two\nlines", "tab\t", "POINTS", " lead", "x" * 200])) + fmt
    if fmt == ".npy" or pts.dtype.kind not in "fiu":  # text, dates, complex: only an .npy holds them
        data = _npy_bytes(pts)
        name = name[:-4] + ".npy" if name.endswith(".csv") else name
    else:
        buf = io.StringIO()
        buf.write(draw(st.sampled_from(["", "", "x,y\n"])))
        table = np.atleast_2d(pts) if pts.ndim < 2 else pts.reshape(pts.shape[0], -1) if pts.size else np.zeros((0, 2))
        np.savetxt(buf, table, delimiter=",")
        text = buf.getvalue()
        if bad == "csv-cells":
            cells = text.split(",")
            i = draw(st.integers(0, max(0, len(cells) - 1)))
            cells[i] = draw(st.sampled_from(["nan", "inf", "1e999", "", "x", '"3"', "0x1", "1,5", " "]))
            text = ",".join(cells)
        elif bad == "csv-header":
            text = draw(st.sampled_from(["a;b\n", "# c\n", "x,y\nu,v\n", "\ufeffx,y\n"])) + text
        elif bad == "csv-ragged":
            text += draw(st.sampled_from(["1\n", "1,2,3\n", ",\n", "\n\n1,2\n"]))
        data = text.encode()
    if bad == "truncated":
        data = data[: draw(st.integers(0, max(0, len(data) - 1)))]
    elif bad == "bytes-damage":
        data = draw(damage(data))
    return name, data, bad or "valid"


# ----------------------------------------------------------------------------------------------- npz images
NPZ_DAMAGE = ["x-dtype", "x-nan", "x-range", "x-ndim", "x-zero-dim", "x-channels", "x-count", "x-object", "no-x",
              "y-length", "y-negative", "y-dtype", "y-2d", "y-object", "names-dtype", "names-2d", "names-few",
              "extra-key", "damaged", "noise", "random-arrays", "odd-name"]


@st.composite
def npz_files(draw):
    """(file name, bytes, what): a valid images .npz (x, optional y and class_names), or one with ONE thing wrong."""
    n, h, w = draw(st.integers(2, 5)), draw(st.integers(1, 5)), draw(st.integers(1, 5))
    c = draw(st.sampled_from([1, 3]))
    layout = draw(st.sampled_from(["nhw", "nhwc", "nchw"])) if c == 1 else draw(st.sampled_from(["nhwc", "nchw"]))
    shape = {"nhw": (n, h, w), "nhwc": (n, h, w, c), "nchw": (n, c, h, w)}[layout]
    kind = draw(st.sampled_from(["uint8", "unit", "signed"]))
    if kind == "uint8":
        x = np.asarray(draw(npst.arrays(np.uint8, shape)))
    else:
        lo = 0.0 if kind == "unit" else -1.0
        x = np.asarray(draw(npst.arrays(np.float32, shape, elements=st.floats(lo, 1.0, width=32))))
    arrs = {"x": x}
    k = draw(st.integers(1, 4))
    if draw(st.booleans()):
        arrs["y"] = np.asarray(draw(npst.arrays(np.int64, (n,), elements=st.integers(0, k - 1))))
        if draw(st.booleans()):
            arrs["class_names"] = np.array([f"c{i}" for i in range(k)])
    bad = _maybe(draw, NPZ_DAMAGE, 8)
    name = "images.npz"
    if bad == "x-dtype":
        arrs["x"] = x.astype(draw(st.sampled_from(["int64", "bool", "complex64", "<U3", "float16", "uint16", "int8"])))
    elif bad == "x-nan":
        xf = x.astype(np.float32)
        xf.flat[draw(st.integers(0, xf.size - 1))] = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
        arrs["x"] = xf
    elif bad == "x-range":
        xf = x.astype(np.float64) / (255.0 if kind == "uint8" else 1.0)
        xf.flat[0] = draw(st.sampled_from([1.0001, -1.5, 2.0, 255.0, 1e300, -1e-300 - 1.0]))
        arrs["x"] = xf
    elif bad == "x-ndim":
        shp = draw(st.sampled_from([(-1,), (1, -1), (1, 1, *x.shape), "scalar"]))
        arrs["x"] = np.array(x.flat[0]) if shp == "scalar" else x.reshape(shp)
    elif bad == "x-zero-dim":
        s = list(shape)
        s[draw(st.integers(1, len(s) - 1))] = 0
        arrs["x"] = np.zeros(s, np.uint8)
    elif bad == "x-channels":
        arrs["x"] = np.zeros((n, h, w, draw(st.sampled_from([2, 4, 5]))), np.uint8)
    elif bad == "x-count":
        arrs["x"] = x[: draw(st.integers(0, 1))]
    elif bad == "x-object":
        arrs["x"] = draw(object_array())
    elif bad == "no-x":
        arrs["images"] = arrs.pop("x")
    elif bad == "y-length":
        arrs["y"] = np.zeros(n + draw(st.sampled_from([-1, 1, 5])), np.int64)
    elif bad == "y-negative":
        arrs["y"] = np.full(n, -1, np.int64)
    elif bad == "y-dtype":
        arrs["y"] = np.zeros(n, draw(st.sampled_from(["float32", "bool", "<U2", "complex64"])))
    elif bad == "y-2d":
        arrs["y"] = np.zeros((n, 2), np.int64)
    elif bad == "y-object":
        arrs["y"] = draw(object_array())
    elif bad == "names-dtype":
        arrs["class_names"] = np.arange(k)
    elif bad == "names-2d":
        arrs["class_names"] = np.array([["a", "b"]] * 2)
    elif bad == "names-few":
        arrs["y"] = np.full(n, 3, np.int64)
        arrs["class_names"] = np.array(["a"])
    elif bad == "extra-key":
        arrs[draw(st.sampled_from(["z", "labels", "X"]))] = np.zeros(3)
    elif bad == "random-arrays":
        arrs = {key: draw(arrays()) for key in draw(st.lists(st.sampled_from(["x", "y", "class_names"]), min_size=1,
                                                             max_size=3, unique=True))}
    elif bad == "odd-name":
        name = draw(st.sampled_from(["two\nlines.npz", "IMAGES.NPZ", "sp ace.npz"]))
    data = _npz_bytes(arrs, compress=draw(st.booleans()))
    if bad == "damaged":
        data = draw(damage(data))
    elif bad == "noise":
        data = draw(st.binary(max_size=300))
    return name, data, bad or "valid"


# ----------------------------------------------------------------------------------------------- IDX
IDX3, IDX1 = 0x00000803, 0x00000801
IDX_DAMAGE = ["magic", "dims-huge", "dims-wrap", "dims-negative", "dims-zero", "short-header", "data-short",
              "data-long", "damaged", "not-gzip", "labels-magic", "labels-count", "labels-damaged", "noise"]


def _idx(magic: int, dims, data: bytes) -> bytes:
    return struct.pack(">I", magic & 0xFFFFFFFF) + b"".join(struct.pack(">I", d & 0xFFFFFFFF) for d in dims) + data


@st.composite
def idx_files(draw):
    """({file name: bytes}, what): a valid IDX images file (and maybe its labels file), or ONE thing wrong."""
    n, h, w = draw(st.integers(2, 4)), draw(st.integers(1, 5)), draw(st.integers(1, 5))
    gz = draw(st.booleans())
    bad = _maybe(draw, IDX_DAMAGE, 8)
    magic, dims, data = IDX3, [n, h, w], draw(st.binary(min_size=n * h * w, max_size=n * h * w))
    if bad == "magic":
        magic = draw(st.sampled_from([IDX1, 0x00000802, 0x00000C03, 0xFFFFFFFF, 0]))
    elif bad == "dims-huge":
        dims = [draw(st.sampled_from([2**31 - 1, 2**20, 60000])), h, w]
    elif bad == "dims-wrap":  # a product of 2**64: 0 in 64-bit arithmetic, which "fits" no data at all
        dims, data = [2**21, 2**21, 2**22], b""
    elif bad == "dims-negative":
        dims = [2**32 - 1, h, w]  # -1 as a signed int32
    elif bad == "dims-zero":
        dims[draw(st.integers(0, 2))] = 0
    elif bad == "short-header":
        dims = dims[:1]
    elif bad == "data-short":
        data = data[:-1]
    elif bad == "data-long":
        data += b"\x00" * draw(st.integers(1, 5))
    body = _idx(magic, dims, data)
    if bad == "damaged":
        body = draw(damage(body))
    elif bad == "noise":
        body = draw(st.binary(max_size=64))
    name = "train-images-idx3-ubyte" + (".gz" if gz else "")
    files = {name: gzip.compress(body, mtime=0) if gz and bad != "not-gzip" else body}
    if bad == "not-gzip":
        files = {"train-images-idx3-ubyte.gz": body}
    if draw(st.booleans()) or bad in ("labels-magic", "labels-count", "labels-damaged"):
        ln = n + draw(st.sampled_from([1, -1, 3])) if bad == "labels-count" else n
        lb = _idx(IDX3 if bad == "labels-magic" else IDX1, [ln],
                  draw(st.binary(min_size=max(0, ln), max_size=max(0, ln))))
        if bad == "labels-damaged":
            lb = draw(damage(lb))
        lgz = draw(st.booleans())
        files["train-labels-idx1-ubyte" + (".gz" if lgz else "")] = gzip.compress(lb, mtime=0) if lgz else lb
    return files, bad or "valid"


# ----------------------------------------------------------------------------------------------- image folders
PIL_MODES = {  # extension -> modes Pillow can write there
    ".png": ["1", "L", "LA", "I;16", "P", "RGB", "RGBA"],
    ".bmp": ["1", "L", "P", "RGB"],
    ".gif": ["L", "P"],
    ".jpg": ["L", "RGB", "CMYK"],
    ".webp": ["RGB", "RGBA"],
}


def image_bytes(ext: str, mode: str, w: int, h: int, seed: int) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    if mode == "I;16":
        img = Image.fromarray(rng.integers(0, 65536, size=(h, w)).astype(np.uint16))  # mode I;16
    else:
        img = Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8), "RGB").convert(mode)
    buf = io.BytesIO()
    fmt = {".png": "PNG", ".bmp": "BMP", ".gif": "GIF", ".jpg": "JPEG", ".webp": "WEBP"}[ext]
    img.save(buf, format=fmt)
    return buf.getvalue()


FOLDER_DAMAGE = ["file-damaged", "file-empty", "file-noise", "sizes-differ", "empty-class", "top-and-classes",
                 "one-image", "no-images", "odd-names", "hidden-only", "mode-F"]


@st.composite
def image_entries(draw):
    """({relative path: bytes}, what): a valid image folder (flat, or class subfolders), or ONE thing wrong."""
    classes = draw(st.sampled_from([[""], [""], ["a/"], ["a/", "b/"], ["cat/", "dog/", "eel/"]]))
    w, h = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    bad = _maybe(draw, FOLDER_DAMAGE, 6)
    files = {}
    for cls in classes:
        for i in range(draw(st.integers(1 if cls else 2, 3))):
            ext = draw(st.sampled_from(list(PIL_MODES)))
            mode = draw(st.sampled_from(PIL_MODES[ext]))
            files[f"{cls}img{i}{draw(st.sampled_from([ext, ext, ext.upper()]))}"] = image_bytes(
                ext, mode, w, h, draw(st.integers(0, 9)))
    names = sorted(files)
    victim = draw(st.sampled_from(names))
    if bad == "file-damaged":
        files[victim] = draw(damage(files[victim]))
    elif bad == "file-empty":
        files[victim] = b""
    elif bad == "file-noise":
        files[victim] = draw(st.binary(max_size=64))
    elif bad == "sizes-differ":
        files[victim] = image_bytes(".png", "L", w + 1, h, 0)
    elif bad == "empty-class":
        files["zzz-empty/notes.txt"] = b"no images here"
    elif bad == "top-and-classes":
        files["top.png" if classes != [""] else "sub/x.png"] = image_bytes(".png", "L", w, h, 0)
    elif bad == "one-image":
        files = {victim: files[victim]}
    elif bad == "no-images":
        files = {"readme.txt": b"nothing", ".hidden.png": image_bytes(".png", "L", w, h, 0)}
    elif bad == "odd-names":
        files = {k.replace("img", draw(st.sampled_from(["two\nlines ", "t\tab", "é"]))): v for k, v in files.items()}
    elif bad == "hidden-only":
        files = {f".{k.replace('/', '_')}": v for k, v in files.items()}
    elif bad == "mode-F":
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(np.zeros((h, w), np.float32), "F").save(buf, format="TIFF")
        files[victim.rsplit(".", 1)[0] + ".png"] = buf.getvalue()  # a TIFF (mode F) named .png
    return files, bad or "valid"


def write_files(folder: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        p = folder / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)


# ----------------------------------------------------------------------------------------------- model folders
def _paths(v, prefix=()):
    """Every (path, value) inside a JSON value (dict keys and list indices)."""
    yield prefix, v
    if isinstance(v, dict):
        for k, x in v.items():
            yield from _paths(x, prefix + (k,))
    elif isinstance(v, list):
        for i, x in enumerate(v):
            yield from _paths(x, prefix + (i,))


def _set(doc, path, value):
    if not path:
        return value
    cur = doc
    for k in path[:-1]:
        cur = cur[k]
    cur[path[-1]] = value
    return doc


def _delete(doc, path):
    cur = doc
    for k in path[:-1]:
        cur = cur[k]
    del cur[path[-1]]
    return doc


@st.composite
def json_mutation(draw, doc):
    """(description, new text) for a JSON document: keys deleted or added, values of the wrong type, not JSON,
    not an object, truncated; the lab's own structure is the seed, so most mutants are nearly valid."""
    kind = draw(st.sampled_from(["delete", "delete", "retype", "retype", "retype", "add", "not-object", "text",
                                 "truncate", "none"]))
    doc = copy.deepcopy(doc)
    paths = [p for p, _ in _paths(doc) if p]
    if kind == "delete" and paths:
        p = draw(st.sampled_from(paths))
        return f"deleted {'/'.join(map(str, p))}", dump_json(_delete(doc, p))
    if kind == "retype" and paths:
        p = draw(st.sampled_from(paths))
        v = draw(json_values(max_leaves=4))
        return f"set {'/'.join(map(str, p))} = {dump_json(v)[:60]}", dump_json(_set(doc, p, v))
    if kind == "add":
        dicts = [p for p, v in _paths(doc) if isinstance(v, dict)]
        p = draw(st.sampled_from(dicts))
        key = draw(st.sampled_from(["foo", "__tensor__", "__dict_int__", "hidden", "kind", "nets", ""]))
        cur = doc
        for k in p:
            cur = cur[k]
        cur[key] = draw(json_values(max_leaves=3))
        return f"added {'/'.join(map(str, p + (key,)))}", dump_json(doc)
    if kind == "not-object":
        v = draw(json_values(max_leaves=4).filter(lambda x: not isinstance(x, dict)))
        return f"whole document = {dump_json(v)[:60]}", dump_json(v)
    if kind == "text":
        t = draw(st.sampled_from(["", "{", "not json", "\x00\x01", "{'kind': 'flow'}", "[1, 2", "NaN", "\ufeff{}",
                                  "\xff\xfe"]))
        return f"text {t!r}", t
    if kind == "truncate":
        text = json.dumps(doc, indent=2)
        i = draw(st.integers(0, max(0, len(text) - 1)))
        return f"truncated at {i}", text[:i]
    return "unchanged", json.dumps(doc, indent=2)


@st.composite
def weights_mutation(draw, tensors: dict):
    """(description, action) for weights.safetensors; action(folder) rewrites the file in ``folder``."""
    import torch
    from safetensors.torch import save_file

    kind = draw(st.sampled_from(["none", "none", "bytes", "bytes", "bytes", "delete", "dir", "reshape", "dtype",
                                 "nonfinite", "drop-key", "extra-key"]))
    keys = sorted(tensors)
    if kind == "none":
        return "weights unchanged", lambda folder: None
    if kind == "delete":
        return "weights deleted", lambda folder: (folder / "weights.safetensors").unlink()
    if kind == "dir":
        def as_dir(folder):
            (folder / "weights.safetensors").unlink()
            (folder / "weights.safetensors").mkdir()
        return "weights is a folder", as_dir
    if kind == "bytes":
        seed = draw(st.integers(0, 10**6))

        def damaged(folder, seed=seed):
            p = folder / "weights.safetensors"
            data = p.read_bytes()
            p.write_bytes(_damage_det(data, seed))
        return f"weights bytes damaged (seed {seed})", damaged
    t = {k: v.clone() for k, v in tensors.items()}
    k = draw(st.sampled_from(keys))
    if kind == "reshape":
        t[k] = t[k].reshape(-1)[: max(1, t[k].numel() // 2)].clone() if t[k].numel() > 1 else torch.zeros(3)
        desc = f"tensor {k} reshaped to {tuple(t[k].shape)}"
    elif kind == "dtype":
        dt = draw(st.sampled_from([torch.float16, torch.float64, torch.int64, torch.bool, torch.uint8]))
        t[k] = t[k].to(dt)
        desc = f"tensor {k} cast to {dt}"
    elif kind == "nonfinite":
        bad = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
        if t[k].is_floating_point() and t[k].numel():
            t[k].view(-1)[0] = bad
        desc = f"tensor {k}[0] = {bad}"
    elif kind == "drop-key":
        del t[k]
        desc = f"tensor {k} dropped"
    else:
        t["stray.weight"] = torch.zeros(2)
        desc = "extra tensor stray.weight"

    def resave(folder, t=t):
        save_file({n: v.contiguous() for n, v in t.items()}, str(folder / "weights.safetensors"))
    return desc, resave


def _damage_det(data: bytes, seed: int) -> bytes:
    """Deterministic byte damage (used inside an action, after drawing): truncate, flip or overwrite the header."""
    rng = np.random.default_rng(seed)
    kind = rng.integers(0, 4)
    b = bytearray(data)
    if kind == 0 or not b:
        return bytes(b[: int(rng.integers(0, max(1, len(b))))])
    if kind == 1:  # flip bytes in the JSON header (the first few hundred bytes)
        for _ in range(int(rng.integers(1, 6))):
            i = int(rng.integers(0, min(len(b), 400)))
            b[i] = int(rng.integers(0, 256))
        return bytes(b)
    if kind == 2:  # flip bytes anywhere (tensor data: a silently different model)
        for _ in range(int(rng.integers(1, 6))):
            i = int(rng.integers(0, len(b)))
            b[i] = int(rng.integers(0, 256))
        return bytes(b)
    choices = [0, 1, 7, 2**40, 2**64 - 1, len(b) * 4]
    b[:8] = struct.pack("<Q", choices[int(rng.integers(0, len(choices)))])  # the header length field
    return bytes(b)
