"""LLMBar, pointwise (as the SPaR paper uses it): each pair gives two items; the better output
should be judged as following the instruction and the other as not. Accuracy and F1 (positive
class = "follows") per subset. An undecided judgment (tie or all abstentions) counts as wrong.
Several vote counts come from one sampling: the verdict at k votes is the majority of the first k
samples (the paper's Table 9 varies k the same way).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from spar.io import DataError
from spar.llm import Backend
from spar.roles.judge import majority
from spar.roles.templates import judge_chat, parse_judgement
from spar.settings import JudgeSettings

SUBSETS = ["Natural", "Adversarial/Neighbor", "Adversarial/GPTInst", "Adversarial/GPTOut", "Adversarial/Manual"]


@dataclass
class Item:
    subset: str
    instruction: str
    response: str
    gold: bool
    id: str = ""  # SUBSET:PAIR:OUTPUT, stable whatever --limit is


def load_llmbar(root: str | Path, limit: int | None = None) -> list[Item]:
    items = []
    for sub in SUBSETS:
        path = Path(root) / sub / "dataset.json"
        if not path.exists():
            raise DataError(f"{path}: no such file (pass --data pointing at LLMBar's Dataset/LLMBar folder)")
        try:
            rows = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
        for k, row in enumerate(rows[:limit] if limit else rows):
            if row.get("label") not in (1, 2):
                raise DataError(f"{path}: pair {k} has label {row.get('label')!r}, expected 1 or 2")
            for j in (1, 2):
                items.append(Item(sub, row["input"], row[f"output_{j}"], row["label"] == j, f"{sub}:{k}:{j}"))
    return items


def metrics(golds: list[bool], preds: list[bool | None]) -> dict[str, float]:
    n = len(golds)
    acc = sum(p is g for g, p in zip(golds, preds)) / n
    tp = sum(g and p is True for g, p in zip(golds, preds))
    fp = sum((not g) and p is True for g, p in zip(golds, preds))
    fn = sum(g and p is not True for g, p in zip(golds, preds))
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return {"accuracy": round(100 * acc, 2), "f1": round(100 * f1, 2), "items": n,
            "undecided": sum(p is None for p in preds)}


def _summary(items: list[Item], preds: list[bool | None]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for sub in SUBSETS:
        idx = [i for i, it in enumerate(items) if it.subset == sub]
        if idx:
            out[sub] = metrics([items[i].gold for i in idx], [preds[i] for i in idx])
    adv = [s for s in out if s.startswith("Adversarial")]
    if adv:
        out["Adversarial (mean)"] = {k: round(sum(out[s][k] for s in adv) / len(adv), 2) for k in ("accuracy", "f1")}
    present = [s for s in SUBSETS if s in out]
    out["Overall (mean of subsets)"] = {k: round(sum(out[s][k] for s in present) / len(present), 2) for k in ("accuracy", "f1")}
    return out


def judge_replies(backend: Backend, items: list[Item], cfg: JudgeSettings, seed: int = 0, on_batch=None,
                  replies_path: str | Path | None = None, show: bool = True) -> list[list[str]]:
    """``cfg.votes`` judge replies per item (greedy when it is 1), in one batched call; with
    ``replies_path`` they are appended there chunk by chunk, and a rerun asks only for the rest (the
    backends seed each request from itself, so the resumed replies are the ones a whole run gives)."""
    chats = [judge_chat(it.instruction, it.response) for it in items]
    if replies_path is None:
        return backend.generate(chats, cfg.sampling(seed), on_batch=on_batch)
    from spar.generate import generate_file
    from spar.types import Prompt

    prompts = [Prompt(id=it.id, messages=c, source="llmbar") for it, c in zip(items, chats)]
    return [r.completions for r in generate_file(backend, prompts, replies_path, cfg.sampling(seed), chunk=32, show=show)]


def scores_at(items: list[Item], votes: list[list[bool | None]], k: int) -> dict:
    """Accuracy and F1 per subset when each item's verdict is the majority of its first ``k`` votes,
    and the share of those votes that could not be parsed (an abstention, never a guess)."""
    firsts = [v[:k] for v in votes]
    out = _summary(items, [majority(v) for v in firsts])
    n = sum(len(v) for v in firsts)
    out["unparseable"] = round(100 * sum(x is None for v in firsts for x in v) / n, 2) if n else 0.0
    return out


def evaluate_llmbar(backend: Backend, items: list[Item], cfg: JudgeSettings, ks: list[int] | None = None,
                    on_batch=None, replies_path: str | Path | None = None) -> tuple[dict[int, dict], list[dict]]:
    """Scores for each number of votes in ``ks`` from one set of ``max(ks)`` samples per item (the
    first k of them), and one outcome row per item (its replies, votes and gold label)."""
    ks = sorted(set(ks or [cfg.votes]))
    replies = judge_replies(backend, items, cfg.but(votes=max(ks)), on_batch=on_batch, replies_path=replies_path)
    votes = [[parse_judgement(r) for r in rs] for rs in replies]
    rows = [{"item": i, "subset": it.subset, "gold": it.gold, "votes": v, "replies": rs}
            for i, (it, v, rs) in enumerate(zip(items, votes, replies))]
    return {k: scores_at(items, votes, k) for k in ks}, rows
