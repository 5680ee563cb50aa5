"""The loop, callbacks, the on-disk run record and the index of run folders."""
from lab.runs.index import confine, filter_runs, measure, pareto, quality_points, runs_root, runs_table
from lab.runs.loop import EMA, Callback, Checkpoint, Guard, LoopState, NaNGuard, ProgressBar, Recorder, StepOutput, distill, run_to_end, train
from lab.runs.run import Run, find_students, list_runs

__all__ = ["EMA", "Callback", "Checkpoint", "Guard", "LoopState", "NaNGuard", "ProgressBar", "Recorder", "StepOutput", "distill",
           "run_to_end", "train", "Run", "find_students", "list_runs", "confine", "filter_runs", "measure", "pareto",
           "quality_points", "runs_root", "runs_table"]
