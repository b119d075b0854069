"""Progress for a log file: lines at an interval instead of a live bar."""

import io

from rich.console import Console

from spar.progress import LineProgress


def test_a_log_gets_a_line_now_and_then_and_a_last_one_and_a_short_stage_none(monkeypatch):
    out = io.StringIO()
    clock = iter(range(0, 100_000, 25))  # every look at the clock: 25 s later
    now = lambda: float(next(clock))  # noqa: E731
    monkeypatch.setattr("time.monotonic", now)
    with LineProgress(console=Console(file=out, force_terminal=False), get_time=now) as p:
        t = p.add_task("train", total=8)
        for _ in range(8):
            p.advance(t)
    lines = out.getvalue().splitlines()
    assert lines and all(x.startswith("train ") for x in lines), lines
    assert lines[-1].startswith("train 8/8") and len(lines) < 8
    quiet = io.StringIO()
    with LineProgress(console=Console(file=quiet, force_terminal=False)) as p:
        t = p.add_task("quick", total=3)
        for _ in range(3):
            p.advance(t)
    assert quiet.getvalue() == ""
