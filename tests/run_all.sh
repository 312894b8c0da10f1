#!/usr/bin/env bash
# The whole test suite in the active environment (a conda environment, say): lint, the committed notebooks
# carry no outputs, unit tests and every notebook in fast mode, then the browser tests. `make test` and
# `python -m helpers.setup test` set up .venv and run the same steps (helpers/setup.py, run_tests).
set -euo pipefail
cd "$(dirname "$0")/.."
exec python -m helpers.setup run-tests "$@"
