"""IFEval: generate (greedy, chat template) and score strict/loose, prompt/instruction level.

Responses are saved beside the scores so they can be rescored without a model; the scorer also
reads IFEval's own response format (``{"prompt", "response"}`` per line, matched by prompt text).
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from spar.constraints.checkers import check
from spar.io import DataError, iter_json_lines, read_prompts
from spar.types import Prompt


@dataclass
class PromptResult:
    id: str
    strict: list[bool]  # one per instruction
    loose: list[bool]
    kinds: list[str]


@dataclass
class Scores:
    prompt_strict: float  # percentages
    inst_strict: float
    prompt_loose: float
    inst_loose: float
    average: float
    n_prompts: int
    n_instructions: int
    per_type: dict[str, float] = field(default_factory=dict)  # instruction type -> strict accuracy %

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def outcome_rows(results: Sequence[PromptResult]) -> list[dict]:
    """Per-prompt outcomes (what the scores are computed from), one JSONL row each."""
    return [{"id": r.id, "follows_strict": all(r.strict), "follows_loose": all(r.loose), "kinds": r.kinds,
             "strict": r.strict, "loose": r.loose} for r in results]


def _check_kinds(path: str | Path, prompts: Sequence[Prompt]) -> None:
    """Every instruction id has a checker that takes its kwargs, or the file and line are named
    before anything runs."""
    from spar.constraints.checkers import follows, is_verifiable, unknown_kind
    from spar.io import row_lines

    for lineno, p in zip(row_lines(path), prompts):
        for c in p.constraints:
            if not is_verifiable(c.kind):
                raise DataError(f"{path}:{lineno}: {unknown_kind(c.kind)}")
            try:
                follows(c.kind, c.kwargs, "x", prompt=p.text)
            except Exception as e:  # noqa: BLE001 - the checker's own complaint about its kwargs
                raise DataError(f"{path}:{lineno}: kwargs {c.kwargs} do not fit {c.kind}: {type(e).__name__}: {e}") from None


def load_ifeval(path: str | Path | None) -> list[Prompt]:
    """IFEval prompts from a JSONL path, or from the hub (``google/IFEval``) when no path is given."""
    if path is not None:
        prompts = read_prompts(path)
        _check_kinds(path, prompts)
        return prompts
    try:
        from datasets import load_dataset

        ds = load_dataset("google/IFEval", split="train")
    except Exception as e:  # offline, no cache
        raise DataError(f"IFEval data: no --data given and the hub is unreachable ({type(e).__name__}); "
                        "pass --data PATH/input_data.jsonl") from None
    from spar.io import prompt_from_row

    return [prompt_from_row(dict(r)) for r in ds]


def score_one(prompt: Prompt, response: str) -> PromptResult:
    strict, loose = [], []
    for c in prompt.constraints:
        v = check(c.kind, c.kwargs, response, prompt=prompt.text)
        strict.append(v.strict)
        loose.append(v.loose)
    return PromptResult(prompt.id, strict, loose, [c.kind for c in prompt.constraints])


def aggregate(results: Sequence[PromptResult]) -> Scores:
    n = len(results)
    inst = sum(len(r.strict) for r in results)
    if not n or not inst:
        raise DataError("nothing to score: no prompts with instructions")
    by_type: dict[str, list[bool]] = collections.defaultdict(list)
    for r in results:
        for k, s in zip(r.kinds, r.strict):
            by_type[k].append(s)
    pct = lambda x, d: round(100 * x / d, 2)  # noqa: E731
    ps, is_ = pct(sum(all(r.strict) for r in results), n), pct(sum(sum(r.strict) for r in results), inst)
    pl, il = pct(sum(all(r.loose) for r in results), n), pct(sum(sum(r.loose) for r in results), inst)
    return Scores(ps, is_, pl, il, round((ps + is_ + pl + il) / 4, 2), n, inst,
                  {k: pct(sum(v), len(v)) for k, v in sorted(by_type.items())})


def read_responses(path: str | Path, prompts: Sequence[Prompt]) -> dict[str, str]:
    """Prompt id -> response, from spar rows (``{"id", "response"}`` or ``{"id", "completions"}``)
    or IFEval's rows (``{"prompt", "response"}``, matched by prompt text)."""
    by_text = {p.text: p.id for p in prompts}
    ids = {p.id for p in prompts}
    out: dict[str, str] = {}
    first: dict[str, int] = {}
    for lineno, row in iter_json_lines(path):
        if "id" in row and str(row["id"]) in ids:
            pid = str(row["id"])
        elif "prompt" in row and isinstance(row["prompt"], str) and row["prompt"] in by_text:
            pid = by_text[row["prompt"]]
        else:
            raise DataError(f"{path}:{lineno}: response row matches no prompt of the data (by id or prompt text)")
        if "response" in row:
            text = row["response"]
        elif row.get("completions"):
            if not isinstance(row["completions"], list):
                raise DataError(f"{path}:{lineno}: 'completions' must be a list of strings")
            text = row["completions"][0]
        else:
            raise DataError(f"{path}:{lineno}: row has neither 'response' nor 'completions'")
        if not isinstance(text, str):
            raise DataError(f"{path}:{lineno}: response is not a string")
        if pid in first:
            raise DataError(f"{path}:{lineno}: a second response for prompt {pid} (the first is on line {first[pid]}); "
                            "keep one response per prompt")
        first[pid], out[pid] = lineno, text
    return out


def score(prompts: Sequence[Prompt], responses: dict[str, str]) -> tuple[Scores, list[PromptResult]]:
    missing = [p.id for p in prompts if p.id not in responses]
    if missing:
        raise DataError(f"{len(missing)} prompts have no response (first: {missing[0]})")
    results = [score_one(p, responses[p.id]) for p in prompts]
    return aggregate(results), results
