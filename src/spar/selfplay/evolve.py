"""Teacher-driven prompts (the SPaR paper's method): a teacher model evolves a seed task by adding a
sampled main constraint from the taxonomy plus 1-3 others; a second call checks that the result is
consistent and reasonable; failures are dropped and near-copies removed.

The added constraints are ``free`` (only an LLM can judge them): they are written by the teacher,
so no checker is attached.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from spar.constraints.taxonomy import TAXONOMY
from spar.llm import Backend, Sampling
from spar.roles.templates import evolve_chat, evolve_check_chat, parse_judgement, parse_refinement
from spar.types import Constraint, Message, Prompt

CATEGORIES = [(f"{group}/{name}", desc) for group, cats in TAXONOMY.items() for name, desc in cats.items()]


def evolve_prompts(teacher: Backend, seeds: Sequence[str], count: int, seed: int = 0, split: str = "train",
                   near_copy: float = 90.0, max_rounds: int = 4) -> list[Prompt]:
    """Up to ``count`` evolved prompts; asks again (up to ``max_rounds`` times) for what was dropped."""
    from rapidfuzz import fuzz

    rng = random.Random(f"teacher:{split}:{seed}")
    kept: list[Prompt] = []
    for round_ in range(max_rounds):
        need = count - len(kept)
        if need <= 0:
            break
        plans = []
        for _ in range(need):
            main, *others = rng.sample(CATEGORIES, 1 + rng.randint(1, 3))
            plans.append((rng.choice(seeds), main, others))
        replies = teacher.generate([evolve_chat(s, m[0], m[1], o) for s, m, o in plans],
                                   Sampling(temperature=0.7, max_new_tokens=400, seed=seed + round_))
        candidates = [(parse_refinement(r[0]), plan) for r, plan in zip(replies, plans)]
        candidates = [(t, plan) for t, plan in candidates if t]
        checks = teacher.generate([evolve_check_chat(t) for t, _ in candidates],
                                  Sampling(max_new_tokens=300, seed=seed + round_))
        for (text, (_, main, others)), verdict in zip(candidates, checks):
            if parse_judgement(verdict[0]) is not True:
                continue
            if any(fuzz.ratio(text, p.text) >= near_copy for p in kept):
                continue
            cons = [Constraint(kind="free", kwargs={"category": c[0]}, text=c[1]) for c in [main, *others]]
            kept.append(Prompt(id=f"{split}-t{seed}-{len(kept):05d}", messages=[Message(role="user", content=text)],
                               constraints=cons, source=f"teacher:{split}"))
            if len(kept) == count:
                break
    return kept
