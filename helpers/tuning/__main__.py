"""``python -m helpers.tuning worker|show ...``: see ``helpers.tuning.worker.main``."""

from helpers.tuning.worker import main

try:
    main()
except (ValueError, ConnectionError) as err:  # bad input or no database: one clear line, no traceback
    raise SystemExit(f"error: {err}") from None
