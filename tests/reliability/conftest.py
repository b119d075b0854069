"""The reliability suite's figures: each test records what it tried and what happened through the
``record`` fixture; with SPAR_RELIABILITY_OUT set (``make reliability`` sets it), the session writes
them there as JSON, and tests/reliability/report.py turns them into RELIABILITY.md."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

FIGURES: list[dict] = []


@pytest.fixture
def record(request):
    def add(section: str, **fields):
        FIGURES.append({"section": section, "test": request.node.nodeid, **fields})

    return add


def pytest_sessionfinish(session, exitstatus):
    out = os.environ.get("SPAR_RELIABILITY_OUT")
    if out and FIGURES:
        Path(out).write_text(json.dumps({"exitstatus": int(exitstatus), "figures": FIGURES}, indent=1))
