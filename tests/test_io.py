"""Atomic files and pickle-free nested state (optimizer + RNG states) on safetensors + JSON."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from lab.io import (
    atomic_write, atomic_write_json, atomic_write_text, load_state, load_tensors, read_json, save_npz, save_state,
    save_tensors,
)


LAB = Path(__file__).resolve().parents[1] / "lab"


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ---------------------------------------------------------------- atomic writes
def test_atomic_writes_leave_no_temp_files(tmp_path):
    atomic_write_text(tmp_path / "a.txt", "hello\n")
    atomic_write_json(tmp_path / "b.json", {"x": np.float32(1.5), "y": (1, 2), "t": torch.tensor([1.0, 2.0]),
                                            "p": Path("/q"), "n": np.arange(3)})
    save_tensors(tmp_path / "c.safetensors", {"w": torch.randn(3, 2)}, metadata={"k": "v"})
    save_npz(tmp_path / "d.npz", a=np.zeros(3), b=torch.ones(2).numpy())
    save_state(tmp_path / "e", {"w": torch.ones(2), "n": 3})
    atomic_write_text(tmp_path / "sub" / "deeper" / "f.txt", "made parents")  # parents are created
    assert _listing(tmp_path) == ["a.txt", "b.json", "c.safetensors", "d.npz", "e.safetensors", "sub"]
    assert _listing(tmp_path / "sub" / "deeper") == ["f.txt"]
    assert (tmp_path / "a.txt").read_text() == "hello\n"
    assert read_json(tmp_path / "b.json") == {"x": 1.5, "y": [1, 2], "t": [1.0, 2.0], "p": "/q", "n": [0, 1, 2]}
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644
    with np.load(tmp_path / "d.npz") as z:
        assert set(z.files) == {"a", "b"}


def test_overwrite_is_atomic_and_failed_writes_leave_the_old_file(tmp_path):
    p = tmp_path / "x.json"
    atomic_write_json(p, {"v": 1})
    atomic_write_json(p, {"v": 2})
    assert read_json(p) == {"v": 2}

    def boom(tmp):
        Path(tmp).write_text("half writ")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(p, boom)
    assert read_json(p) == {"v": 2}
    assert _listing(tmp_path) == ["x.json"]
    with pytest.raises(KeyboardInterrupt):  # also on an interrupt (BaseException)
        atomic_write(p, lambda tmp: (_ for _ in ()).throw(KeyboardInterrupt()))
    assert _listing(tmp_path) == ["x.json"]
    with pytest.raises(TypeError):
        atomic_write_json(p, {"bad": object()})
    assert read_json(p) == {"v": 2} and _listing(tmp_path) == ["x.json"]


# ---------------------------------------------------------------- nested state
def _assert_same(a, b, path="state"):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor), path
        assert a.dtype == b.dtype and a.shape == b.shape, (path, a.dtype, b.dtype, a.shape, b.shape)
        assert torch.equal(a, b), path
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a.keys()) == list(b.keys()), (path, list(a), list(b))
        for k in a:
            _assert_same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), (path, type(a), type(b))
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{path}[{i}]")
    else:
        assert type(a) is type(b) and a == b, (path, a, b)


def _trained_adam(seed=0, steps=3):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.SiLU(), torch.nn.Linear(8, 2))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2, betas=(0.8, 0.95))
    for _ in range(steps):
        loss = net(torch.randn(16, 2)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net, opt


def test_save_load_state_round_trip(tmp_path):
    net, opt = _trained_adam()
    gen = torch.Generator().manual_seed(5)
    gen.manual_seed(5)
    torch.randn(3, generator=gen)
    state = {
        "it": 17,
        "rng": gen.get_state(),
        "torch_rng": torch.get_rng_state(),
        "nets": {"student": net.state_dict()},
        "opts": {"student": opt.state_dict()},
        "extra": {"stage": 2, "name": "halving 2", "pairs": None, "flag": True, "lr": 1e-3, "ratio": 1 / 3,
                  "empty_list": [], "empty_dict": {}, "tuple": (1, "a", 2.5), "ints": {3: "three", 10: "ten"},
                  "scalar": torch.tensor(2.5), "empty": torch.zeros(0, 4), "half": torch.randn(3).half(),
                  "long": torch.arange(5), "bool": torch.tensor([True, False]), "rows": [{"step": 10, "loss": 0.5}]},
    }
    save_state(tmp_path / "ckpt", state)
    back = load_state(tmp_path / "ckpt")
    _assert_same(state, back)
    assert isinstance(back["opts"]["student"]["state"], dict) and 0 in back["opts"]["student"]["state"]
    assert back["opts"]["student"]["param_groups"][0]["betas"] == (0.8, 0.95)

    # the restored states work: the RNGs continue identically, the optimizer takes the same next step
    g2 = torch.Generator()
    g2.set_state(back["rng"])
    assert torch.equal(torch.randn(4, generator=g2), torch.randn(4, generator=gen))
    net2, opt2 = _trained_adam(seed=1, steps=1)
    net2.load_state_dict(back["nets"]["student"])
    opt2.load_state_dict(back["opts"]["student"])
    batch = torch.randn(16, 2, generator=torch.Generator().manual_seed(0))
    for n, o in ((net, opt), (net2, opt2)):
        loss = n(batch).pow(2).mean()
        o.zero_grad()
        loss.backward()
        o.step()
    for a, b in zip(net.parameters(), net2.parameters()):
        assert torch.equal(a, b)
    saved_rng = back["torch_rng"]
    torch.set_rng_state(saved_rng)
    a = torch.rand(3)
    torch.set_rng_state(saved_rng)
    assert torch.equal(a, torch.rand(3))


def test_state_keys_containing_dots_do_not_collide(tmp_path):
    """Tensor references are built as '<prefix>.<key>' paths, so {'a.b': t1, 'a': {'b': t2}} must still keep
    two different tensors (net names and state-dict keys contain dots)."""
    state = {"nets": {"a.b": torch.ones(2), "a": {"b": torch.zeros(2)}}}
    save_state(tmp_path / "s", state)
    _assert_same(state, load_state(tmp_path / "s"))


def test_state_is_one_safetensors_file_with_a_json_skeleton(tmp_path):
    """One file: the tensors are its tensors, the structure is strict JSON in its metadata (no pickle), and a
    sha256 of the tensors is recorded beside it."""
    net, opt = _trained_adam()
    save_state(tmp_path / "ckpt", {"opt": opt.state_dict(), "rng": torch.get_rng_state()})
    assert _listing(tmp_path) == ["ckpt.safetensors"]
    with safe_open(str(tmp_path / "ckpt.safetensors"), framework="pt") as f:
        keys, meta = set(f.keys()), f.metadata()
    skel = json.loads(meta["skeleton"])  # strict JSON
    assert "opt" in skel and meta["format"] == "lab-state/1" and len(meta["sha256"]) == 64
    assert keys == set(load_tensors(tmp_path / "ckpt.safetensors"))
    assert set(re.findall(r'"__tensor__": "([^"]+)"', meta["skeleton"])) == keys


def test_damaged_state_files_are_one_line_errors(tmp_path):
    """A truncated file, a file whose bytes were changed, random bytes, a file without our metadata and a
    missing file are each refused with one line; a good file still loads."""
    from safetensors.torch import save_file

    from lab.errors import LabError

    state = {"w": torch.arange(64, dtype=torch.float32), "n": 3}
    good = save_state(tmp_path / "good", state)
    blob = good.read_bytes()
    cases = {"truncated": blob[: len(blob) - 7], "random": bytes(range(256)) * 3}
    flipped = bytearray(blob)
    flipped[-1] ^= 0xFF  # the last byte of the last tensor: the header still parses, the sha256 does not match
    cases["flipped"] = bytes(flipped)
    for name, data in cases.items():
        (tmp_path / f"{name}.safetensors").write_bytes(data)
    save_file({"w": torch.ones(2)}, str(tmp_path / "foreign.safetensors"))
    for name, match in [("truncated", "readable|damaged"), ("random", "readable"), ("flipped", "sha256"),
                        ("foreign", "not a lab state"), ("missing", "missing")]:
        with pytest.raises(LabError, match=match) as e:
            load_state(tmp_path / name)
        assert "\n" not in str(e.value), name
    assert load_state(tmp_path / "good")["n"] == 3


def test_no_pickle_anywhere_in_lab():
    offenders = []
    for f in sorted(LAB.rglob("*.py")):
        for i, line in enumerate(f.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if re.search(r"\bimport\s+(c?pickle|dill|joblib|cloudpickle)\b|\bfrom\s+(c?pickle|dill|joblib)\b", code):
                offenders.append(f"{f.name}:{i}: {line.strip()}")
            if re.search(r"\bpickle\.(loads?|dumps?)\b", code):
                offenders.append(f"{f.name}:{i}: {line.strip()}")
            if "torch.load(" in code and "weights_only=True" not in code:
                offenders.append(f"{f.name}:{i}: {line.strip()}")
            if "torch.save(" in code:
                offenders.append(f"{f.name}:{i}: {line.strip()}")
            if re.search(r"\bnp\.load\(", code) and "allow_pickle=False" not in code:
                offenders.append(f"{f.name}:{i}: {line.strip()}")
            if "allow_pickle=True" in code:
                offenders.append(f"{f.name}:{i}: {line.strip()}")
    assert offenders == []
    assert sum(1 for _ in LAB.rglob("*.py")) > 20  # the scan saw the package
