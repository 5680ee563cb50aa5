# Distillation Lab: `make demo` serves the app, `make test` runs every test.
# `make screenshots` refreshes the README's screenshots in assets/ (`make test` writes its copies to tests/_out/).
# The environment lives in .venv/ at the repository root.
#
# torch: installed FIRST and pinned, so nothing later pulls a multi-GB CUDA build.
#   - Here (and wherever a local CPU wheel is on pip's path) torch==2.13.0 is the CPU build.
#   - GPU users:        make demo TORCH_SPEC="torch==2.13.0" TORCH_INDEX=https://download.pytorch.org/whl/cu128
#   - CPU-only users on a machine where PyPI would give a CUDA build:
#                       make demo TORCH_INDEX=https://download.pytorch.org/whl/cpu
#   - An existing .venv with any torch >= 2.2 is kept as it is.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
STAMP := $(VENV)/.installed
PORT ?= 8501
# the suite runs on every core in parallel test FILES (pytest-xdist; each worker one torch thread):
# `make test TEST_WORKERS=1` runs it serially, `make test PYTEST_ARGS="-k kd"` passes anything to pytest
TEST_WORKERS ?= 2
PYTEST_ARGS ?=
export LAB_NUM_THREADS ?= 1

.PHONY: demo test screenshots install chromium zoo bench lab clean-venv

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	@$(BIN)/python -c "import torch" 2>/dev/null || \
	  $(BIN)/pip install "$(TORCH_SPEC)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/pip install -e '.[app,notebooks,dev]'
	@touch $(STAMP)

install: $(STAMP)

# Debian's chromium for the browser test: installed when missing and we are root with apt.
# Where that is impossible the browser test FAILS (never skips) and names this command.
chromium:
	@if command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Debian chromium for the browser test"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else echo "chromium is missing; the browser test will fail. Install it with: sudo apt-get update && sudo apt-get install -y chromium"; fi

demo: install
	$(BIN)/lab app --port $(PORT)

test: install chromium
	$(BIN)/python -m pytest $(if $(filter-out 1,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadfile) $(PYTEST_ARGS)

# the browser tests write into assets/ only with LAB_UPDATE_SCREENSHOTS=1 (else into the git-ignored tests/_out/)
screenshots: install chromium
	LAB_UPDATE_SCREENSHOTS=1 $(BIN)/python -m pytest -m browser tests/test_browser.py

zoo: install
	$(BIN)/lab zoo build

bench: install
	$(BIN)/python bench/run.py

# JupyterLab on the workshop curriculum (notebooks/, docs/workshop.md) with this venv's kernel: the "python3" kernelspec
# is installed into .venv when it is missing; kernels get LAB_NUM_THREADS (1) from this Makefile, as in `make test`;
# root (a container) needs --allow-root
lab: install
	@test -f $(VENV)/share/jupyter/kernels/python3/kernel.json || $(BIN)/python -m ipykernel install --sys-prefix
	$(BIN)/jupyter lab --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root)

clean-venv:
	rm -rf $(VENV)
