"""A learning-rate sweep: the same DPO pairs trained at several learning rates from the same start,
each model scored on held-out prompts by the checkers, with what shows movement (answers that
changed, their similarity to the base model's) and what shows collapse (length, lexical variety,
empty or looping answers). The paper's 2e-7 is for an 8B model; this finds what moves a small one.

Resumable by point: a finished learning rate leaves ``lr-<value>/point.json`` and is not redone.
"""

from __future__ import annotations

import json
import re
import shutil
import statistics
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from spar.io import DataError, read_jsonl, write_text
from spar.settings import EvalSettings, TrainSettings
from spar.types import Completion


@dataclass
class SweepSettings:
    learning_rates: list[float] = field(default_factory=lambda: [1e-6, 1e-5, 5e-5])
    epochs: float = 1.0
    batch_size: int = 2
    grad_accum: int = 2
    max_length: int = 768
    beta: float = 0.1
    sft_weight: float = 0.1
    seed: int = 0
    max_new_tokens: int = 256


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def collapse_signs(responses: list[str]) -> dict:
    """Length, lexical variety (distinct bigrams over all bigrams, pooled), and the share of empty
    answers and of answers that loop (a 4-gram said three times or more)."""
    words = [_words(r) for r in responses]
    bigrams = [tuple(w[i:i + 2]) for w in words for i in range(len(w) - 1)]
    loops = sum(1 for w in words if w and max(Counter(tuple(w[i:i + 4]) for i in range(max(1, len(w) - 3))).values()) >= 3)
    n = len(responses) or 1
    return {"mean_words": round(statistics.fmean(len(w) for w in words), 1) if words else 0.0,
            "distinct_2": round(len(set(bigrams)) / len(bigrams), 3) if bigrams else 0.0,
            "empty": round(sum(not r.strip() for r in responses) / n, 3), "looping": round(loops / n, 3)}


def movement(base: dict[str, str], now: dict[str, str]) -> dict:
    from spar.roles.guard import similarity

    ids = [i for i in base if i in now]
    sims = [similarity(base[i], now[i]) for i in ids]
    return {"changed": round(sum(base[i] != now[i] for i in ids) / len(ids), 3) if ids else 0.0,
            "mean_similarity_to_base": round(statistics.fmean(sims), 3) if sims else None}


def _answers(path: Path) -> dict[str, str]:
    return {r.id: r.completions[0] for r in read_jsonl(path, Completion)}


def _evaluate(model: str, heldout: Path, out: Path, s: SweepSettings, meta: dict) -> dict:
    from spar.llm import BackendOptions, load_backend
    from spar.stages import run_eval

    backend = load_backend(model, BackendOptions(batch_size=16))
    return run_eval(backend, EvalSettings(max_new_tokens=s.max_new_tokens), "heldout", heldout, None, out, meta, show=True)


def run(out: Path, pairs: Path, heldout: Path, model: str, s: SweepSettings) -> list[dict]:
    from spar.stages import model_path, read_train_rows
    from spar.train import train_dpo

    rows = read_train_rows("dpo", pairs)
    if not rows:
        raise DataError(f"{pairs}: no pairs to train on")
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "settings.json", json.dumps({**asdict(s), "pairs": str(pairs), "heldout": str(heldout), "model": model,
                                                  "n_pairs": len(rows)}, indent=1) + "\n")
    base_dir = out / "base"
    if not (base_dir / "heldout.json").exists():
        _evaluate(model, heldout, base_dir, s, {"model": model, "learning_rate": None})
    base_answers = _answers(base_dir / "heldout.responses.jsonl")
    base_scores = json.loads((base_dir / "heldout.json").read_text())
    points = [{"learning_rate": None, "prompt_strict": base_scores["prompt_strict"], "inst_strict": base_scores["inst_strict"],
               **collapse_signs(list(base_answers.values())), "changed": 0.0, "mean_similarity_to_base": 1.0}]
    for lr in s.learning_rates:
        d = out / f"lr-{lr:g}"
        done = d / "point.json"
        if done.exists():
            points.append(json.loads(done.read_text()))
            continue
        ts = TrainSettings(learning_rate=lr, epochs=s.epochs, batch_size=s.batch_size, grad_accum=s.grad_accum,
                           max_length=s.max_length, beta=s.beta, sft_weight=s.sft_weight, precompute_ref=True,
                           warmup_ratio=0.1)
        if not (d / "heldout.json").exists():
            trained = (d / "model").is_dir() and (d / "train_log.json").exists()  # killed during its evaluation
            path = d / "model" if trained else train_dpo(model_path(model), rows, d, ts, seed=s.seed)[0]
            _evaluate(str(path), heldout, d, s, {"model": model, "learning_rate": lr})
            shutil.rmtree(d / "model", ignore_errors=True)  # the figures and answers are kept, not the weights
        log = json.loads((d / "train_log.json").read_text())["log"]
        steps = [x for x in log if "loss" in x]
        answers = _answers(d / "heldout.responses.jsonl")
        sc = json.loads((d / "heldout.json").read_text())
        point = {"learning_rate": lr, "prompt_strict": sc["prompt_strict"], "inst_strict": sc["inst_strict"],
                 **collapse_signs(list(answers.values())), **movement(base_answers, answers),
                 "first_loss": steps[0]["loss"] if steps else None, "last_loss": steps[-1]["loss"] if steps else None,
                 "last_margin": next((x.get("rewards/margins") for x in reversed(steps) if "rewards/margins" in x), None),
                 "steps": len(steps)}
        write_text(done, json.dumps(point, indent=1) + "\n")
        points.append(point)
    write_text(out / "summary.json", json.dumps(points, indent=1) + "\n")
    return points
