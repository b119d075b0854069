"""Negative collection: the actor samples K answers per prompt, the judge labels each, and a prompt
with failed answers gives its negatives (tree roots). All judgments are kept: they are judge
training data too."""

from __future__ import annotations

import random
from collections.abc import Sequence

from spar.settings import NegativesSettings
from spar.types import JudgedSample, Negative, Prompt


def pick_negatives(prompts: Sequence[Prompt], judged: Sequence[JudgedSample], cfg: NegativesSettings = NegativesSettings(),
                   seed: int = 0) -> list[Negative]:
    """Failed answers (label False; undecided ones are never used) chosen per prompt, deterministically."""
    by_prompt: dict[str, list[JudgedSample]] = {}
    for j in judged:
        if j.judgment.follows is False:
            by_prompt.setdefault(j.id, []).append(j)
    out = []
    for p in prompts:
        failed = sorted(by_prompt.get(p.id, []), key=lambda j: j.index)
        if not failed:
            continue
        if cfg.per_prompt == "all":
            chosen = failed
        else:
            m = 1 if cfg.per_prompt == "one" else int(cfg.per_prompt)
            rng = random.Random(f"{seed}:{p.id}")
            chosen = sorted(rng.sample(failed, min(m, len(failed))), key=lambda j: j.index)
        out += [Negative(prompt=p, index=j.index, response=j.response, judgment=j.judgment) for j in chosen]
    return out
