"""Kills at chosen points: SIGKILL a generation in the middle of its output (after the 2nd, 6th,
10th... row) and a whole `spar iterate` in the middle of each of its row-writing stages; every rerun
continues, and the end is the same rows as a run never killed: none lost, none doubled."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import pipeline_harness as H
from chaos import ChaosServer, answer
from spar.llm.openai_backend import request_seed

SPAR = [sys.executable, "-m", "spar"]


def _rows(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _kill_when(proc: subprocess.Popen, ready, timeout: float = 60.0) -> bool:
    """SIGKILL proc as soon as ready() holds; False if it ended first."""
    deadline = time.time() + timeout
    while proc.poll() is None and time.time() < deadline:
        if ready():
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.01)
    proc.wait(timeout=timeout)
    return False


def test_generate_killed_at_several_rows_loses_and_doubles_nothing(tmp_path, record):
    p = tmp_path / "p.jsonl"
    p.write_text("".join(json.dumps({"id": f"p{i}", "prompt": f"q{i}"}) + "\n" for i in range(24)))
    out = tmp_path / "o.jsonl"
    points, kills = [2, 6, 10, 16], 0
    with ChaosServer(fault_rate=0.2, faults=("500", "drop", "not_json"), delay_s=0.15) as server:
        cmd = SPAR + ["--retries", "8", "generate", "-m", f"openai:{server.url}#m", "-i", str(p), "-o", str(out),
                      "--batch-size", "2", "--seed", "3"]
        for point in points:
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            kills += _kill_when(proc, lambda: len(_rows(out)) >= point)
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    rows = [json.loads(x) for x in _rows(out)]
    ids = [r["id"] for r in rows]
    assert sorted(ids) == sorted(f"p{i}" for i in range(24)) and len(ids) == len(set(ids))
    for r in rows:  # each answer is the one its own request asks for, whatever batch it ended up in
        chat = [{"role": "user", "content": f"q{r['id'][1:]}"}]
        assert r["completions"] == [answer(chat[0]["content"], request_seed(chat, 3, 0), 0)]
    assert not list(tmp_path.glob(".o.jsonl.*")), "the append marker is gone once the run is whole"
    assert kills >= 3, f"only {kills} kills landed; the run outpaced them"
    record("kill", target="spar generate", points=len(points), kills=kills, rows=24, lost=0, doubled=0)


STAGES = [("iter_1:sample", "iter_1/samples.jsonl"), ("iter_1:judge", "iter_1/judgments.jsonl"),
          ("iter_1:search", "iter_1/trees.jsonl")]


@pytest.mark.parametrize("method", ["spar"])
def test_iterate_killed_in_each_stage_loses_and_doubles_nothing(tmp_path, method, record):
    from test_pipeline import _rows as run_rows

    clean = tmp_path / "clean"
    H.run(clean)
    expected = run_rows(clean)
    killed = tmp_path / "killed"
    harness = str(Path(H.__file__))
    kills = []
    for stage, rows_file in STAGES:
        def mid_stage() -> bool:
            try:
                st = json.loads((killed / "manifest.json").read_text())["stages"].get(stage, {})
            except (OSError, ValueError):  # not there yet, or being replaced
                return False
            return st.get("status") == "running" and len(_rows(killed / rows_file)) >= 1

        proc = subprocess.Popen([sys.executable, harness, str(killed), "0.05"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        if _kill_when(proc, mid_stage, timeout=120):
            kills.append(stage)
    subprocess.run([sys.executable, harness, str(killed), "0"], check=True, capture_output=True, timeout=300)
    assert run_rows(killed) == expected
    assert len(kills) >= 2, f"kills landed only in {kills}"
    record("kill", target="spar iterate (scripted backend)", points=len(STAGES), kills=len(kills), stages=kills,
           rows=sum(len(v) for v in expected.values()), lost=0, doubled=0)
