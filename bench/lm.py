"""Language-model family: on-policy distillation (gkd), teacher hacking, online speculative decoding (osd).

- gkd: KL(true language || student) per token at the end of training for λ ∈ {0, 0.5, 1}, on true-language test
  sequences and on the student's own samples, in three settings: 16 training sequences as the prompt set with batch
  16 (the claim setting), 32 with batch 32, and all 16,384 training sequences; mean ± std over seeds.
- teacher hacking: offline / online_teacher / online_student regimes (lab.kd.hacking defaults), golden distance at
  its minimum and at the end, the rise, proxy at the end, and the early power-law exponent of the proxy.
- osd: a 512-request stream shifting from language A to B; α = Σ min(p, q) in the first quarter (before the
  shift) and the last quarter (after), frozen draft against online distillation with each divergence, tokens per
  target call, held-out α on B before/after.

Every run is on one thread; wall seconds per run are recorded. Results: bench/results/lm.json; the curves the app
shows first: assets/zoo/kd/lm_family/results.json; the script rewrites only its own section of bench/RESULTS.md.

    python bench/lm.py            # measure (about 5-10 minutes on one thread) and write
    python bench/lm.py --write    # only rewrite the RESULTS.md section from bench/results/lm.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("LAB_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "lm.json"
KEY = "lm"
SECTION = "## Language models: gkd, teacher hacking, osd (`python bench/lm.py`)"
GKD_SEEDS = (0, 1, 2, 3, 4)
GKD_BASE = {"steps": 200, "batch": 32, "lr": 1e-2, "divergence": "forward_kl", "prompt_len": 4, "eval_every": 20}
#: setting name -> overrides of GKD_BASE; the first is the claim setting of tests/test_claims_lm.py
GKD_SETTINGS = {"16 prompts, batch 16 (claim)": {"n_train": 16, "batch": 16},
                "32 prompts, batch 32": {"n_train": 32},
                "all 16,384 sequences, batch 32": {"n_train": 0}}
HACK_SEEDS = (0, 1, 2)
OSD_SEEDS = (0, 1, 2)
OSD_REQUESTS = 512


def _gkd() -> tuple[list, list]:
    import lab
    from lab.kd.logit.gkd import kl_on_samples

    rows, curves = [], []
    for setting, extra in GKD_SETTINGS.items():
        for lm in (0.0, 0.5, 1.0):
            for seed in GKD_SEEDS:
                cfg = {**GKD_BASE, **extra, "lmbda": lm}
                m = lab.kd.get("gkd")("kd/language/teacher", "language", cfg, seed=seed)
                t0 = time.perf_counter()
                for _ in lab.train(m):
                    pass
                wall = time.perf_counter() - t0
                own = kl_on_samples(m.student, m.task.language, n=256, prompt_len=cfg["prompt_len"], seed=1000 + seed)
                rows.append({"setting": setting, "lmbda": lm, "seed": seed, "kl_true": m.history[-1]["kl_truth"],
                             "kl_own": own, "wall_s": wall})
                curves += [{"setting": setting, "lmbda": lm, "seed": seed, "it": h["it"], "kl_truth": h["kl_truth"]}
                           for h in m.history]
                print(rows[-1], flush=True)
    return rows, curves


def _hacking() -> tuple[list, list, list]:
    from lab.kd import hacking as H

    df = H.teacher_hacking_study(seeds=HACK_SEEDS)
    summ = H.hacking_summary(df)
    fit = H.power_law_fit(df)
    walls = df.groupby(["regime", "seed"])["wall_s"].first().reset_index()
    summ = summ.merge(walls, on=["regime", "seed"])
    summ["b_early"] = summ["regime"].map(fit.groupby("regime")["b"].first())
    return df.to_dict("records"), summ.to_dict("records"), fit.to_dict("records")


def _osd() -> tuple[list, dict]:
    from lab.kd import speculative as S

    models = S.osd_models()
    rows, app = [], {}
    for seed in OSD_SEEDS:
        for label, cfg in [("frozen", {"online": False})] + [(d, {"divergence": d}) for d in S.OSD_DIVERGENCES]:
            r = S.osd_stream({"requests": OSD_REQUESTS, **cfg}, seed=seed, models=models)
            g, e = r["groups"], r["evals"]
            q = len(g) // 4
            eb = e[e["source"] == "B"]["alpha"].to_numpy()
            ea = e[e["source"] == "A"]["alpha"].to_numpy()
            rows.append({"run": label, "seed": seed, "alpha_before": float(g["alpha"].iloc[:q].mean()),
                         "alpha_after": float(g["alpha"].iloc[-q:].mean()),
                         "tpc_before": float(g["tokens_per_call"].iloc[:q].mean()),
                         "tpc_after": float(g["tokens_per_call"].iloc[-q:].mean()),
                         "acc_len_after": float(g["accepted_len"].iloc[-q:].mean()),
                         "heldout_b_start": float(eb[0]), "heldout_b_end": float(eb[-1]),
                         "heldout_a_start": float(ea[0]), "heldout_a_end": float(ea[-1]), "wall_s": r["wall_s"]})
            print(rows[-1], flush=True)
            if seed == OSD_SEEDS[0]:
                app[label] = {"groups": g.to_dict("records"), "evals": e.to_dict("records"),
                              "dist": r["dist"].to_dict("records")}
    return rows, app


def _agg(rows, by, cols):
    import pandas as pd

    df = pd.DataFrame(rows)
    out = df.groupby(by, sort=False)[cols].agg(["mean", "std"])
    out.columns = [f"{a}_{b}" for a, b in out.columns]
    return out.reset_index().to_dict("records")


def measure() -> dict:
    import torch

    torch.set_num_threads(1)
    from results_md import cpu_name  # bench/ is on the path when run as a script

    t_all = time.time()
    t = time.time()
    gkd_rows, gkd_curves = _gkd()
    t_gkd = time.time() - t
    t = time.time()
    hack_rows, hack_summary, hack_fit = _hacking()
    t_hack = time.time() - t
    t = time.time()
    osd_rows, osd_app = _osd()
    t_osd = time.time() - t
    res = {"gkd": {"config": GKD_BASE, "settings": GKD_SETTINGS, "seeds": list(GKD_SEEDS), "rows": gkd_rows,
                   "summary": _agg(gkd_rows, ["setting", "lmbda"], ["kl_true", "kl_own", "wall_s"]),
                   "seconds": t_gkd},
           "hacking": {"seeds": list(HACK_SEEDS), "summary_rows": hack_summary,
                       "summary": _agg(hack_summary, ["regime"], ["golden_min", "golden_end", "golden_rise",
                                                                  "proxy_end", "wall_s"]),
                       "b_early": {r["regime"]: r["b"] for r in hack_fit}, "seconds": t_hack},
           "osd": {"seeds": list(OSD_SEEDS), "requests": OSD_REQUESTS, "rows": osd_rows,
                   "summary": _agg(osd_rows, ["run"], ["alpha_before", "alpha_after", "tpc_before", "tpc_after",
                                                       "heldout_b_start", "heldout_b_end", "wall_s"]),
                   "seconds": t_osd},
           "seconds": time.time() - t_all, "cpu": cpu_name(), "platform": platform.platform(), "threads": 1,
           "date": time.strftime("%Y-%m-%d")}
    app = {"gkd_curves": gkd_curves, "gkd_rows": gkd_rows, "hacking": hack_rows, "osd": osd_app,
           "date": res["date"]}
    return res, app


def section(res: dict) -> str:
    pm = lambda r, c, f=".4f": f"{r[c + '_mean']:{f}} ± {r[c + '_std']:{f}}"  # noqa: E731
    g, h, o = res["gkd"], res["hacking"], res["osd"]
    lines = [SECTION, "",
             f"Measured {res['date']}, {res['seconds']:.0f} s in all on one thread ({res['cpu']}); mean ± std over "
             f"seeds. Claim tests: tests/test_claims_lm.py (other seeds).", "",
             f"**gkd** (language task, TinyLM dim 64 teacher → dim 8 student, forward KL over the continuation, "
             f"prompt 4 ids, {g['config']['steps']} steps, lr {g['config']['lr']}, "
             f"seeds {g['seeds']}): KL(true || student) per token on 256 true test sequences and on 256 of the "
             f"student's own samples (lower is better).", "",
             "| setting | λ | KL on true sequences | KL on own samples | wall s |", "|---|---|---|---|---|"]
    for r in g["summary"]:
        lines.append(f"| {r['setting']} | {r['lmbda']:g} | {pm(r, 'kl_true')} | {pm(r, 'kl_own')} | "
                     f"{pm(r, 'wall_s', '.1f')} |")
    lines += ["", f"**Teacher hacking** (oracle: 16-token HMM; teacher TinyLM dim 32 trained on 512 oracle sequences; "
              f"student dim 16; forward KL, 500 steps of batch 16, offline = 64 teacher samples reused for 125 epochs; "
              f"seeds {h['seeds']}): golden = KL(oracle || student), proxy = KL(teacher || student) on 256 held-out "
              f"oracle sequences; b = early power-law exponent of the proxy (log-log fit on the first 30 % of steps).",
              "", "| regime | golden min | golden end | golden rise | proxy end | b | wall s |",
              "|---|---|---|---|---|---|---|"]
    for r in h["summary"]:
        lines.append(f"| {r['regime']} | {pm(r, 'golden_min')} | {pm(r, 'golden_end')} | {pm(r, 'golden_rise')} | "
                     f"{pm(r, 'proxy_end')} | {h['b_early'][r['regime']]:.2f} | {pm(r, 'wall_s', '.1f')} |")
    lines += ["", f"**osd** ({o['requests']} requests shifting from language A to B: B's share 0 for the first "
              f"quarter, rising linearly over the middle half, 1 for the last quarter; target TinyLM dim 32 trained "
              f"on A and B, draft dim 8 distilled on A; k = 4 drafts, 16 new tokens, update every 8 requests; seeds "
              f"{o['seeds']}): α = Σ min(p, q) per examined position in the first / last quarter, tokens per target "
              f"call, and α on 128 held-out B sequences at the start / end.", "",
              "| draft | α before shift | α after shift | tokens/call before | tokens/call after | held-out α on B "
              "start → end | wall s |", "|---|---|---|---|---|---|---|"]
    for r in o["summary"]:
        lines.append(f"| {r['run']} | {pm(r, 'alpha_before', '.3f')} | {pm(r, 'alpha_after', '.3f')} | "
                     f"{pm(r, 'tpc_before', '.2f')} | {pm(r, 'tpc_after', '.2f')} | {r['heldout_b_start_mean']:.3f} → "
                     f"{r['heldout_b_end_mean']:.3f} | {pm(r, 'wall_s', '.1f')} |")
    return "\n".join(lines) + "\n"


def readme_table() -> str:
    """README's language-model table (``bench/readme_tables.py``): each claim's baseline and method, from lm.json."""
    res = json.loads(RESULTS.read_text())
    pm = lambda r, c, f=".3f": f"{r[c + '_mean']:{f}} ± {r[c + '_std']:{f}}"  # noqa: E731
    gkd = {(r["setting"], r["lmbda"]): r for r in res["gkd"]["summary"]}
    claim = next(k for k, _ in gkd if "claim" in k)
    full = next(k for k, _ in gkd if k.startswith("all"))
    hack = {r["regime"]: r for r in res["hacking"]["summary"]}
    osd = {r["run"]: r for r in res["osd"]["summary"]}
    n = lambda part: len(res[part]["seeds"])  # noqa: E731
    return "\n".join([
        "| what | measure (lower is better unless noted) | baseline | method |", "|---|---|---|---|",
        f"| `gkd`, {claim.replace(' (claim)', '')} ({n('gkd')} seeds) | KL to the true language per token | "
        f"off-policy (λ = 0) {pm(gkd[(claim, 0.0)], 'kl_true')} | on-policy (λ = 1) {pm(gkd[(claim, 1.0)], 'kl_true')} |",
        f"| `gkd`, {full} | KL to the true language per token | λ = 0 {pm(gkd[(full, 0.0)], 'kl_true')} | "
        f"λ = 1 {pm(gkd[(full, 1.0)], 'kl_true')} |",
        f"| teacher hacking ({n('hacking')} seeds) | rise of KL(oracle ‖ student) from its minimum | online teacher "
        f"samples {pm(hack['online_teacher'], 'golden_rise', '.4f')} | offline {pm(hack['offline'], 'golden_rise', '.4f')}"
        f" (hacks) |",
        f"| teacher hacking | KL(oracle ‖ student) at the end | online teacher samples "
        f"{pm(hack['online_teacher'], 'golden_end', '.4f')} | offline {pm(hack['offline'], 'golden_end', '.4f')} |",
        f"| `osd` after the query shift ({n('osd')} seeds) | acceptance α (higher is better) | frozen draft "
        f"{pm(osd['frozen'], 'alpha_after')} | online, forward KL {pm(osd['forward_kl'], 'alpha_after')} |",
        f"| `osd` after the query shift | tokens per target call (higher is better) | frozen draft "
        f"{pm(osd['frozen'], 'tpc_after', '.2f')} | online, forward KL {pm(osd['forward_kl'], 'tpc_after', '.2f')} |",
    ])


def write(path=None) -> str:
    import results_md as rm

    return rm.write_from_json(KEY, section, RESULTS, path)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--write", action="store_true", help=f"only rewrite the RESULTS.md section from {RESULTS.name}")
    a = ap.parse_args(argv)
    if not a.write:
        res, app = measure()
        from lab.io import atomic_write_json
        from lab.kd.logit.gkd import LM_ASSETS

        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(RESULTS, res)
        atomic_write_json(LM_ASSETS / "results.json", app)
    print(write())


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
