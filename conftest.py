"""The repository's pytest set-up: notebooks run by nbmake in fast mode are held to their declared budgets
(CPU time of the kernel, see helpers/budgets.py for why not wall time)."""

pytest_plugins = ["helpers.budgets"]
