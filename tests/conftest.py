from __future__ import annotations

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
