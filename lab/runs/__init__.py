"""The loop, callbacks, and the on-disk run record."""
from lab.runs.loop import EMA, Callback, Checkpoint, LoopState, NaNGuard, ProgressBar, Recorder, StepOutput, distill, run_to_end, train
from lab.runs.run import Run, list_runs

__all__ = ["EMA", "Callback", "Checkpoint", "LoopState", "NaNGuard", "ProgressBar", "Recorder", "StepOutput", "distill",
           "run_to_end", "train", "Run", "list_runs"]
