"""DisWOT's ranking of candidate students against two cheap rankings: the producer of ``lab.kd.diswot.ranking_study``.

DisWOT (Dong et al., CVPR 2023, "DisWOT: Student Architecture Search for Distillation WithOut Training") ranks
candidate students by their similarity to a randomly initialised teacher on one minibatch. The study itself --
which candidates, how they are trained, which baselines, Kendall's tau -- is ``lab.kd.diswot.ranking_study()``,
the function the claim test ``tests/test_kd_diswot.py`` runs; this script only runs it with the test's arguments
and keeps the result:

- candidates: ``lab.kd.diswot.candidate_pool("digits")`` (16 MLP/CNN students), or ``--candidates module:name``
  (a dict name -> network spec, or a function of the task name returning one);
- truth: each candidate's test accuracy after ``kd`` for 200 steps at batch 64 (training seed 0);
- proxies: DisWOT's total score on search seeds 1, 2, 3 (one minibatch of 64 and 3 initialisations each; tau
  reported per seed and as their mean), the parameter count, and the kd loss after 10 of the same steps.

It writes the frame, the taus and p-values, the arguments and the machine/date to ``bench/results/diswot.json``,
then the ``diswot`` section of bench/RESULTS.md; ``bench/readme_tables.py`` renders the README's sentence from the
JSON (:func:`readme_sentence`).

    python bench/diswot_rank.py           # measure (about 20 s on one thread), keep the JSON, write the section
    python bench/diswot_rank.py --write   # only rewrite the RESULTS.md section from the JSON
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
#: the claim test's arguments to ``ranking_study`` (tests/test_kd_diswot.py)
STUDY = {"task": "digits", "train_steps": 200, "search_seeds": [1, 2, 3], "repeats": 3, "baseline_steps": 10}
DEFAULT_CANDIDATES = "lab.kd.diswot:candidate_pool"


def load_candidates(ref: str, task: str) -> dict:
    """The candidate set named by ``module:name`` (a dict name -> spec, or a function of the task returning one)."""
    mod, _, attr = ref.partition(":")
    if not mod or not attr:
        raise SystemExit(f"invalid --candidates {ref!r}; allowed: module:name, e.g. {DEFAULT_CANDIDATES}")
    sys.path.insert(0, str(ROOT))
    obj = getattr(importlib.import_module(mod), attr)
    cands = obj(task) if callable(obj) else obj
    if not isinstance(cands, dict) or len(cands) < 3:
        raise SystemExit(f"{ref} gave {type(cands).__name__} with {len(cands) if hasattr(cands, '__len__') else '?'} "
                         f"entries; allowed: a dict of at least 3 name -> network spec")
    return dict(cands)


def _plain(v):
    """numpy scalars (the frame's ints and floats) as Python numbers, for json."""
    return v.item() if hasattr(v, "item") else v


def measure(candidates: dict, study: dict | None = None) -> dict:
    """``ranking_study(candidates, **study)`` (default: the test's arguments) as a JSON-ready dict."""
    import torch

    from lab.kd import diswot

    torch.set_num_threads(int(os.environ.setdefault("LAB_NUM_THREADS", "1")))
    study = dict(STUDY if study is None else study)
    t0 = time.perf_counter()
    df = diswot.ranking_study(candidates, study["task"], train_steps=study["train_steps"],
                              search_seeds=tuple(study["search_seeds"]), repeats=study["repeats"],
                              baseline_steps=study["baseline_steps"])
    seconds = time.perf_counter() - t0
    rows = [{k: _plain(v) for k, v in r.items()} for r in df.to_dict("records")]
    return {**study, "n_candidates": len(rows), "rows": rows, "tau": df.attrs["tau"], "p": df.attrs["p"],
            "seconds": seconds}


def _p(p: float) -> str:
    """A p-value in a table cell: three decimals, or two significant digits below 0.001."""
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def _seeds(r: dict) -> str:
    return ", ".join(map(str, r["search_seeds"]))


def section(res: dict) -> str:
    tau, p, seeds = res["tau"], res["p"], res["search_seeds"]
    lines = [SECTION, "",
             f"`lab.kd.diswot.ranking_study()` with the claim test's arguments (`tests/test_kd_diswot.py`): "
             f"{res['n_candidates']} candidate students on `{res['task']}` (`{res['candidates']}`), each distilled "
             f"with `kd` for {res['train_steps']} steps at batch 64 (training seed 0); its test accuracy is the truth. "
             f"Proxies, all computed before that training: DisWOT's total score on search seeds {_seeds(res)} (one "
             f"minibatch of 64 and {res['repeats']} initialisations each), the parameter count, and the kd loss after "
             f"{res['baseline_steps']} of the same steps (lower ranks higher). Kendall's tau of each proxy against the "
             f"accuracy (p: scipy's two-sided p-value); a ranking is only worth its cost if it beats the cheap ones. "
             f"Measured {res['date']}, {res['seconds']:.0f} s on one thread ({res['platform']}).", "",
             "| ranking | Kendall tau | p |", "|---|---|---|"]
    for s, t, pv in zip(seeds, tau["diswot_per_seed"], p["diswot_per_seed"]):
        lines.append(f"| DisWOT total, search seed {s} | {t:.3f} | {_p(pv)} |")
    lines += [f"| DisWOT, mean over search seeds | {tau['diswot']:.3f} | – |",
              f"| parameter count | {tau['params']:.3f} | {_p(p['params'])} |",
              f"| kd loss after {res['baseline_steps']} steps | {tau['early_loss']:.3f} | {_p(p['early_loss'])} |",
              "", "Candidates, best accuracy first (DisWOT totals: higher = predicted better):", "",
              "| candidate | parameters | " + " | ".join(f"DisWOT total s{s}" for s in seeds)
              + f" | kd loss after {res['baseline_steps']} steps | accuracy after {res['train_steps']} steps |",
              "|---|---|" + "---|" * len(seeds) + "---|---|"]
    for r in sorted(res["rows"], key=lambda r: -r["acc"]):
        lines.append(f"| `{r['name']}` | {r['params']:,} | " + " | ".join(f"{r[f'total_s{s}']:.4f}" for s in seeds)
                     + f" | {r['early_loss']:.3f} | {r['acc']:.3f} |")
    return "\n".join(lines) + "\n"


def readme_sentence(results: Path | None = None) -> str:
    """The README's sentence: DisWOT's Kendall tau on the candidates, and the baseline rankings' on the same ones."""
    results = RESULTS if results is None else results
    if not Path(results).exists():
        raise LookupError(f"no {results}; run: python bench/diswot_rank.py")
    r = json.loads(Path(results).read_text())
    tau, ps = r["tau"], r["p"]["diswot_per_seed"]
    return (f"On {r['n_candidates']} candidates its ranking agrees with their accuracy after {r['train_steps']} KD steps "
            f"at Kendall τ {tau['diswot']:.2f} (mean over {len(ps)} search seeds, p = {min(ps):.2f}–{max(ps):.2f}); "
            f"ranking them by parameter count gives τ {tau['params']:.2f}, and by their loss after "
            f"{r['baseline_steps']} KD steps τ {tau['early_loss']:.2f}.")


def write(path=None) -> str:
    """Rewrite the DisWOT section of RESULTS.md (``path``, default bench/RESULTS.md) from ``RESULTS``."""
    from results_md import RESULTS_MD, replace_section  # bench/ is on the path when run as a script

    text = section(json.loads(RESULTS.read_text()))
    replace_section("diswot", text, RESULTS_MD if path is None else path)
    return text


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--candidates", default=DEFAULT_CANDIDATES,
                    help="module:name of the candidate set (a dict, or a function of the task returning one)")
    ap.add_argument("--write", action="store_true", help=f"only rewrite the RESULTS.md section from {RESULTS.name}")
    a = ap.parse_args(argv)
    if not a.write:
        res = measure(load_candidates(a.candidates, STUDY["task"]))
        res.update({"candidates": a.candidates, "date": time.strftime("%Y-%m-%d"), "platform": platform.platform(),
                    "cpus": os.cpu_count(), "threads": os.environ.get("LAB_NUM_THREADS")})
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(res, indent=1))
    print(write())


if __name__ == "__main__":
    main()
