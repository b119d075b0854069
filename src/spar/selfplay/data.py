"""Training data from trees: DPO pairs for the actor, RFT examples for the refiner, and run stats.

Similarity is rapidfuzz's ``fuzz.ratio`` / 100: the normalised Indel similarity of the two texts
(1 = identical). The paper reports 0.90 for refined pairs vs 0.85 for independent samples.
"""

from __future__ import annotations

import itertools
import random
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from spar.roles.templates import judge_chat, refine_chat
from spar.types import JudgedSample, Message, PreferencePair, Prompt, Tree


def similarity(a: str, b: str) -> float:
    from rapidfuzz import fuzz

    return fuzz.ratio(a, b) / 100.0


def dpo_pairs(trees: Sequence[Tree], prompts: dict[str, Prompt]) -> list[PreferencePair]:
    """rejected = the actor's failed answer (root), chosen = the accepted refinement."""
    out = []
    for t in trees:
        if not t.solved or t.solution is None:
            continue
        root, sol = t.nodes[t.root], t.nodes[t.solution]
        out.append(PreferencePair(
            prompt=prompts[t.prompt_id].messages,
            chosen=[Message(role="assistant", content=sol.response)],
            rejected=[Message(role="assistant", content=root.response)],
            origin={"tree": t.id, "strategy": t.strategy, "depth": sol.depth,
                    "similarity": round(similarity(root.response, sol.response), 4)},
        ))
    return out


@dataclass(frozen=True)
class RFTConfig:
    balance: float = 0.5  # share of "yes" among judgment examples (None-free); 0.5 = equal
    refinement_share: float | None = None  # cap refinement examples at this share of all (None = keep all)
    seed: int = 0


def rft_examples(trees: Sequence[Tree], judged: Sequence[JudgedSample], prompts: dict[str, Prompt],
                 cfg: RFTConfig = RFTConfig()) -> list[dict]:
    """Conversational SFT rows ``{"messages": [...], "origin": ...}`` for the refiner.

    - refinement: the refine chat of the solution's parent (with the parent's judgment) -> the
      reply that produced the solution;
    - judgment: prompt + answer -> a rationale from a vote that agrees with the majority (from
      negative collection and from tree nodes); checker-written rationales and undecided labels
      are not used. Yes/no are balanced to ``cfg.balance``; duplicates are dropped.
    """
    rng = random.Random(cfg.seed)
    refine_rows, seen = [], set()
    for t in trees:
        if not t.solved or t.solution is None:
            continue
        sol = t.nodes[t.solution]
        parent = t.nodes[sol.parent] if sol.parent is not None else None
        if parent is None or not sol.reply or parent.judgment is None:
            continue
        chat = refine_chat(prompts[t.prompt_id].text, parent.response, parent.judgment.rationale)
        key = (t.prompt_id, parent.response, sol.reply)
        if key not in seen:
            seen.add(key)
            refine_rows.append({"messages": [m.model_dump() for m in chat] + [{"role": "assistant", "content": sol.reply}],
                                "origin": {"kind": "refinement", "tree": t.id}})
    candidates = [(j.id, j.response, j.judgment) for j in judged]
    candidates += [(t.prompt_id, n.response, n.judgment) for t in trees for n in t.nodes if n.judgment]
    yes, no = [], []
    for pid, response, j in candidates:
        if j.follows is None or not j.rationale or not j.rationale_from_vote:
            continue
        key = (pid, response)
        if key in seen:
            continue
        seen.add(key)
        chat = judge_chat(prompts[pid].text, response)
        row = {"messages": [m.model_dump() for m in chat] + [{"role": "assistant", "content": j.rationale}],
               "origin": {"kind": "judgment", "label": j.follows, "prompt": pid}}
        (yes if j.follows else no).append(row)
    if 0 < cfg.balance < 1 and yes and no:
        # keep the larger class at balance : (1 - balance) of the smaller one
        want_yes = min(len(yes), round(len(no) * cfg.balance / (1 - cfg.balance)))
        want_no = min(len(no), round(len(yes) * (1 - cfg.balance) / cfg.balance))
        yes = rng.sample(yes, want_yes) if want_yes < len(yes) else yes
        no = rng.sample(no, want_no) if want_no < len(no) else no
    judgments = yes + no
    if cfg.refinement_share is not None and judgments:
        cap = round(len(judgments) * cfg.refinement_share / max(1e-9, 1 - cfg.refinement_share))
        refine_rows = refine_rows[:cap]
    rows = refine_rows + judgments
    rng.shuffle(rows)
    return rows


@dataclass
class SearchStats:
    trees: int
    solved: int
    success_rate: float
    mean_expanded_solved: float | None  # expanded nodes per solved tree (paper: 3.4-4.3)
    mean_solution_depth: float | None
    refined_pair_similarity: float | None
    independent_pair_similarity: float | None  # two independent samples of the same prompt

    def as_dict(self) -> dict:
        return asdict(self)


def search_stats(trees: Sequence[Tree], judged: Sequence[JudgedSample] = ()) -> SearchStats:
    solved = [t for t in trees if t.solved]
    sims = [similarity(t.nodes[t.root].response, t.nodes[t.solution].response) for t in solved if t.solution is not None]
    by_prompt: dict[str, list[str]] = {}
    for j in judged:
        by_prompt.setdefault(j.id, []).append(j.response)
    indep = [similarity(a, b) for resp in by_prompt.values() for a, b in itertools.combinations(resp, 2)]
    mean = lambda xs: round(statistics.fmean(xs), 4) if xs else None  # noqa: E731
    return SearchStats(
        trees=len(trees), solved=len(solved), success_rate=round(len(solved) / len(trees), 4) if trees else 0.0,
        mean_expanded_solved=mean([t.expanded for t in solved]),
        mean_solution_depth=mean([t.nodes[t.solution].depth for t in solved if t.solution is not None]),
        refined_pair_similarity=mean(sims), independent_pair_similarity=mean(indep),
    )
