"""The search stage over files: negatives in, whole trees out (appended as each tree finishes, so a
killed run keeps every finished tree and a rerun searches only the rest)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from spar.io import DataError, read_jsonl
from spar.rows import map_rows
from spar.progress import bar
from spar.search.driver import Searcher
from spar.types import Negative, Tree


def search_file(searcher: Searcher, input: str | Path, output: str | Path, chunk: int = 64, show: bool = True,
                stop: Callable[[], bool] | None = None,
                prepare: Callable[[Negative], Negative] | None = None) -> list[Tree]:
    """A tree per negative not yet in ``output``, in chunks; ``stop()`` (a budget) is asked before
    each chunk, and once it says so the remaining negatives get no tree. ``prepare`` changes each
    negative as read (the file itself is never written)."""
    negatives = read_jsonl(input, Negative)
    if prepare is not None:
        negatives = [prepare(n) for n in negatives]
    keys = [n.key for n in negatives]
    if len(set(keys)) != len(keys):
        raise DataError(f"{input}: duplicate negatives (same prompt id and sample index)")
    @contextmanager
    def progress(total: int, done: int):
        with bar() as p:
            task = p.add_task(f"search ({searcher.cfg.strategy})", total=total, completed=done, visible=show)
            yield lambda: p.update(task, advance=1)

    def work(part: list[Negative], emit, advance) -> None:
        def done_one(tree: Tree) -> None:
            emit(tree)
            advance()

        if hasattr(searcher.backend, "search_trees"):  # replicas of their own (Ray): whole trees each
            searcher.backend.search_trees(searcher, part, on_done=done_one)
        else:  # trees advance together inside a chunk; chunks bound the memory of one batched call
            searcher.run(part, on_done=done_one)

    return map_rows(negatives, output, Tree, key=lambda n: n.key, work=work, chunk=chunk, stop=stop, progress=progress)
