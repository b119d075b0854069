"""The generate stage: prompts in, ``Completion`` rows out, resumable at row level."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from spar.io import Appender, resume
from spar.llm import Backend, PartialFailure, Sampling
from spar.progress import token_bar
from spar.types import Completion, Prompt


def generate_file(backend: Backend, prompts: Sequence[Prompt], output: str | Path, sampling: Sampling,
                  chunk: int = 8, show: bool = True, stop: Callable[[], bool] | None = None) -> list[Completion]:
    """Generate for every prompt whose id is not yet in ``output``; returns all rows, in input order.

    The output is read before the backend is first used, so a lazily built backend
    (spar.cli_common.LazyBackend) loads only once the output is known good. Rows are appended one
    chunk at a time, so a killed run keeps every finished chunk and a rerun generates only the rest.
    ``stop()`` (a budget) is asked before each chunk: once it says so, the remaining prompts get no row.
    """
    done_rows, done = resume(output, Completion)
    todo = [p for p in prompts if p.id not in done]
    if todo and hasattr(backend, "check"):  # a request the backend would refuse stops the stage before it starts
        backend.check([p.messages for p in todo], sampling)
    with Appender(output) as out, token_bar("generate", len(prompts), len(prompts) - len(todo), show) as (tick, advance):
        for start in range(0, len(todo), chunk):
            if stop is not None and stop():
                break
            part = todo[start:start + chunk]
            try:
                texts = backend.generate([p.messages for p in part], sampling, on_batch=tick)
            except PartialFailure as e:  # keep the finished answers, then report the failure
                for p, t in zip(part, e.results):
                    if t is not None:
                        row = Completion(id=p.id, prompt=p.messages, completions=t, constraints=p.constraints)
                        out.write(row)
                        done_rows.append(row)
                raise
            for p, t in zip(part, texts):
                row = Completion(id=p.id, prompt=p.messages, completions=t, constraints=p.constraints)
                out.write(row)
                done_rows.append(row)
            advance(len(part))
    by_id = {r.id: r for r in done_rows}
    return [by_id[p.id] for p in prompts if p.id in by_id]
