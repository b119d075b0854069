"""The generate stage: prompts in, ``Completion`` rows out, resumable at row level."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from spar.rows import map_rows
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
    def started(todo: list[Prompt]) -> None:  # a request the backend would refuse stops the stage before it starts
        if todo and hasattr(backend, "check"):
            backend.check([p.messages for p in todo], sampling)

    def work(part: list[Prompt], emit, bar) -> None:
        tick, advance = bar
        try:
            texts = backend.generate([p.messages for p in part], sampling, on_batch=tick)
        except PartialFailure as e:  # keep the finished answers, then report the failure
            for p, t in zip(part, e.results):
                if t is not None:
                    emit(Completion(id=p.id, prompt=p.messages, completions=t, constraints=p.constraints))
            raise
        for p, t in zip(part, texts):
            emit(Completion(id=p.id, prompt=p.messages, completions=t, constraints=p.constraints))
        advance(len(part))

    return map_rows(prompts, output, Completion, key=lambda p: p.id, work=work, chunk=chunk, stop=stop, started=started,
                    progress=lambda total, done: token_bar("generate", total, done, show))
