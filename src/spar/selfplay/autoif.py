"""AutoIF's rules (``../shared/specs/autoif.md``): parsing what the supervision model writes,
cross-validating its verifier functions against its test cases, the back-translation filter, the
execution-feedback pass rate of a response, and DPO pair sampling. The functions themselves only
ever run in ``spar.sandbox``: here they are source text, and their results are data.

Defaults follow the spec's *default* marks: the reference code's cross-validation rules (at least 3
functions and 10 cases; a case is kept when at least one function returns exactly its label; a
function is kept at accuracy >= 0.8 on the kept cases), the paper's response threshold (pass rate
> 0.5), and the reference code's pair sampling. A result counts only when it is a real bool.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from spar.settings import CrossValidation  # the rules' settings, declared once (in spar.settings)

_JSON_BLOCK = re.compile(r"```json\s*(.*?)```", re.DOTALL)
_FENCE = re.compile(r"```[\w+-]*\n?(.*?)(?:```|$)", re.DOTALL)
_BANNED_LINE = re.compile(r"download|requests")  # the reference's filter; the sandbox is what protects


def parse_instructions(reply: str) -> list[str]:
    """The ``- `` lines of an augmentation reply, stripped, without duplicates (order kept)."""
    out: list[str] = []
    for line in reply.splitlines():
        line = line.strip()
        if line.startswith("- ") and len(line) > 3 and line[2:].strip() not in out:
            out.append(line[2:].strip())
    return out


@dataclass
class FunctionSample:
    func: str
    cases: list[tuple[str, bool]]


def parse_function_sample(reply: str) -> FunctionSample | None:
    """``{"func": source, "cases": [{"input", "output"}, ...]}`` from the first ```json block (or
    the whole reply); None when it does not parse or has no ``evaluate``. Lines mentioning
    ``download`` or ``requests`` are dropped, as the reference does."""
    m = _JSON_BLOCK.search(reply)
    text = m.group(1) if m else reply
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, TypeError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("func"), str):
        return None
    src = _drop_banned(data["func"].replace("\\n", "\n"))
    if "def evaluate" not in src:
        return None
    cases = []
    for c in data.get("cases") or []:
        if isinstance(c, dict) and isinstance(c.get("input"), str) and isinstance(c.get("output"), bool):
            cases.append((c["input"], c["output"]))
    return FunctionSample(src, cases)


def _drop_banned(src: str) -> str:
    return "\n".join(line for line in src.splitlines() if not _BANNED_LINE.search(line))


def parse_function_code(reply: str) -> str | None:
    """The source of ``evaluate`` from a code-only reply (``autoif.requests=split``): the first
    fenced block, or the whole reply; None without ``def evaluate``. Banned lines dropped as above."""
    m = _FENCE.search(reply)
    src = _drop_banned((m.group(1) if m else reply).strip("\n"))
    if "def evaluate" not in src:
        return None
    return src.rstrip() + "\n"


def parse_case(reply: str, limit: int = 1000) -> str | None:
    """A test-case text from a text-only reply: fences and one pair of enclosing quotes taken off;
    None when empty or longer than ``limit`` characters."""
    m = _FENCE.search(reply)
    text = (m.group(1) if m else reply).strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    return text if text and len(text) <= limit else None


def call_key(func: str, text: str) -> str:
    """The cache key of one (function, input) call."""
    return hashlib.sha256(func.encode()).hexdigest()[:16] + ":" + hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class Verdicts:
    """What running functions on inputs gave: ``results[(func, input)]`` is True/False, or None for
    an error, a timeout or a result that is not a bool (each counted by kind in ``failures``)."""

    results: dict[tuple[str, str], bool | None] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)


def run_functions(pool, funcs: Sequence[str], inputs: Sequence[str], cache: dict[str, bool | None] | None = None) -> Verdicts:
    """Every function on every input through the sandbox pool (``spar.sandbox.Pool``), cached by
    (sha256 of the function, sha256 of the input)."""
    cache = {} if cache is None else cache
    out = Verdicts()
    todo = [(f, x) for f in funcs for x in inputs if call_key(f, x) not in cache]
    for (f, x), r in zip(todo, pool.run([(f, "evaluate", [x]) for f, x in todo])):
        if r.ok and isinstance(r.value, bool):
            cache[call_key(f, x)] = r.value
        else:
            kind = "not a bool" if r.ok else (r.error or "error").split(":")[0][:40]
            out.failures[kind] = out.failures.get(kind, 0) + 1
            cache[call_key(f, x)] = None
    for f in funcs:
        for x in inputs:
            out.results[(f, x)] = cache[call_key(f, x)]
    return out


@dataclass
class Validated:
    functions: list[tuple[str, float]]  # kept functions and their accuracy, best first
    cases: list[tuple[str, bool]]  # kept cases
    reason: str | None = None  # why the instruction was dropped; None = kept


def cross_validate(samples: Sequence[FunctionSample], verdicts: Verdicts,
                   cfg: CrossValidation = CrossValidation()) -> Validated:
    """The cross-validation filter of one instruction (spec section 5)."""
    funcs = list(dict.fromkeys(s.func for s in samples))
    cases = list(dict.fromkeys(c for s in samples for c in s.cases))
    if len(funcs) < cfg.min_functions or len(cases) < cfg.min_cases:
        return Validated([], [], f"too few functions or cases ({len(funcs)} functions, {len(cases)} cases)")

    def right(f: str, case: tuple[str, bool]) -> bool:
        return verdicts.results.get((f, case[0])) is case[1]

    if cfg.rules == "code":
        kept_cases = [c for c in cases if any(right(f, c) for f in funcs)]
        scored = [(f, sum(right(f, c) for c in kept_cases) / len(kept_cases)) for f in funcs] if kept_cases else []
        kept = [(f, a) for f, a in scored if a >= cfg.function_accuracy]
    else:
        kept_cases = [c for c in cases if sum(right(f, c) for f in funcs) / len(funcs) > 0.5]
        scored = [(f, sum(right(f, c) for c in cases) / len(cases)) for f in funcs]
        kept = [(f, a) for f, a in scored if a > 0.5]
        if not kept_cases:
            kept = []
    kept.sort(key=lambda fa: -fa[1])
    if not kept:
        return Validated([], kept_cases, "no function passes the cases")
    return Validated(kept, kept_cases)


def back_translation_keeps(labels: Sequence[str]) -> bool:
    """Drop the instruction when any back-translated instruction contradicts it (spec section 6)."""
    return bool(labels) and "contradiction" not in labels


def pass_rate(verdicts: Sequence[bool | None]) -> float:
    """The share of the instruction's functions a response passes; errors are left out of the
    denominator; 0 when nothing came back (spec section 8)."""
    got = [int(v) for v in verdicts if v is not None]
    return sum(got) / len(got) if got else 0.0


def sample_pairs(responses: Sequence[tuple[str, float]], seed: Any, positive: float = 0.5) -> list[tuple[str, str]]:
    """(chosen, rejected) pairs of one input from (response, pass rate): positives at rate >=
    ``positive``, negatives at 0; with two or more on either side up to 2 x 2 pairs, else 1 x 1
    (spec section 11, the reference code's sampling)."""
    rng = random.Random(str(seed))
    pos = [r for r, rate in responses if rate >= positive]
    neg = [r for r, rate in responses if rate == 0]
    if not pos or not neg:
        return []
    if len(pos) >= 2 or len(neg) >= 2:
        pos, neg = rng.sample(pos, min(2, len(pos))), rng.sample(neg, min(2, len(neg)))
    else:
        pos, neg = pos[:1], neg[:1]
    return [(p, n) for p in pos for n in neg]
