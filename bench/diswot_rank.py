"""DisWOT's ranking of candidate students against baseline rankings, on the same candidates and trained accuracies.

DisWOT (Dong et al., CVPR 2023, "DisWOT: Student Architecture Search for Distillation WithOut Training") ranks
candidate students by their similarity to a randomly initialised teacher on one minibatch
(``lab.kd.diswot.search``). Whether that ranking is worth anything is measured against cheaper rankings of the
same candidates: each candidate is distilled with ``kd`` for ``--train-steps`` steps (the mean test accuracy over
``--train-seeds``), and Kendall's tau is computed between that accuracy and

- ``diswot``: DisWOT's total score (higher = predicted better);
- ``params``: the candidate's parameter count (bigger = predicted better);
- ``loss@10``: minus the candidate's cross-entropy on the training split after 10 ``kd`` steps (same teacher
  and config; the mean over the same seeds), i.e. a ranking by a very short training run that never sees the
  test split.

Defaults are the claim test's setting (``tests/test_kd_diswot.py``): digits, one batch of 64 drawn with seed 0,
3 initialisations, 200 ``kd`` steps at batch 64, training seed 0. The candidates come from
``lab.kd.diswot.default_candidates`` unless ``--candidates module:name`` names another set (a dict name -> network
spec, or a function of the task name returning one), so the bench follows the test's candidate set.

    python bench/diswot_rank.py                                   # measure, keep bench/results/diswot.json, write
    python bench/diswot_rank.py --candidates tests.test_kd_diswot:CANDIDATES --train-seeds 0 1 2
    python bench/diswot_rank.py --write                           # only rewrite the RESULTS.md section
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "diswot.json"
SECTION = "## DisWOT: ranking candidate students without training (`python bench/diswot_rank.py`)"
#: the rankings compared with the accuracy after KD: key -> (column of the frame, what it is)
RANKINGS = {
    "diswot": ("total", "DisWOT's score (semantic + relation similarity at initialisation)"),
    "params": ("params", "parameter count"),
    "loss@10": ("neg_loss10", "minus the training cross-entropy after 10 kd steps"),
}


def load_candidates(ref: str, task: str) -> dict:
    """The candidate set named by ``module:name`` (a dict name -> spec, or a function of the task returning one)."""
    mod, _, attr = ref.partition(":")
    if not mod or not attr:
        raise SystemExit(f"invalid --candidates {ref!r}; allowed: module:name, e.g. lab.kd.diswot:default_candidates")
    sys.path.insert(0, str(ROOT))
    obj = getattr(importlib.import_module(mod), attr)
    cands = obj(task) if callable(obj) else obj
    if not isinstance(cands, dict) or len(cands) < 3:
        raise SystemExit(f"{ref} gave {type(cands).__name__} with {len(cands) if hasattr(cands, '__len__') else '?'} "
                         f"entries; allowed: a dict of at least 3 name -> network spec")
    return dict(cands)


def loss_after(spec: dict, task: str, steps: int, train_config: dict, seeds) -> float:
    """Mean over ``seeds`` of the training-split cross-entropy of ``spec`` after ``steps`` kd steps from the task's
    teacher (the training split: the proxy must not see the test split its target is measured on)."""
    import numpy as np

    import lab

    out = []
    for s in seeds:
        m = lab.kd.get("kd")(lab.zoo.entry_name("kd", task), task, {**train_config, "steps": steps,
                                                                    "student": dict(spec)}, seed=s)
        for _ in lab.train(m):
            pass
        out.append(m.evaluate("train")["nll"])
    return float(np.mean(out))


def measure(candidates: dict, task: str, batch: int, seed: int, repeats: int, train_steps: int,
            train_batch: int, train_seeds: list[int]) -> dict:
    import torch

    from lab.kd import diswot

    torch.set_num_threads(int(os.environ.get("LAB_NUM_THREADS", "1")))
    cfg = {"batch": train_batch}
    t0 = time.perf_counter()
    df = diswot.search(candidates, task, batch=batch, seed=seed, repeats=repeats, train_steps=train_steps,
                       train_config=cfg, train_seeds=tuple(train_seeds))
    df["neg_loss10"] = [-loss_after(spec, task, 10, cfg, train_seeds) for spec in df["spec"]]
    taus = {}
    for key, (col, what) in RANKINGS.items():
        tau, p = diswot.kendall_tau(df[col], df["acc"])
        taus[key] = {"tau": tau, "p": p, "what": what}
    rows = [{"name": r["name"], "rank": int(r["rank"]), "params": int(r["params"]), "semantic": r["semantic"],
             "relation": r["relation"], "total": r["total"], "loss10": -r["neg_loss10"], "acc": r["acc"],
             "spec": r["spec"]} for r in df.to_dict("records")]
    return {"task": task, "n_candidates": len(rows), "batch": batch, "seed": seed, "repeats": repeats,
            "train_steps": train_steps, "train_batch": train_batch, "train_seeds": list(train_seeds),
            "rows": rows, "kendall": taus, "seconds": time.perf_counter() - t0}


def section(res: dict) -> str:
    k = res["kendall"]
    lines = [SECTION, "",
             f"{res['n_candidates']} candidate students on `{res['task']}` (`{res['candidates']}`), scored by "
             f"`lab.kd.diswot.search` on one batch of {res['batch']} (seed {res['seed']}, {res['repeats']} "
             f"initialisations), then each distilled with `kd` for {res['train_steps']} steps at batch "
             f"{res['train_batch']} (test accuracy; "
             + (f"mean over training seeds {', '.join(map(str, res['train_seeds']))}" if len(res["train_seeds"]) > 1
                else f"training seed {res['train_seeds'][0]}") + f"). Kendall's tau of each ranking against that accuracy "
             f"(p: scipy's two-sided p-value); a ranking is only worth its cost if it beats the cheap ones. "
             f"Measured {res['date']}, {res['seconds']:.0f} s on one thread.", "",
             "| ranking | Kendall tau | p |", "|---|---|---|"]
    for key, v in k.items():
        lines.append(f"| {key}: {v['what']} | {v['tau']:.2f} | {v['p']:.3f} |")
    lines += ["", "| candidate | DisWOT rank | parameters | semantic | relation | total | train CE after 10 steps | "
                  "accuracy after KD |", "|---|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        lines.append(f"| `{r['name']}` | {r['rank']} | {r['params']:,} | {r['semantic']:.4f} | {r['relation']:.6f} | "
                     f"{r['total']:.4f} | {r['loss10']:.3f} | {r['acc']:.3f} |")
    return "\n".join(lines) + "\n"


def readme_sentence(results: Path | None = None) -> str:
    """The README's sentence: DisWOT's Kendall tau on the candidates, and the baseline rankings' on the same ones."""
    results = RESULTS if results is None else results
    if not Path(results).exists():
        raise LookupError(f"no {results}; run: python bench/diswot_rank.py")
    r = json.loads(Path(results).read_text())
    k = r["kendall"]
    return (f"On {r['n_candidates']} candidates its ranking matches their accuracy after KD with Kendall τ "
            f"{k['diswot']['tau']:.2f} (p = {k['diswot']['p']:.2f}); ranking them by parameter count gives τ "
            f"{k['params']['tau']:.2f}, and by their loss after 10 KD steps τ {k['loss@10']['tau']:.2f}.")


def write(path=None) -> str:
    """Rewrite the DisWOT section of RESULTS.md (``path``, default bench/RESULTS.md) from ``RESULTS``."""
    from results_md import RESULTS_MD, replace_section  # bench/ is on the path when run as a script

    text = section(json.loads(RESULTS.read_text()))
    replace_section("diswot", text, RESULTS_MD if path is None else path)
    return text


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--candidates", default="lab.kd.diswot:default_candidates",
                    help="module:name of the candidate set (a dict, or a function of the task returning one)")
    ap.add_argument("--task", default="digits")
    ap.add_argument("--batch", type=int, default=64, help="the scoring minibatch")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3, help="initialisations the score is averaged over")
    ap.add_argument("--train-steps", type=int, default=200)
    ap.add_argument("--train-batch", type=int, default=64)
    ap.add_argument("--train-seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--write", action="store_true", help=f"only rewrite the RESULTS.md section from {RESULTS.name}")
    a = ap.parse_args(argv)
    if not a.write:
        res = measure(load_candidates(a.candidates, a.task), a.task, a.batch, a.seed, a.repeats, a.train_steps,
                      a.train_batch, a.train_seeds)
        res.update({"candidates": a.candidates, "date": time.strftime("%Y-%m-%d"), "platform": platform.platform(),
                    "threads": os.environ.get("LAB_NUM_THREADS")})
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(res, indent=1))
    print(write())


if __name__ == "__main__":
    main()
