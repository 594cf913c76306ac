"""The plausibility table: a dozen hand-written cases answered by the champion.

Run by hand after ``aidrec run`` (or train + promote): ``PYTHONPATH=$PWD .venv/bin/python
bench/plausibility.py`` with ``AIDREC_DATA_DIR`` (or ``MLFLOW_TRACKING_URI``) pointing at
the registry. Prints the markdown table the README's "Plausibility" section and the notebook
show; the cases are ``training.plausibility.PLAUSIBILITY_CASES``.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aidrec.settings import get_settings
from training.plausibility import markdown_table, plausibility_rows
from training.registry import configure_tracking, load_bundle

log = logging.getLogger("plausibility")


def main() -> None:
    """Load the champion of the configured registry and print the table."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    settings = get_settings()
    configure_tracking(settings.tracking_store_uri)
    bundle, model = load_bundle(settings.model_uri)
    log.info("champion: %s version %s", model.get("name"), model.get("version"))
    sys.stdout.write(markdown_table(plausibility_rows(bundle)) + "\n")


if __name__ == "__main__":
    main()
