"""The source changes no logging at import; building it quiets one dlt warning, once."""

import logging
import subprocess
import sys

from klaviyo import klaviyo_source
from tests.conftest import REPO

KEY = "pk_logging_test"
BASE_URL = "http://127.0.0.1:9"  # nothing is sent: the sources are only built


def _warning(resource: str) -> logging.LogRecord:
    """dlt's per-page warning for an Arrow page whose JSON-text column meets a `json` hint
    (dlt 1.31, `extract/extractors.py`)."""
    message = (f"In resource: {resource}, when merging arrow schema with dlt schema,"
               " several column hints were different. dlt schema hints were kept and arrow"
               " schema and data were unmodified. It is up to destination to coerce the"
               " differences when loading. Change log level to INFO for more details.")
    return logging.LogRecord("dlt", logging.WARNING, __file__, 1, message, None, None)


def test_importing_the_source_adds_no_logging_filter() -> None:
    code = ("import logging, dlt; before = len(logging.getLogger('dlt').filters);"
            " import klaviyo, klaviyo.records; print(before, len(logging.getLogger('dlt').filters))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    before, after = out.stdout.split()
    assert after == before


def test_building_the_source_quiets_the_json_hint_warning_of_its_arrow_reports_once() -> None:
    for _ in range(2):
        klaviyo_source(api_key=KEY, base_url=BASE_URL, reports=["events", "profiles", "campaigns_email"])
    logger = logging.getLogger("dlt")
    installed = [f for f in logger.filters if type(f).__name__ == "_ArrowJsonHintFilter"]
    assert len(installed) == 1
    assert not logger.filter(_warning("events")) and not logger.filter(_warning("profiles"))
    assert logger.filter(_warning("campaigns_email")), "row-dict reports keep dlt's warning"
