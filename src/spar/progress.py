"""Rich progress bars for long stages, with a tokens/s column for generation."""

from __future__ import annotations

import time

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


class Timer:
    def __enter__(self) -> "Timer":
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start
