"""LLMBar, pointwise (as the SPaR paper uses it): each pair gives two items; the better output
should be judged as following the instruction and the other as not. Accuracy and F1 (positive
class = "follows") per subset. An undecided judgment (tie or all abstentions) counts as wrong.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from spar.io import DataError
from spar.llm import Backend
from spar.roles.judge import judge
from spar.settings import JudgeSettings
from spar.types import Message, Prompt

SUBSETS = ["Natural", "Adversarial/Neighbor", "Adversarial/GPTInst", "Adversarial/GPTOut", "Adversarial/Manual"]


@dataclass
class Item:
    subset: str
    instruction: str
    response: str
    gold: bool


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
                items.append(Item(sub, row["input"], row[f"output_{j}"], row["label"] == j))
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


def evaluate_llmbar(backend: Backend, items: list[Item], cfg: JudgeSettings, on_batch=None) -> dict[str, dict]:
    prompts = [Prompt(id=str(i), messages=[Message(role="user", content=it.instruction)]) for i, it in enumerate(items)]
    judgments = judge(backend, prompts, [it.response for it in items], cfg.but(mode="llm"),
                      on_batch=on_batch)
    preds = [j.follows for j in judgments]
    out: dict[str, dict] = {}
    for sub in SUBSETS:
        idx = [i for i, it in enumerate(items) if it.subset == sub]
        if idx:
            out[sub] = metrics([items[i].gold for i in idx], [preds[i] for i in idx])
    adv = [s for s in out if s.startswith("Adversarial")]
    if adv:
        out["Adversarial (mean)"] = {k: round(sum(out[s][k] for s in adv) / len(adv), 2) for k in ("accuracy", "f1")}
    out["Overall (mean of subsets)"] = {k: round(sum(out[s][k] for s in SUBSETS if s in out) / len([s for s in SUBSETS if s in out]), 2)
                                        for k in ("accuracy", "f1")}
    return out
