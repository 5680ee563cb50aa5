"""`lab app` (what `make demo` runs) serves the explorer after its warm-up, on the address it is given."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from conftest import ROOT

LAB = str(Path(sys.executable).with_name("lab"))


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_lab_app_warms_up_then_serves_the_explorer(tmp_path):
    port = _port()
    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([LAB, "app", "--port", str(port), "--host", "127.0.0.1"], cwd=ROOT, stdout=out,
                                stderr=subprocess.STDOUT, env=dict(os.environ), start_new_session=True)
    try:
        deadline, body = time.monotonic() + 90, ""
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as page:
                            body = page.read().decode(errors="replace")
                        break
            except OSError:
                time.sleep(0.3)
        text = log.read_text()
        assert proc.poll() is None, f"lab app exited with {proc.returncode}:\n{text[-2000:]}"
        assert "<title>Streamlit</title>" in body or "streamlit" in body.lower(), body[:300]
        lines = text.splitlines()
        warm = [i for i, ln in enumerate(lines) if ln.startswith("warmed up in ")]
        serving = [i for i, ln in enumerate(lines) if f"127.0.0.1:{port}" in ln]
        assert warm and serving and warm[0] < serving[-1], text  # the warm-up happens before the server listens
    finally:  # `lab app` runs the server as its child: end the whole process group, leave nothing behind
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def test_lab_app_refuses_a_bad_port_in_one_line():
    r = subprocess.run([LAB, "app", "--port", "70000"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "70000" in r.stderr and "65535" in r.stderr, r.stderr
