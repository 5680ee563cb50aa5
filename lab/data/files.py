"""Users' own images as data: ImageFolder trees, ``.npz`` arrays and MNIST-style IDX files.

:func:`load_images` turns PATH into an :class:`~lab.data.images.ImageSource` of (N, C, H, W)
float32 images in [-1, 1] (C is 1 or 3), with labels when the data has them:

- a directory in torchvision ImageFolder layout ``root/<class_name>/<images>`` (classes
  sorted by name; .png .jpg .jpeg .bmp .gif .webp, any case); a flat folder of images
  with no class subfolders is unlabelled (``n_classes == 0``);
- an ``.npz`` with ``x`` of shape (N, H, W), (N, H, W, C) or (N, C, H, W) and optional
  integer ``y`` (N,) and ``class_names`` (strings); ``x`` is uint8 (0..255) or floats in
  [0, 1] or [-1, 1]. Loaded with ``allow_pickle=False``, always;
- an MNIST-style IDX images file (``*-images-idx3-ubyte``, ``*.idx3-ubyte``, optionally
  ``.gz``), with its labels file next to it (``images-idx3`` -> ``labels-idx1``) if present;
- a directory holding IDX files (e.g. an MNIST folder): its ``train`` images file.

``size`` resizes every image to size x size (Pillow bilinear); ``channels`` (1 or 3) forces
grayscale or RGB. Both can also be written in the spec: ``images:PATH?size=16&channels=1``,
which is how the returned source's ``spec`` records them, so ``resolve(source.spec)``
loads the same data again.
"""
from __future__ import annotations

import gzip
import math
import re
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

from lab.data.source import ImageSource, path_exists
from lab.errors import LabError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
CHANNELS = (1, 3)
MAX_SIZE = 1024  # pixels per side after resizing: far above the toy scale, far below an out-of-memory resize
IDX_IMAGES_MAGIC = 0x00000803  # uint8, 3 dims (N, H, W)
IDX_LABELS_MAGIC = 0x00000801  # uint8, 1 dim (N,)
_IDX_RE = re.compile(r"idx3-ubyte(\.gz)?$", re.IGNORECASE)
_LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R 601-2, the weights of Pillow's convert("L")
_GRAY_MODES = ("1", "L", "LA", "La")
_GRAY16_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N")
_COLOR_MODES = ("RGB", "RGBA", "RGBa", "RGBX", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV")
_ALLOWED = ("a folder of class subfolders of images (ImageFolder), a flat folder of images, a .npz with x (and y), "
            "an IDX images file (*-images-idx3-ubyte[.gz]) or a folder holding IDX files")


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


# ----------------------------------------------------------------------------- options
def _check_options(size, channels):
    if size is not None:
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 0 < int(size) <= MAX_SIZE:
            raise LabError(f"size must be an integer in 1..{MAX_SIZE} (pixels per side), got {size!r}")
        size = int(size)
    if channels is not None:
        if isinstance(channels, bool) or channels not in CHANNELS:
            raise LabError(f"channels must be one of 1, 3, got {channels!r}")
        channels = int(channels)
    return size, channels


def _split_options(path: str, size, channels):
    """``PATH?size=16&channels=1`` -> (PATH, size, channels); the keyword arguments win."""
    if "?" not in path or path_exists(path, "image path"):
        return path, size, channels
    path, _, query = path.rpartition("?")
    opts = {}
    for part in filter(None, query.split("&")):
        key, eq, value = part.partition("=")
        if key not in ("size", "channels") or not eq:
            raise LabError(f"bad image option {part!r} in {path + '?' + query!r}; allowed: size=N, channels=1|3")
        try:
            opts[key] = int(value)
        except ValueError:
            raise LabError(f"bad image option {part!r}: {key} must be an integer") from None
    return path, size if size is not None else opts.get("size"), channels if channels is not None else opts.get("channels")


def _spec(path: Path, size, channels) -> str:
    opts = [f"{k}={v}" for k, v in (("size", size), ("channels", channels)) if v is not None]
    return f"images:{path}" + ("?" + "&".join(opts) if opts else "")


# ----------------------------------------------------------------------------- entry point
def load_images(path: str, size: int | None = None, channels: int | None = None) -> ImageSource:
    """PATH (ImageFolder tree, flat image folder, .npz, IDX file or folder of IDX files) -> ImageSource.

    Images come out float32 (N, C, H, W) in [-1, 1]; ``size`` resizes to size x size (bilinear),
    ``channels`` in (1, 3) forces grayscale/RGB. Bad input raises a one-line LabError.
    """
    path, size, channels = _split_options(str(path), size, channels)
    size, channels = _check_options(size, channels)
    if not str(path).strip():
        raise LabError(f"empty image path; allowed: {_ALLOWED}")
    p = Path(path).expanduser()
    if not path_exists(p, "image path"):
        raise LabError(f"image path {str(path)!r} does not exist; allowed: {_ALLOWED}")
    p = p.resolve()
    if p.is_dir():
        idx = _idx_files_in(p)
        if idx:
            images_file = _pick_train_idx(p, idx)
            x01, y, class_names, fmt = *_read_idx_pair(images_file), None, "idx"
            name = p.name
        else:
            return _load_folder(p, size, channels)
    elif p.suffix.lower() == ".npz":
        x01, y, class_names = _read_npz(p)
        fmt, name = "npz", p.stem
    elif _IDX_RE.search(p.name) or _sniff_idx(p):
        x01, y = _read_idx_pair(p)
        class_names, fmt = None, "idx"
        name = p.name[:-3] if p.name.lower().endswith(".gz") else p.name
    else:
        raise LabError(f"unsupported image path {str(p)!r}; allowed: {_ALLOWED}")
    x01 = _set_channels(x01, channels)
    if size is not None and x01.shape[-2:] != (size, size):
        x01 = _resize_float(x01, size)
    return _make_source(x01, y, name, _spec(p, size, channels), class_names, fmt, p)


def _make_source(x01: np.ndarray, y, name, spec, class_names, fmt, path) -> ImageSource:
    x = torch.from_numpy((x01.astype(np.float64) * 2.0 - 1.0).astype(np.float32))
    yt = None if y is None else torch.from_numpy(np.asarray(y, dtype=np.int64))
    n_classes = None
    if class_names is not None:
        n_classes = len(class_names)
        if yt is not None and len(yt) and int(yt.max()) >= n_classes:
            raise LabError(f"label {int(yt.max())} out of range for {n_classes} class names; allowed: 0..{n_classes - 1}")
    src = ImageSource(x, yt, name, spec, n_classes=n_classes, class_names=list(class_names) if class_names else None)
    src.path, src.format = str(path), fmt
    c, h, w = src.shape
    cls = f", {src.n_classes} classes" if src.n_classes else ", unlabelled"
    src.description = f"{name}: {len(src)} images {c}x{h}x{w} from {fmt} {path}{cls}"
    return src


# ----------------------------------------------------------------------------- image folders
def _is_image(f: Path) -> bool:
    return f.is_file() and not f.name.startswith(".") and f.suffix.lower() in IMAGE_EXTENSIONS


def _images_under(d: Path) -> list[Path]:
    """Image files anywhere under d (like torchvision's os.walk), sorted, hidden entries skipped."""
    out = []
    for f in sorted(d.rglob("*")):
        if any(part.startswith(".") for part in f.relative_to(d).parts):
            continue
        if _is_image(f):
            out.append(f)
    return out


def _load_folder(root: Path, size, channels) -> ImageSource:
    top = sorted(f for f in root.iterdir() if _is_image(f))
    subdirs = sorted((d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")), key=lambda d: d.name)
    per_class = [(d.name, _images_under(d)) for d in subdirs]
    per_class_nonempty = [(c, fs) for c, fs in per_class if fs]
    if per_class_nonempty:
        if top:
            raise LabError(f"folder {str(root)!r} has both images at its top level ({top[0].name!r}, ...) and class "
                           f"subfolders ({', '.join(repr(c) for c, _ in per_class_nonempty)}); use one layout: "
                           "root/<class>/<images> or a flat folder of images")
        empty = [c for c, fs in per_class if not fs]
        if empty:
            raise LabError(f"class folder {str(root / empty[0])!r} has no images; allowed extensions: "
                           f"{', '.join(IMAGE_EXTENSIONS)}")
        class_names = [c for c, _ in per_class]
        files = [f for _, fs in per_class for f in fs]
        y = np.concatenate([np.full(len(fs), k, dtype=np.int64) for k, (_, fs) in enumerate(per_class)])
    elif top:
        class_names, files, y = None, top, None
    else:
        raise LabError(f"no images found in folder {str(root)!r}; allowed: class subfolders or files with extensions "
                       f"{', '.join(IMAGE_EXTENSIONS)} (any case)")
    arrays = [_read_image(f, size, channels) for f in files]
    if size is None:
        h, w = arrays[0].shape[:2]
        for f, a in zip(files, arrays):
            if a.shape[:2] != (h, w):
                raise LabError(f"images differ in size: {files[0].name!r} is {w}x{h} but {str(f.relative_to(root))!r} is "
                               f"{a.shape[1]}x{a.shape[0]} (width x height); pass size=N (or images:PATH?size=N) "
                               "to resize all to N x N")
    c = channels or max(a.shape[2] for a in arrays)
    arrays = [np.repeat(a, 3, axis=2) if a.shape[2] != c else a for a in arrays]  # gray -> RGB replicates, as Pillow
    x01 = np.stack(arrays).transpose(0, 3, 1, 2)
    return _make_source(x01, y, root.name, _spec(root, size, channels), class_names, "folder", root)


def _read_image(f: Path, size, channels) -> np.ndarray:
    """One image file -> (H, W, C) float64 in [0, 1]; C = channels, or the file's own (1 gray, 3 color)."""
    from PIL import Image  # lazy: PIL only needed for image files

    try:
        with Image.open(f) as img:
            img.load()
            mode = img.mode
            if mode in _GRAY16_MODES:
                a = np.asarray(img, dtype=np.float64)
                if a.min() < 0 or a.max() > 65535:
                    raise LabError(f"image {str(f)!r} has {mode} pixel values outside 0..65535")
                a = a / 65535.0
                if size is not None and a.shape != (size, size):
                    a = np.asarray(Image.fromarray(a.astype(np.float32), "F").resize((size, size), Image.BILINEAR),
                                   dtype=np.float64)
                a = a[:, :, None]
                return np.repeat(a, 3, axis=2) if channels == 3 else a
            if mode not in _GRAY_MODES + _COLOR_MODES:
                raise LabError(f"image {str(f)!r} has unsupported mode {mode!r}; allowed: 8-bit gray, 16-bit gray, "
                               "RGB, RGBA, palette")
            target = "L" if channels == 1 or (channels is None and mode in _GRAY_MODES) else "RGB"
            img = img.convert(target)
            if size is not None and img.size != (size, size):
                img = img.resize((size, size), Image.BILINEAR)
            a = np.asarray(img, dtype=np.float64) / 255.0
    except LabError:
        raise
    except Exception as e:  # Pillow raises UnidentifiedImageError, OSError (truncated), ValueError, ...
        raise LabError(f"cannot read image {str(f)!r}: {_one_line(e)}") from None
    return a[:, :, None] if a.ndim == 2 else a


# ----------------------------------------------------------------------------- arrays
def _set_channels(x01: np.ndarray, channels) -> np.ndarray:
    """(N, C, H, W) with C in (1, 3) -> `channels` channels (gray -> RGB replicates; RGB -> gray by luma)."""
    if channels is None or x01.shape[1] == channels:
        return x01
    if channels == 3:
        return np.repeat(x01, 3, axis=1)
    return np.einsum("nchw,c->nhw", x01.astype(np.float64), _LUMA)[:, None]


def _resize_float(x01: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize (Pillow, the same filter as for image files) of (N, C, H, W) floats to size x size."""
    from PIL import Image  # lazy: PIL only needed for image files

    out = np.empty((*x01.shape[:2], size, size), dtype=np.float32)
    for i in range(x01.shape[0]):
        for c in range(x01.shape[1]):
            img = Image.fromarray(np.ascontiguousarray(x01[i, c], dtype=np.float32), "F")
            out[i, c] = np.asarray(img.resize((size, size), Image.BILINEAR))
    return np.clip(out, 0.0, 1.0)


def _to_unit(x: np.ndarray, what: str) -> np.ndarray:
    """uint8 -> /255; floats in [0, 1] kept; floats in [-1, 1] mapped to [0, 1]; anything else: LabError."""
    if x.dtype == np.uint8:
        return x.astype(np.float64) / 255.0
    if not np.issubdtype(x.dtype, np.floating):
        raise LabError(f"{what} has dtype {x.dtype}; allowed: uint8 (0..255) or floats in [0, 1] or [-1, 1]")
    x = x.astype(np.float64)
    if not np.isfinite(x).all():
        raise LabError(f"{what} contains NaN or infinite values")
    lo, hi = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
    if lo >= 0.0 and hi <= 1.0:
        return x
    if lo >= -1.0 and hi <= 1.0:
        return (x + 1.0) / 2.0
    raise LabError(f"{what} float values span [{lo:g}, {hi:g}]; allowed: [0, 1] or [-1, 1] (or uint8 0..255)")


def _layout(x: np.ndarray, what: str) -> np.ndarray:
    """(N,H,W) | (N,H,W,C) | (N,C,H,W) -> (N,C,H,W); channels-last iff the last dim is 1/3 and the second is not."""
    if x.ndim in (3, 4) and 0 in x.shape[1:]:
        raise LabError(f"{what} has shape {x.shape}: images with no pixels; allowed: (N, H, W), (N, H, W, C) or "
                       "(N, C, H, W) with H, W >= 1")
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4:
        if x.shape[-1] in CHANNELS and x.shape[1] not in CHANNELS:
            return x.transpose(0, 3, 1, 2)
        if x.shape[1] in CHANNELS:
            return x
        raise LabError(f"{what} has shape {x.shape}; allowed channel counts: 1 or 3, in (N, H, W, C) or (N, C, H, W)")
    raise LabError(f"{what} has shape {x.shape}; allowed: (N, H, W), (N, H, W, C) or (N, C, H, W)")


def _labels(y: np.ndarray, n: int, what: str) -> np.ndarray:
    if y.dtype == bool or not np.issubdtype(y.dtype, np.integer):
        raise LabError(f"{what} has dtype {y.dtype}; allowed: integers")
    y = y.reshape(-1) if y.ndim == 2 and 1 in y.shape else y
    if y.ndim != 1:
        raise LabError(f"{what} has shape {y.shape}; allowed: ({n},)")
    if len(y) != n:
        raise LabError(f"{what} has {len(y)} labels but there are {n} images; the counts must match")
    if len(y) and int(y.min()) < 0:
        raise LabError(f"{what} has a negative label {int(y.min())}; allowed: integers >= 0")
    return y.astype(np.int64)


def _read_npz(p: Path):
    try:
        with np.load(p, allow_pickle=False) as z:
            keys = list(z.files)
            if "x" not in keys:
                raise LabError(f"npz {str(p)!r} has arrays {', '.join(keys) or '(none)'}; required: x (images), "
                               "optional: y (labels), class_names")
            x = z["x"]
            y = z["y"] if "y" in keys else None
            names = z["class_names"] if "class_names" in keys else None
    except LabError:
        raise
    except (zipfile.BadZipFile, zlib.error, OSError, ValueError, EOFError) as e:  # zlib: a damaged compressed member
        raise LabError(f"cannot read npz {str(p)!r} (saved with np.savez, no pickled objects): {_one_line(e)}") from None
    x01 = _to_unit(_layout(x, f"npz x in {p.name!r}"), f"npz x in {p.name!r}")
    y = None if y is None else _labels(y, x01.shape[0], f"npz y in {p.name!r}")
    if names is not None:
        if names.ndim != 1 or names.dtype.kind not in "US":
            raise LabError(f"npz class_names in {p.name!r} must be a 1D array of strings, got dtype {names.dtype} "
                           f"shape {names.shape}")
        names = [str(s) for s in names.astype(str)]
    return x01, y, names


# ----------------------------------------------------------------------------- IDX
def _read_bytes(p: Path) -> bytes:
    try:
        if p.name.lower().endswith(".gz"):
            with gzip.open(p, "rb") as f:
                return f.read()
        return p.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise LabError(f"cannot read IDX file {str(p)!r}: {_one_line(e)}") from None


def _sniff_idx(p: Path) -> bool:
    try:
        with open(p, "rb") as f:
            return f.read(4) == IDX_IMAGES_MAGIC.to_bytes(4, "big")
    except OSError:
        return False


def read_idx(p: "str | Path", magic: int) -> np.ndarray:
    """Parse an IDX file (header: big-endian int32 magic, then one big-endian int32 per dim) -> uint8 array."""
    p = Path(p)
    raw = _read_bytes(p)
    kind = {IDX_IMAGES_MAGIC: "uint8 images, 3 dims", IDX_LABELS_MAGIC: "uint8 labels, 1 dim"}[magic]
    if len(raw) < 4:
        raise LabError(f"IDX file {str(p)!r} is {len(raw)} bytes, too short for a header; expected magic "
                       f"0x{magic:08X} ({kind})")
    got = int.from_bytes(raw[:4], "big")
    if got != magic:
        raise LabError(f"IDX file {str(p)!r} has magic 0x{got:08X}; expected 0x{magic:08X} ({kind})")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise LabError(f"IDX file {str(p)!r} is {len(raw)} bytes, shorter than its {header}-byte header")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    if any(d <= 0 for d in dims):
        raise LabError(f"IDX file {str(p)!r} has dims {dims}; allowed: positive sizes")
    need = math.prod(dims)  # Python ints: a huge header cannot wrap around to a small size
    if len(raw) - header != need:
        raise LabError(f"IDX file {str(p)!r} has {len(raw) - header} data bytes but its header dims {dims} need {need}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _labels_file_for(images_file: Path) -> Path | None:
    """The labels file next to an images file: images-idx3 -> labels-idx1 (also images.idx3, gz or not)."""
    name = images_file.name
    stems = []
    for a, b in (("images-idx3", "labels-idx1"), ("images.idx3", "labels.idx1"), ("idx3", "idx1")):
        i = name.lower().find(a)
        if i >= 0:
            stems.append(name[:i] + b + name[i + len(a):])
    for s in stems:
        base = s[:-3] if s.lower().endswith(".gz") else s
        for cand in (s, base, base + ".gz"):
            if (images_file.parent / cand).is_file():
                return images_file.parent / cand
    return None


def _read_idx_pair(images_file: Path):
    x = read_idx(images_file, IDX_IMAGES_MAGIC)
    lf = _labels_file_for(images_file)
    y = None
    if lf is not None:
        y = _labels(read_idx(lf, IDX_LABELS_MAGIC), x.shape[0], f"IDX labels {lf.name!r}")
    return x[:, None].astype(np.float64) / 255.0, y


def _idx_files_in(d: Path) -> list[Path]:
    return sorted(f for f in d.iterdir() if f.is_file() and _IDX_RE.search(f.name))


def _pick_train_idx(d: Path, files: list[Path]) -> Path:
    """The train images file of a folder of IDX files (uncompressed preferred over .gz)."""
    cands = files if len(files) == 1 else [f for f in files if "train" in f.name.lower()]
    if len(cands) > 1:  # the same file twice, gz and not: take the uncompressed one
        plain = [f for f in cands if not f.name.lower().endswith(".gz")]
        stems = {f.name[:-3].lower() if f.name.lower().endswith(".gz") else f.name.lower() for f in cands}
        if len(stems) == 1 and plain:
            cands = plain
    if len(cands) != 1:
        raise LabError(f"folder {str(d)!r} holds IDX image files {', '.join(repr(f.name) for f in files)}; cannot pick one "
                       "train file: pass the path of the images file itself")
    return cands[0]
