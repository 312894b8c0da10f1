#!/usr/bin/env bash
# The whole test suite, as `make test` runs it: lint, clean notebooks, unit tests, every notebook.
# Expects the course environment's python/pytest/ruff first on PATH (the Makefile arranges that).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== ruff: helpers, tests, benchmarks and notebooks"
ruff check helpers tests benchmarks notebooks

echo "== notebooks are committed without outputs"
mapfile -t notebooks < <(find notebooks -name '*.ipynb' -not -path '*/.ipynb_checkpoints/*' | sort)
nbstripout --verify "${notebooks[@]}"

echo "== unit tests, browser tests and every notebook (fast mode, one thread per kernel)"
# One pytest run, so that one summary line counts everything. The notebooks run in fast mode;
# each kernel gets one thread so that two kernels share the two cores without fighting. The two
# browser tests share one xdist group, so they never run at the same time.
export COURSE_FAST=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 MPLBACKEND=Agg PYDEVD_DISABLE_FILE_VALIDATION=1
exec python -m pytest tests notebooks --nbmake --nbmake-timeout=300 -n 2 --dist loadgroup --durations=15 -p no:cacheprovider "$@"
