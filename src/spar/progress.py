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


def bar(with_tokens: bool = False) -> Progress:
    cols: list = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn()]
    if with_tokens:
        cols.append(TokensPerSecond())
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
