"""Parts of the machine some tests need (PostgreSQL, a browser, Spark): skip here, fail in CI.

A newcomer's laptop may lack them, so their tests skip with the reason; CI exports
``AIDREC_REQUIRE_<PART>=1``, and there a missing part fails the run instead of hiding it.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def missing(part: str, what: str, reason: str) -> NoReturn:
    """Skip with ``reason``, or fail where ``AIDREC_REQUIRE_<PART>=1`` makes ``what`` required."""
    variable = f"AIDREC_REQUIRE_{part}"
    if os.environ.get(variable) == "1":
        pytest.fail(f"{what} is required here ({variable}=1): {reason}")
    pytest.skip(reason)
