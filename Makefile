# Two entry points: `make course` (set up and open the course) and `make test` (set up and run every test).
# Both call helpers/setup.py, which is also the route without make (Windows):
#   python -m helpers.setup course   /   python -m helpers.setup test
# so the two cannot drift apart. WHEELHOUSE=DIR installs from a folder of wheels, without the network.
PYTHON ?= python3
VENV ?= .venv
WHEELHOUSE ?=
PLATFORMS ?= linux-x86_64 linux-aarch64 macos-arm64 windows-x86_64
SETUP := $(PYTHON) -m helpers.setup
SETUP_ARGS := --venv "$(VENV)" $(if $(WHEELHOUSE),--wheelhouse "$(WHEELHOUSE)",)

.PHONY: course test setup setup-test clean-venv full benchmarks mutation wheelhouse bundle site site-fast

course:
	$(SETUP) course $(SETUP_ARGS)

test:
	$(SETUP) test $(SETUP_ARGS)

# Set up without opening JupyterLab or running the tests.
setup:
	$(SETUP) course $(SETUP_ARGS) --setup-only

setup-test:
	$(SETUP) test $(SETUP_ARGS) --setup-only

# Every notebook in full mode, one at a time, against the budget its first code cell declares: prints a table,
# fails when one is over, writes notebooks/verified.json and the README's table. Without make (Windows):
#   python -m helpers.budgets full        (ARGS: --only 08 09, --fast, --by cpu)
ARGS ?=
full: setup
	$(VENV)/bin/python -m helpers.budgets full $(ARGS)

benchmarks: setup-test
	$(VENV)/bin/python -m benchmarks.run_all

# Mutation scores of the core modules (minutes per module; not part of `make test`).
mutation: setup-test
	OMP_NUM_THREADS=1 $(VENV)/bin/python -m benchmarks.mutation

# A folder of wheels for a room without internet (copy it to a USB stick), for the platforms named.
wheelhouse:
	$(SETUP) wheelhouse wheelhouse --platform $(PLATFORMS)

# The notebooks without solutions, the helpers and the set-up files, as one zip for students.
bundle:
	$(SETUP) bundle dist/llm-params-course.zip

# The course as a static website in site/ (index.html): every notebook executed in full mode (as long as
# `make full`: the README's budget table); site-fast in fast mode, as CI builds it.
site: setup
	$(VENV)/bin/python -m helpers.site build site --jobs 2

site-fast: setup
	$(VENV)/bin/python -m helpers.site build site --fast --jobs 2

clean-venv:
	rm -rf $(VENV)
