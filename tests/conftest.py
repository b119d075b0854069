from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_data(*parts: str) -> Path:
    """A path under ../shared/data, or skip: a user's fresh clone does not have it (CI does)."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"benchmark data not found at {path} (only CI and the team's machines have ../shared/data)")
    return path


@pytest.fixture(scope="session")
def embedded():
    """The real embedded model through the hf backend, loaded once per test session. fp32, whatever
    the CPU: tests compare texts generated in different batch layouts, which bf16's coarser
    rounding does not keep equal (test_hf_backend.py has a bf16 check of its own)."""
    from spar.llm import BackendOptions, load_backend

    return load_backend("embedded", BackendOptions(batch_size=8, dtype="fp32"))


# The reliability suite's figures (tests/reliability): each test records what it tried and what
# happened through ``record``; with SPAR_RELIABILITY_OUT set (``make reliability`` sets it) the
# session writes them there as JSON, and tests/reliability/report.py makes RELIABILITY.md of them.
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


# Skips that CI (CI=true) accepts: an optional extra that a target of its own installs and tests
# (`make test-ray`, `make test-vllm`), an opt-in model, or a case root cannot make. Any other skip
# of a shipped feature fails there instead of passing silently: CI must run it or fix its machine.
ALLOWED_SKIPS_IN_CI = ("Ray is not installed", "vLLM is not installed", "the qwen-coder extra is not installed",
                       "root ")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not report.skipped or os.environ.get("CI", "").lower() not in ("1", "true", "yes"):
        return
    if hasattr(report, "wasxfail"):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if not any(a in reason for a in ALLOWED_SKIPS_IN_CI):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI (CI=true), where every shipped feature must run: {reason}"
