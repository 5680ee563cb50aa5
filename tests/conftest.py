"""Shared fixtures: one torch thread for the whole session; students for the app tests."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
APP_DATA = "8gaussians"


def _hypothesis_profiles() -> None:
    """Hypothesis (tests/test_fuzz.py): the "ci" profile is the default everywhere, so every run is reproducible
    (derandomized: the same cases in the same order) and keeps no example database. ``HYPOTHESIS_PROFILE=explore``
    draws fresh random cases, many more of them (with ``LAB_FUZZ_SCALE=10`` for test_fuzz.py's own counts)."""
    try:
        from hypothesis import HealthCheck, settings
        from hypothesis.configuration import set_hypothesis_home_dir
    except ImportError:  # an environment from before hypothesis joined the dev extra: only test_fuzz.py needs it
        return

    # hypothesis also caches things on disk (e.g. the constants of the code under test): in the ignored tests/_out,
    # never in a .hypothesis/ folder at the root of the working tree
    set_hypothesis_home_dir(str(ROOT / "tests" / "_out" / "hypothesis"))
    common = dict(deadline=None, database=None, print_blob=True,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                         HealthCheck.data_too_large, HealthCheck.filter_too_much])
    settings.register_profile("ci", derandomize=True, max_examples=40, **common)
    settings.register_profile("explore", derandomize=False, max_examples=400, **common)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


_hypothesis_profiles()


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """Toy tensors: one intra-op thread is as fast, and far faster on busy cores (no OpenMP spin-waits).
    Subprocesses (CLI, streamlit, notebook kernels) get the same through LAB_NUM_THREADS."""
    import torch

    n = torch.get_num_threads()
    old = os.environ.get("LAB_NUM_THREADS")
    torch.set_num_threads(1)
    os.environ["LAB_NUM_THREADS"] = "1"
    yield
    torch.set_num_threads(n)
    if old is None:
        os.environ.pop("LAB_NUM_THREADS", None)
    else:
        os.environ["LAB_NUM_THREADS"] = old  # the distribution the app tests look at (its teacher is shipped)


#: the one run folder the app tests' runs root holds (see app_students)
APP_RUN = "tiny-consistency"


@pytest.fixture(scope="session")
def app_students(tmp_path_factory):
    """The app tests' students: the zoo's for APP_DATA and one run folder, in a runs root of their own.

    $LAB_RUNS points at a fresh temporary runs root for the whole session (subprocesses, e.g. the streamlit server
    of the browser tests, inherit it), so no run folder of the working directory's ./runs (or of a $LAB_RUNS set
    outside the tests) ever reaches the app tests. One tiny consistency student (20 steps on the zoo teacher) is
    distilled into it, so the Runs page and the run-folder paths of the other pages always have a run to show.
    Returns the app's student labels (zoo students first, then the run).
    """
    sys.path.insert(0, str(ROOT / "app"))
    import common
    from lab import zoo
    from lab.runs.recipes import distill_run

    assert zoo.find(f"toy2d/{APP_DATA}/teacher") is not None, \
        f"the app tests need the zoo teacher toy2d/{APP_DATA}/teacher; build it with `lab zoo build`"
    old = os.environ.get("LAB_RUNS")
    root = tmp_path_factory.mktemp("app_runs")
    os.environ["LAB_RUNS"] = str(root)
    try:
        assert common.runs_root() == root and common.students(APP_DATA) == common.zoo_students(APP_DATA), \
            "a fresh runs root already lists run folders"
        distill_run("consistency", f"toy2d/{APP_DATA}/teacher", root / APP_RUN, steps=20, progress=False)
        found = common.students(APP_DATA)
        runs = [s for s in found if s.source == "run"]
        assert [Path(s.ref).resolve() for s in runs] == [(root / APP_RUN).resolve()], runs
        yield [s.label for s in found]
    finally:
        if old is None:
            os.environ.pop("LAB_RUNS", None)
        else:
            os.environ["LAB_RUNS"] = old


@pytest.fixture(scope="session")
def eight():
    """The claim tests' 8-Gaussians setup: (source, zoo teacher, reference points, noise); see tests/_claims.py."""
    sys.path.insert(0, str(ROOT / "tests"))
    from _claims import setup

    return setup()
