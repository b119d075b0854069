"""The search stage over files: negatives in, whole trees out (appended as each tree finishes, so a
killed run keeps every finished tree and a rerun searches only the rest)."""

from __future__ import annotations

from spar.io import DataError

from collections.abc import Callable
from pathlib import Path

from spar.io import Appender, read_jsonl, resume
from spar.progress import bar
from spar.search.driver import Searcher
from spar.types import Negative, Tree


def search_file(searcher: Searcher, input: str | Path, output: str | Path, chunk: int = 64, show: bool = True,
                stop: Callable[[], bool] | None = None) -> list[Tree]:
    """A tree per negative not yet in ``output``, in chunks; ``stop()`` (a budget) is asked before
    each chunk, and once it says so the remaining negatives get no tree."""
    negatives = read_jsonl(input, Negative)
    keys = [n.key for n in negatives]
    if len(set(keys)) != len(keys):
        raise DataError(f"{input}: duplicate negatives (same prompt id and sample index)")
    done_rows, done = resume(output, Tree)
    todo = [n for n in negatives if n.key not in done]
    with Appender(output) as out, bar() as progress:
        task = progress.add_task(f"search ({searcher.cfg.strategy})", total=len(negatives),
                                 completed=len(negatives) - len(todo), visible=show)

        def done_one(tree: Tree) -> None:
            out.write(tree)
            done_rows.append(tree)
            progress.update(task, advance=1)

        for start in range(0, len(todo), chunk):
            if stop is not None and stop():
                break
            if hasattr(searcher.backend, "search_trees"):  # replicas of their own (Ray): whole trees each
                searcher.backend.search_trees(searcher, todo[start:start + chunk], on_done=done_one)
            else:  # trees advance together inside a chunk; chunks bound the memory of one batched call
                searcher.run(todo[start:start + chunk], on_done=done_one)
    order = {k: i for i, k in enumerate(keys)}
    return sorted((t for t in done_rows if t.id in order), key=lambda t: order[t.id])
