"""A run is a folder.

    run/
      config.json            what was run: method, its config, teacher, data, seed, device (and resumes)
      metrics.csv            one tidy row per logged step (read back with Run.metrics())
      snapshots/step_*.npz   internals captured during training
      checkpoint.safetensors everything needed to resume, in ONE verified file (tensors + structure + sha256)
      checkpoint.prev.safetensors   the checkpoint before it (the fallback if the newest is damaged)
      model.json + weights.safetensors           the student, loadable with lab.load()
      .lock                  held (an OS file lock) by the process that writes the folder; names its PID

Every file is written atomically (temp file + rename), so a killed run never leaves a
half-written record; a checkpoint becomes visible in one rename. Nothing is written
through a symlink: a path in a run folder that is (or passes through) a symlink is
refused.
"""
from __future__ import annotations

import io
import os
import re
from pathlib import Path

import pandas as pd

from lab.errors import LabError
from lab.io import atomic_write_json, atomic_write_text, load_state, pause_here, read_json, save_npz, save_state

CHECKPOINT = "checkpoint.safetensors"
PREVIOUS = "checkpoint.prev.safetensors"
LOCK = ".lock"


#: the names of the temp files a killed writer can leave: ours (``.NAME.XXXX.tmp``) and safetensors' (``.tmpXXXXXX``)
_TEMP_NAME = re.compile(r"^\.(.+\.tmp|tmp[A-Za-z0-9]{6})$")


def is_temp_name(name: str) -> bool:
    """Whether ``name`` is a temp file a killed writer of a run folder can leave (see :meth:`Run.clean_temp_files`)."""
    return bool(_TEMP_NAME.match(name))


class Run:
    def __init__(self, folder):
        self.folder = Path(folder)
        self._lock_fd: int | None = None

    # ---- creation
    @classmethod
    def create(cls, folder, config: dict, overwrite: bool = False) -> "Run":
        """A new run folder holding ``config.json``; the returned run holds the folder's lock (release it
        with :meth:`release`, or use the run as a context manager)."""
        folder = Path(folder)
        if folder.is_symlink():
            raise LabError(f"{folder} is a symlink; --out must be a real folder (new or empty)")
        if folder.exists() and not folder.is_dir():
            raise LabError(f"{folder} is a file; --out must be a folder (new or empty)")
        if folder.exists() and any(folder.iterdir()) and not overwrite:
            raise LabError(f"{folder} already exists and is not empty; choose another --out or resume it with --resume {folder}")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise LabError(f"cannot create the run folder {folder}: {e.strerror or e}") from None
        run = cls(folder)
        run.acquire()
        try:
            atomic_write_json(run.path("config.json"), config)
        except BaseException:
            run.release()
            raise
        return run

    @classmethod
    def open(cls, folder) -> "Run":
        folder = Path(folder)
        if not folder.is_dir() or not (folder / "config.json").is_file():
            raise LabError(f"{folder} is not a run folder (no config.json)")
        return cls(folder)

    # ---- paths: never through a symlink, never outside the folder
    def path(self, rel: str) -> Path:
        """``folder/rel``, refused if it or any folder between it and the run folder is a symlink."""
        p = self.folder / rel
        cur = self.folder
        for part in Path(rel).parts:
            if part in ("..", "/"):
                raise LabError(f"{rel!r} leaves the run folder {self.folder}")
            cur = cur / part
            if cur.is_symlink():
                raise LabError(f"{cur} is a symlink; a run folder must not point outside itself (remove the link)")
        return p

    # ---- the lock: one writer at a time
    def acquire(self) -> "Run":
        """Take the folder's lock (an OS lock on ``.lock``, released by the OS if the process dies, so a stale
        lock from a killed process is simply taken over). A second writer gets a one-line error naming the
        holder's PID. Stray temp files of killed writers are removed once the lock is held."""
        if self._lock_fd is not None:
            return self
        path = self.path(LOCK)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise LabError(f"cannot write in the run folder {self.folder}: {e.strerror or e}") from None
        if not _try_lock(fd):
            try:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            finally:
                os.close(fd)
            raise LabError(f"{self.folder} is in use by process {holder}; wait for it to finish or stop it, "
                           "then resume with --resume")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd
        self.clean_temp_files()
        return self

    def release(self) -> None:
        if self._lock_fd is None:
            return
        fd, self._lock_fd = self._lock_fd, None
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass
        _unlock(fd)
        os.close(fd)

    @property
    def locked(self) -> bool:
        return self._lock_fd is not None

    def __enter__(self) -> "Run":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def clean_temp_files(self) -> list[Path]:
        """Remove the temp files that a killed writer left; only ours, only inside: ``.NAME.XXXX.tmp``
        (:func:`lab.io.atomic_write`) and ``.tmpXXXXXX``, the file safetensors' ``save_file`` writes through before
        its own rename (a kill during that write leaves it)."""
        gone = []
        for sub in (self.folder, self.folder / "snapshots"):
            if sub.is_dir() and not sub.is_symlink():
                for p in sub.iterdir():
                    if is_temp_name(p.name) and p.is_file() and not p.is_symlink():
                        p.unlink()
                        gone.append(p)
        return gone

    # ---- records
    @property
    def config(self) -> dict:
        cfg = read_json(self.path("config.json"))  # a damaged file is a one-line LabError naming it
        if not isinstance(cfg, dict):
            raise LabError(f"{self.folder}/config.json is not a JSON object; it is not a usable run folder")
        return cfg

    def write_config(self, config: dict) -> None:
        atomic_write_json(self.path("config.json"), config)

    def write_metrics(self, rows: list[dict]) -> None:
        buf = io.StringIO()
        pd.DataFrame(rows).to_csv(buf, index=False)
        atomic_write_text(self.path("metrics.csv"), buf.getvalue())

    def metrics(self) -> pd.DataFrame:
        p = self.folder / "metrics.csv"
        if not p.exists():
            return pd.DataFrame()
        try:
            return pd.read_csv(p)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
            raise LabError(f"{p} is not a readable metrics table ({type(e).__name__})") from None

    def write_snapshot(self, step: int, arrays: dict) -> None:
        save_npz(self.path(f"snapshots/step_{step:07d}.npz"), **arrays)

    def snapshots(self) -> list[Path]:
        return sorted((self.folder / "snapshots").glob("step_*.npz"))

    # ---- checkpoints: one file each, the newest and the one before
    def save_checkpoint(self, state: dict) -> None:
        """Commit ``state`` as the newest checkpoint in one rename; the previous one is kept as the fallback."""
        new, prev = self.path(CHECKPOINT), self.path(PREVIOUS)
        tmp = save_state(self.path(".checkpoint.new"), state, pause_point="checkpoint")
        if new.exists():
            os.replace(new, prev)
            pause_here("checkpoint-between")
        os.replace(tmp, new)

    def has_checkpoint(self) -> bool:
        return (self.folder / CHECKPOINT).is_file() or (self.folder / PREVIOUS).is_file()

    def load_checkpoint(self) -> dict:
        """The newest checkpoint that verifies (its sha256 and structure); falls back to the previous one.
        No checkpoint at all is a LabError naming the folder; so is a folder whose checkpoints are all damaged."""
        found = [p for p in (CHECKPOINT, PREVIOUS, ".checkpoint.new.safetensors") if (self.folder / p).is_file()]
        if not found:
            raise LabError(f"{self.folder} has no checkpoint to resume from")
        errors = []
        for name in found:
            try:
                state = load_state(self.path(name))
            except LabError as e:
                errors.append(str(e))
                continue
            if not isinstance(state, dict) or "trainable" not in state:
                errors.append(f"{name} holds no trainable state")
                continue
            return state
        raise LabError(f"{self.folder}: no checkpoint verifies ({'; '.join(errors)})")

    # ---- the student
    def has_model(self) -> bool:
        return (self.folder / "model.json").exists()

    def load_model(self, device="cpu"):
        from lab.diffusion.generators import load_generator  # lazy: generators only when loading the model

        return load_generator(self.folder, device)

    def summary(self) -> dict:
        cfg = self.config
        m = self.metrics()
        last = m.iloc[-1].to_dict() if len(m) else {}
        return {"run": str(self.folder), "kind": cfg.get("kind", "distill"), "method": cfg.get("method", ""),
                "teacher": cfg.get("teacher", ""), "data": cfg.get("data", ""), "steps_done": int(last.get("step", 0)),
                "steps": cfg.get("steps", ""), "has_model": self.has_model()}


def list_runs(root="runs") -> pd.DataFrame:
    root = Path(root)
    rows = []
    if root.exists():
        for cfg in sorted(root.rglob("config.json")):
            try:
                rows.append(Run(cfg.parent).summary())
            except Exception as e:  # noqa: BLE001 - a broken folder is listed, not fatal
                rows.append({"run": str(cfg.parent), "kind": f"unreadable: {e}"})
    return pd.DataFrame(rows)


def find_students(data_spec: str, root="runs") -> pd.DataFrame:
    """Distillation runs under ``root`` whose data is ``data_spec`` and that saved a student model."""
    df = list_runs(root)
    if df.empty or "has_model" not in df or "data" not in df:
        return pd.DataFrame(columns=["run", "method", "teacher", "data", "steps_done", "steps", "has_model", "kind"])
    keep = (df["has_model"] == True) & (df["data"] == data_spec) & (df["kind"] == "distill")  # noqa: E712
    return df[keep].reset_index(drop=True)


# ---- OS file locks (released by the OS when the holding process dies)
try:
    import fcntl as _fcntl

    def _try_lock(fd: int) -> bool:
        try:
            _fcntl.flock(fd, _fcntl.LOCK_EX | _fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def _unlock(fd: int) -> None:
        _fcntl.flock(fd, _fcntl.LOCK_UN)
except ImportError:  # Windows
    import msvcrt as _msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            os.lseek(fd, 0, 0)
            _msvcrt.locking(fd, _msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, 0)
        _msvcrt.locking(fd, _msvcrt.LK_UNLCK, 1)
