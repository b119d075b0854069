"""The OpenAI backend against a server that fails on purpose: every request comes back exactly
once with the right text, or is named as failed; finished answers are kept; the key never shows."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from chaos import FAULTS, ChaosServer, answer
from spar.llm import BackendOptions, Sampling
from spar.llm.openai_backend import OpenAIBackend, request_seed

KEY = "sk-chaos-secret-0123456789"


@pytest.fixture
def quick_backoff(monkeypatch):
    """Backoff waits shortened (they are what Retry-After tests check, elsewhere); what was asked is kept."""
    import asyncio

    import spar.llm.openai_backend as ob

    asked, real = [], asyncio.sleep

    async def short(s):
        asked.append(s)
        await real(min(s, 0.02))

    monkeypatch.setattr(ob.asyncio, "sleep", short)
    return asked


def test_every_request_comes_back_exactly_once_with_the_right_text(quick_backoff, record, monkeypatch):
    monkeypatch.setenv("SPAR_OPENAI_API_KEY", KEY)
    chats = [[{"role": "user", "content": f"question {i}"}] for i in range(60)]
    with ChaosServer(fault_rate=0.5, hang_s=0.8) as server:
        backend = OpenAIBackend(server.url, "m", BackendOptions(timeout=0.4, concurrency=8, max_retries=12))
        out = backend.generate(chats, Sampling(n=2, seed=7))
    # the seed comes from the run's seed and the chat, not from the request's place in the batch
    seeds = [request_seed(c, 7, 0) for c in chats]
    assert out == [[answer(f"question {i}", seeds[i], 0), answer(f"question {i}", seeds[i], 1)] for i in range(60)]
    assert set(server.outcomes) >= set(FAULTS) - {"over_budget"}, server.outcomes  # every fault was met
    assert server.keys == {f"Bearer {KEY}"}
    assert KEY not in repr(backend) and KEY not in backend.name
    record("chaos", requests=server.requests, outcomes=dict(server.outcomes), prompts=60, answers_right=60,
           lost=0, doubled=0, retry_after_waits=sum(1 for s in quick_backoff if s >= 0.1))


def test_a_server_that_never_recovers_is_named_and_the_answers_before_it_are_kept(quick_backoff, record, tmp_path):
    from spar.generate import generate_file
    from spar.io import read_jsonl
    from spar.llm import PartialFailure
    from spar.types import Completion, Message, Prompt

    prompts = [Prompt(id=f"p{i}", messages=[Message(role="user", content=f"q{i}")]) for i in range(12)]
    out = tmp_path / "out.jsonl"
    with ChaosServer(fault_rate=0.0) as server:
        backend = OpenAIBackend(server.url, "m", BackendOptions(timeout=0.5, max_retries=2))
        generate_file(backend, prompts[:6], out, Sampling(), chunk=3, show=False)
        server.fault_rate, server.faults = 1.0, ("500",)  # from now on every request fails
        with pytest.raises(PartialFailure, match="6 of 6 requests failed"):
            generate_file(backend, prompts, out, Sampling(), chunk=6, show=False)
        server.fault_rate = 0.0  # it recovers: a rerun asks only for the rest
        before = server.requests
        rows = generate_file(backend, prompts, out, Sampling(), chunk=6, show=False)
        assert server.requests - before == 6
    assert [r.id for r in rows] == [f"p{i}" for i in range(12)]
    assert sorted(r.id for r in read_jsonl(out, Completion)) == sorted(f"p{i}" for i in range(12))
    record("chaos", requests=server.requests, outcomes=dict(server.outcomes), prompts=12, answers_right=12,
           lost=0, doubled=0, retry_after_waits=0)


def test_the_key_never_reaches_the_output_or_the_error(tmp_path, record):
    """spar generate against a server that fails every request for good: one line, exit 2, no key."""
    p = tmp_path / "p.jsonl"
    p.write_text("".join(json.dumps({"id": f"p{i}", "prompt": f"q{i}"}) + "\n" for i in range(3)))
    with ChaosServer(fault_rate=1.0, faults=("500",)) as server:
        res = subprocess.run([sys.executable, "-m", "spar", "--retries", "1", "generate", "-m", f"openai:{server.url}#m",
                              "-i", str(p), "-o", str(tmp_path / "o.jsonl")],
                             capture_output=True, text=True, timeout=120,
                             env={**__import__("os").environ, "SPAR_OPENAI_API_KEY": KEY})
    assert res.returncode == 2, res.stderr
    last = res.stderr.strip().splitlines()[-1]  # above it, the progress bar as it stood
    assert last.startswith("spar: error: 3 of 3 requests failed") and res.stderr.count("spar: error") == 1, res.stderr
    assert KEY not in res.stdout + res.stderr
    assert not (tmp_path / "o.jsonl").exists() or (tmp_path / "o.jsonl").read_text() == ""
    record("chaos", requests=server.requests, outcomes=dict(server.outcomes), prompts=3, answers_right=0,
           lost=0, doubled=0, retry_after_waits=0, named_failures=3)


def test_global_timeout_and_retries_reach_the_loop(tmp_path, record):
    """`spar --timeout 1 --retries 0 iterate` against a server that never answers in time fails in
    about a second: the loop's backends are built with the command line's options, not the 120 s
    default."""
    import time

    from typer.testing import CliRunner

    from spar.cli import app

    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\nprompts:\n  count: 2\n  heldout: 0\nsample:\n  k: 1\njudge:\n  mode: verifier\n"
                      "eval:\n  heldout: false\n")
    with ChaosServer(fault_rate=1.0, faults=("hang",), hang_s=20, lifetime=60) as server:
        t0 = time.perf_counter()
        res = CliRunner().invoke(app, ["--timeout", "1", "--retries", "0", "iterate", "--config", str(recipe),
                                       "--run-dir", str(tmp_path / "run"), "--set", f"model=openai:{server.url}#m"])
        took = time.perf_counter() - t0
    record("global_options", seconds=round(took, 2), exit_code=res.exit_code)
    assert res.exit_code == 2, res.output
    assert "timed out" in res.output.lower() or "timeout" in res.output.lower(), res.output
    assert took < 15, f"took {took:.1f} s: the 1 s timeout did not reach the loop's backend"
    cfg = (tmp_path / "run" / "config.yaml").read_text()
    assert "timeout: 1.0" in cfg and "retries: 0" in cfg
