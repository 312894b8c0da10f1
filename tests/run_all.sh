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

echo "== unit tests and every notebook (fast mode, one thread per kernel, two workers)"
# The notebooks run in fast mode; each kernel gets one thread so that two kernels share the two cores
# without fighting.
export COURSE_FAST=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 MPLBACKEND=Agg PYDEVD_DISABLE_FILE_VALIDATION=1
status=0
python -m pytest tests notebooks --nbmake --nbmake-timeout=300 -n 2 --durations=15 -p no:cacheprovider \
  -m "not browser" "$@" || status=$?

# The browser tests drive JupyterLab and Chromium through whole notebooks; they run on their own,
# after the rest, so that a busy machine does not starve the page while it renders outputs and widgets.
if [ "${COURSE_SKIP_BROWSER:-0}" = "1" ]; then
  echo "== browser tests skipped (COURSE_SKIP_BROWSER=1)"
else
  echo "== browser tests (JupyterLab in headless Chromium)"
  python -m pytest tests -m browser -p no:cacheprovider "$@" || status=$?
fi
exit "$status"
