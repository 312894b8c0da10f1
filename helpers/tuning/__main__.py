"""``python -m helpers.tuning worker|show ...``: see ``helpers.tuning.worker.main``."""

from helpers.tuning.worker import main

main()
