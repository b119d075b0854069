"""A scripted fake backend for pure-logic tests (never used outside the test tree)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from spar.llm import ChatLike, OnBatch, Sampling, as_dicts

Script = Callable[[list[dict[str, str]], Sampling, int], str]


class FakeBackend:
    """Answers each request with ``script(chat, sampling, k)`` for k in range(n); records every call."""

    name = "fake"

    def __init__(self, script: Script | dict[str, str | list[str]] | None = None, default: str = "ok"):
        self.script = script
        self.default = default
        self.calls: list[tuple[list[list[dict[str, str]]], Sampling]] = []

    def _one(self, chat: list[dict[str, str]], sampling: Sampling, k: int) -> str:
        if callable(self.script):
            return self.script(chat, sampling, k)
        if isinstance(self.script, dict):
            last = chat[-1]["content"]
            for key, val in self.script.items():
                if key in last:
                    return val[k % len(val)] if isinstance(val, list) else val
        return self.default

    def generate(self, requests: Sequence[ChatLike], sampling: Sampling, on_batch: OnBatch | None = None) -> list[list[str]]:
        chats = [as_dicts(r) for r in requests]
        self.calls.append((chats, sampling))
        out = [[self._one(c, sampling, k) for k in range(sampling.n)] for c in chats]
        if on_batch:
            on_batch(len(chats), sum(len(t.split()) for row in out for t in row))
        return out
