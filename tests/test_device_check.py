"""bench/device_check.py on the CPU: the check agrees exactly with itself, and it can fail.

Both runs use tiny settings (teacher 60 steps, each of consistency / dmd / reflow 40 steps). CPU against CPU
must give every difference below 1e-6 (measured: exactly 0) and exit 0 at a tolerance of 1e-6. bf16 on the
"device" side (autocast on the CPU) against the fp32 CPU reference must show a non-zero difference; the
thresholds are derived from that run's own table: at half the largest ``|diff| / scale`` it must exit 1 (and
fail exactly the rows above it), at twice that it must exit 0. The bf16 run happens once: its table is saved with
``--json`` and re-judged with ``--judge``.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import device_check  # noqa: E402

TINY = ["--steps", "60,40", "--quiet"]


def _rows(path) -> list[dict]:
    return json.loads(Path(path).read_text())["rows"]


def test_cpu_against_cpu_is_exact_and_bf16_is_caught_below_its_difference(tmp_path, capsys):
    # CPU against CPU: the same seed gives the same numbers
    out = tmp_path / "cpu.json"
    assert device_check.main(["--device", "cpu", "--tol", "1e-6", "--json", str(out), *TINY]) == 0
    printed = capsys.readouterr().out
    rows = _rows(out)
    nets = {r["metric"].split()[0] for r in rows}
    assert nets == {"teacher", "consistency", "dmd", "reflow"}, nets
    kinds = {"loss/", "SWD to data", "samples:"}
    assert all(any(k in r["metric"] for r in rows if r["metric"].startswith(n)) for n in nets for k in kinds)
    diffs = [r["diff"] for r in rows]
    with capsys.disabled():
        print("\ncpu vs cpu: largest |diff|", max(diffs), "over", len(rows), "rows")
    assert max(diffs) < 1e-6 and all(r["ok"] for r in rows)
    assert "metric" in printed and "tolerance" in printed and printed.strip().splitlines()[-1].startswith("OK")

    # bf16 on the device side: a real, non-zero difference
    bf = tmp_path / "bf16.json"
    code = device_check.main(["--device", "cpu", "--precision", "bf16", "--json", str(bf), *TINY])
    capsys.readouterr()
    saved = json.loads(bf.read_text())
    assert saved["precision"] == "bf16" and saved["ok"] == (code == 0)
    rel = {r["metric"]: r["diff"] / r["scale"] for r in saved["rows"]}
    worst = max(rel.values())
    with capsys.disabled():
        print("bf16 vs fp32: exit", code, "largest |diff|/scale", worst, max(rel, key=rel.get),
              "rows above worst/2:", sum(v > worst / 2 for v in rel.values()))
    assert worst > 1e-4, rel  # autocast really ran (the CPU-vs-CPU run above is exact)

    # judged below the measured difference: exit 1, exactly the rows above the tolerance fail
    low = worst / 2
    assert device_check.main(["--judge", str(bf), "--tol", repr(low)]) == 1
    text = capsys.readouterr().out
    failing = {m for m, v in rel.items() if v > low}
    assert failing and text.strip().splitlines()[-1].startswith("FAIL")
    assert {ln.split("  ")[0].strip() for ln in text.splitlines() if ln.rstrip().endswith(" NO")} == failing
    # and above it: exit 0
    assert device_check.main(["--judge", str(bf), "--tol", repr(worst * 2)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("OK")


@pytest.mark.parametrize("args, allowed", [
    (["--precision", "fp8"], "fp32"),
    (["--steps", "0"], "N or T,D"),
    (["--steps", "10,x"], "N or T,D"),
    (["--tol", "-1"], "a number >= 0"),
])
def test_bad_options_are_argparse_errors_naming_allowed_values(args, allowed, capsys):
    with pytest.raises(SystemExit) as e:
        device_check.main(args)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert allowed in err, err


@pytest.mark.parametrize("args, allowed", [
    (["--device", "tpu"], "auto, cpu, cuda, cuda:N, mps"),
    (["--methods", "consistency,nope"], "consistency"),
])
def test_bad_device_or_method_is_a_one_line_error_before_anything_runs(args, allowed, capsys, tmp_path):
    assert device_check.main([*args, "--json", str(tmp_path / "x.json"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and allowed in err and "\n" not in err
    assert not (tmp_path / "x.json").exists()


def test_judge_refuses_a_file_that_is_not_a_saved_table(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"rows": [{"metric": "x"}]}')
    assert device_check.main(["--judge", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "--judge" in err and "\n" not in err
