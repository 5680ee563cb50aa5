"""The Gradio demo, served on 127.0.0.1 and called through gradio_client."""
from __future__ import annotations

import importlib.util
import math
import re
import socket

from gradio_client import Client

from conftest import APP_DATA, ROOT


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _load_demo_module():
    spec = importlib.util.spec_from_file_location("lab_app_demo", ROOT / "app" / "demo.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_gradio_generate(app_students):
    demo_mod = _load_demo_module()
    assert demo_mod.student_choices(APP_DATA)[:len(app_students)] == app_students
    demo = demo_mod.build_demo()
    port = _free_port()
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        student = app_students[0]
        fig, text = client.predict(APP_DATA, student, 50, 2, 7, 500, api_name="/generate")
        assert fig, "no figure returned"
        assert "distance to data" in text and "noise floor" in text and "wall-clock" in text, text
        rows = [r for r in text.splitlines() if r.startswith("| ") and not r.startswith("| model")]
        models = {r.split("|")[1].strip(): r for r in rows}
        assert set(models) == {"teacher", student}, text
        assert models["teacher"].split("|")[2].strip() == "50" and models[student].split("|")[2].strip() == "2", text
        for r in rows:
            nums = [float(v) for v in re.findall(r"[-+]?\d*\.?\d+(?:e[-+]?\d+)?|nan|inf", r.split("|", 3)[3])]
            assert len(nums) == 3 and all(math.isfinite(v) for v in nums), r
            assert nums[0] > 0 and nums[1] > 0 and nums[2] >= 0, r

        # teacher only also works
        _, text2 = client.predict(APP_DATA, demo_mod.TEACHER_ONLY, 10, 1, 0, 200, api_name="/generate")
        assert "| teacher | 10 |" in text2 and "teacher only" in text2, text2
    finally:
        demo.close()
