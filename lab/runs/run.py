"""A run is a folder.

    run/
      config.json            what was run: method, its config, teacher, data, seed, device
      metrics.csv            one tidy row per logged step (read back with Run.metrics())
      snapshots/step_*.npz   internals captured during training
      checkpoint.safetensors + checkpoint.json   everything needed to resume
      model.json + weights.safetensors           the student, loadable with lab.load()

Every file is written atomically (temp file + rename), so a killed run never leaves a
half-written record.
"""
from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

from lab.errors import LabError
from lab.io import atomic_write_json, atomic_write_text, load_state, read_json, save_npz, save_state


class Run:
    def __init__(self, folder):
        self.folder = Path(folder)

    # ---- creation
    @classmethod
    def create(cls, folder, config: dict, overwrite: bool = False) -> "Run":
        folder = Path(folder)
        if folder.exists() and not folder.is_dir():
            raise LabError(f"{folder} is a file; --out must be a folder (new or empty)")
        if folder.exists() and any(folder.iterdir()) and not overwrite:
            raise LabError(f"{folder} already exists and is not empty; choose another --out or resume it with --resume {folder}")
        folder.mkdir(parents=True, exist_ok=True)
        run = cls(folder)
        atomic_write_json(folder / "config.json", config)
        return run

    @classmethod
    def open(cls, folder) -> "Run":
        folder = Path(folder)
        if not (folder / "config.json").exists():
            raise LabError(f"{folder} is not a run folder (no config.json)")
        return cls(folder)

    # ---- records
    @property
    def config(self) -> dict:
        return read_json(self.folder / "config.json")

    def write_metrics(self, rows: list[dict]) -> None:
        buf = io.StringIO()
        pd.DataFrame(rows).to_csv(buf, index=False)
        atomic_write_text(self.folder / "metrics.csv", buf.getvalue())

    def metrics(self) -> pd.DataFrame:
        p = self.folder / "metrics.csv"
        return pd.read_csv(p) if p.exists() else pd.DataFrame()

    def write_snapshot(self, step: int, arrays: dict) -> None:
        save_npz(self.folder / "snapshots" / f"step_{step:07d}.npz", **arrays)

    def snapshots(self) -> list[Path]:
        return sorted((self.folder / "snapshots").glob("step_*.npz"))

    # ---- checkpoints
    def save_checkpoint(self, state: dict) -> None:
        save_state(self.folder / "checkpoint", state)

    def has_checkpoint(self) -> bool:
        return (self.folder / "checkpoint.json").exists() and (self.folder / "checkpoint.safetensors").exists()

    def load_checkpoint(self) -> dict:
        if not self.has_checkpoint():
            raise LabError(f"{self.folder} has no checkpoint to resume from")
        return load_state(self.folder / "checkpoint")

    # ---- the student
    def has_model(self) -> bool:
        return (self.folder / "model.json").exists()

    def load_model(self, device="cpu"):
        from lab.diffusion.generators import load_generator

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
