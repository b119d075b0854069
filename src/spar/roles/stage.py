"""The judge stage over files: Completion rows in, JudgedSample rows out, resumable by row."""

from __future__ import annotations

from pathlib import Path

from spar.rows import map_rows
from spar.io import read_jsonl
from spar.llm import Backend
from spar.progress import token_bar
from spar.roles.judge import judge
from spar.settings import JudgeSettings
from spar.types import Completion, JudgedSample, Prompt


def check_samples(path: str | Path, samples: list[Completion]) -> None:
    """Bad input the row model cannot see, refused before the first write: a repeated id, a
    constraint kind that has no checker (a misspelling would silently become a free constraint),
    kwargs its checker cannot take."""
    from spar.constraints.checkers import follows, is_verifiable, unknown_kind
    from spar.io import DataError, row_lines

    if not samples:
        raise DataError(f"{path}: no samples in the file")
    seen: dict[str, int] = {}
    for n, s in zip(row_lines(path), samples):
        if s.id in seen:
            raise DataError(f"{path}:{n}: id {s.id!r} appears twice (first at line {seen[s.id]})")
        seen[s.id] = n
        for c in s.constraints:
            if c.kind == "free":
                continue
            if not is_verifiable(c.kind):
                raise DataError(f"{path}:{n}: {unknown_kind(c.kind)}")
            try:
                follows(c.kind, c.kwargs, "x", prompt=s.prompt[-1].content if s.prompt else "")
            except Exception as e:  # noqa: BLE001 - the checker's own complaint about its kwargs
                raise DataError(f"{path}:{n}: kwargs {c.kwargs} do not fit {c.kind}: {e}") from None


def judge_file(backend: Backend | None, input: str | Path, output: str | Path, cfg: JudgeSettings,
               seed: int = 0, chunk: int = 8, show: bool = True) -> list[JudgedSample]:
    samples = read_jsonl(input, Completion)  # validated whole before anything is written
    check_samples(input, samples)
    items = [(s, k, text) for s in samples for k, text in enumerate(s.completions)]

    def work(part, emit, bar) -> None:
        tick, advance = bar
        prompts = [Prompt(id=s.id, messages=s.prompt, constraints=s.constraints) for s, _, _ in part]
        judgments = judge(backend, prompts, [t for _, _, t in part], cfg, seed=seed, on_batch=tick)
        for (s, k, text), j in zip(part, judgments):
            emit(JudgedSample(id=s.id, index=k, response=text, judgment=j))
        advance(len(part))

    return map_rows(items, output, JudgedSample, key=lambda it: f"{it[0].id}#{it[1]}", row_key="key", work=work,
                    chunk=chunk, progress=lambda total, done: token_bar("judge", total, done, show))
