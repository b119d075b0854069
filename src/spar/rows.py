"""The resumable stage loop every row-by-row stage shares (generate, judge, search, reward,
meta-judge, AutoIF's feedback and quality): ``spar.io``'s resume and Appender around a chunked loop."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from spar.io import Appender, resume

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


def map_rows(items: Sequence[T], output: str | Path, model: type[M], key: Callable[[T], str],
             work: Callable[[list[T], Callable[[M], None], Any], None], chunk: int = 8, row_key: str = "id",
             stop: Callable[[], bool] | None = None, started: Callable[[list[T]], None] | None = None,
             progress: Callable[[int, int], Any] | None = None) -> list[M]:
    """The resumable stage loop: every item whose ``key`` is not yet a row of ``output`` (``row_key``
    of the rows there) is handed to ``work(part, emit, bar)`` a chunk at a time; ``emit(row)``
    appends the row to ``output`` (flushed, fsynced) at once, so a killed run keeps every row emitted
    and a rerun does only the rest. ``started(todo)`` is called once the output has been read, before
    any work (to check the requests); ``progress(total, done)`` is a context manager around the work
    whose value is ``bar``; ``stop()`` (a budget) is asked before each chunk, and once it says so the
    remaining items get no row. Returns the rows of ``items``, done before or now, in their order."""
    from contextlib import nullcontext

    done_rows, done = resume(output, model, key=row_key)
    todo = [it for it in items if key(it) not in done]
    if started is not None:
        started(todo)
    with Appender(output) as out, (progress(len(items), len(items) - len(todo)) if progress else nullcontext()) as bar:
        def emit(row: M) -> None:
            out.write(row)
            done_rows.append(row)

        for start in range(0, len(todo), chunk):
            if stop is not None and stop():
                break
            work(todo[start:start + chunk], emit, bar)
    order = {key(it): n for n, it in enumerate(items)}
    return sorted((r for r in done_rows if str(getattr(r, row_key)) in order),
                  key=lambda r: order[str(getattr(r, row_key))])
