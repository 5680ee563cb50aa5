"""Serve the explorer (``lab app``, ``make demo``): Streamlit's own command line, in a process that has already
imported what every page needs and run the default zoo teacher once.

A page's first visitor would otherwise pay for importing torch, the lab, plotly and pandas, and for torch's first
operations, inside the first script run (about 2-3 s of a cold first figure on 2 cores; bench/RESULTS.md,
Explorer speed). Here they happen before the server starts listening, so the first visitor waits only for the
page's own work. Nothing is computed for the pages: their caches fill as visitors come.

    python app/serve.py --server.port 8501 --server.address 127.0.0.1
"""
from __future__ import annotations

import importlib
import pkgutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def warm() -> float:
    """Import the pages' modules and run the default teacher once; returns the seconds it took."""
    t0 = time.perf_counter()
    sys.path.insert(0, str(HERE))
    import common  # noqa: F401  (lab, its zoo and runs)
    import pandas  # noqa: F401
    import plotly.graph_objects  # noqa: F401
    import state  # noqa: F401  (streamlit)

    import lab.probes
    import lab.runs
    import lab.viz
    from lab.diffusion.generators import make_noise

    for pkg in (lab.probes, lab.viz, lab.runs):  # every probe, figure and session module a page may import
        for mod in pkgutil.iter_modules(pkg.__path__):
            importlib.import_module(f"{pkg.__name__}.{mod.name}")
    names = common.distributions()
    if names:  # torch's first operations (kernel selection, allocator) on the first page's teacher, at its sizes
        teacher = common.load_teacher(names[0])
        for n, nfe in ((64, 4), (1000, 50)):
            teacher.sample(z=make_noise(n, teacher.shape, 0, teacher.device), nfe=nfe, seed=0)
    return time.perf_counter() - t0


def main(argv: list[str]) -> None:
    seconds = warm()
    print(f"warmed up in {seconds:.1f} s (imports, the first teacher)", flush=True)
    from streamlit.web import cli as stcli

    sys.argv = ["streamlit", "run", str(HERE / "Home.py"), "--server.headless", "true",
                "--browser.gatherUsageStats", "false", *argv]
    sys.exit(stcli.main())


if __name__ == "__main__":
    main(sys.argv[1:])
