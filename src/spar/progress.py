"""Rich progress bars for long stages, with a tokens/s column for generation."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text

console = Console(stderr=True)


class TokensPerSecond(ProgressColumn):
    def render(self, task) -> Text:  # type: ignore[override]
        tokens = task.fields.get("tokens", 0)
        elapsed = task.elapsed or 0.0
        if not elapsed or not tokens:
            return Text("", style="dim")
        return Text(f"{tokens / elapsed:,.1f} tok/s", style="cyan")


class LineProgress(Progress):
    """Progress for a log file (stderr is no terminal, e.g. a run under nohup): no live bar, but a
    plain line per task at most every ``every`` seconds (the first after ``every`` seconds, so short
    stages print nothing), and a last one when a task that printed finishes."""

    every = 60.0

    def __init__(self, *columns, **kw) -> None:
        super().__init__(*columns, disable=True, **kw)
        self._said: dict = {}

    def update(self, task_id, **kw) -> None:  # type: ignore[override]
        super().update(task_id, **kw)
        self._maybe_say(task_id)

    def advance(self, task_id, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._maybe_say(task_id)

    def _maybe_say(self, task_id) -> None:
        import time

        task = self._tasks.get(task_id)
        if task is None or not task.visible or task.total is None:
            return
        now = time.monotonic()
        last = self._said.get(task_id, task.start_time if task.start_time is not None else now)
        done = task.completed >= task.total
        if now - last < self.every and not (done and task_id in self._said):
            return
        if done and self._said.get(task_id) == -1:
            return
        self._said[task_id] = -1 if done else now
        elapsed = task.elapsed or 0.0
        eta = (f", about {elapsed / task.completed * (task.total - task.completed) / 60:.0f} min left"
               if task.completed and not done else "")
        tokens = task.fields.get("tokens")
        speed = f", {tokens / elapsed:,.1f} tok/s" if tokens and elapsed else ""
        self.console.print(f"{task.description} {task.completed:g}/{task.total:g} after {elapsed / 60:.1f} min{eta}{speed}",
                           markup=False, highlight=False)


def bar(with_tokens: bool = False) -> Progress:
    cols: list = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn()]
    if with_tokens:
        cols.append(TokensPerSecond())
    if not console.is_terminal:
        return LineProgress(*cols, console=console)
    return Progress(*cols, console=console)


@contextmanager
def token_bar(label: str, total: int, completed: int = 0, show: bool = True,
              advance_on_tick: bool = False) -> Iterator[tuple[Callable[[int, int], None], Callable[[int], None]]]:
    """A bar for a generation stage. Yields ``tick(n_done, n_tokens)`` (a backend's on_batch) and
    ``advance(n_rows)``; with ``advance_on_tick`` each tick also advances the bar by n_done."""
    with bar(with_tokens=True) as progress:
        task = progress.add_task(label, total=total, completed=completed, tokens=0, visible=show)
        tokens = 0

        def tick(n: int, ntok: int) -> None:
            nonlocal tokens
            tokens += ntok
            progress.update(task, tokens=tokens, advance=n if advance_on_tick else 0)

        yield tick, lambda k: progress.update(task, advance=k)
