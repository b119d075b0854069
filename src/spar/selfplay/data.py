"""Training data from trees: DPO pairs for the actor, RFT examples for the refiner, and run stats.

Similarity is rapidfuzz's ``fuzz.ratio`` / 100: the normalised Indel similarity of the two texts
(1 = identical). The paper reports 0.90 for refined pairs vs 0.85 for independent samples. The
guard's similarity (:mod:`spar.roles.guard`) folds case first; the stats report the plain ratio,
comparable with the paper's.

Every pair carries its quality in ``origin`` (similarity, length ratio, machinery found, the
guard's reasons), and a pair whose chosen answer fails the guard against the rejected one is
dropped and counted: a checker-approved chosen answer that no longer does the task teaches DPO
to leave the task.
"""

from __future__ import annotations

import itertools
import random
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from spar.roles.guard import REASONS, GuardConfig
from spar.settings import RFTSettings
from spar.roles.guard import check as guard_check
from spar.roles.templates import judge_chat, refine_chat
from spar.types import JudgedSample, Message, PreferencePair, Prompt, SFTRow, Tree


def similarity(a: str, b: str) -> float:
    from rapidfuzz import fuzz

    return fuzz.ratio(a, b) / 100.0


def pair_quality(rejected: str, chosen: str, guard: GuardConfig | None) -> dict:
    """What ``origin`` records of a pair: plain similarity (the paper's figure), the guard's case-folded
    similarity, length ratio chosen/rejected, machinery found in the chosen answer, the guard's reasons
    (empty with the guard off: the pair is kept either way then)."""
    v = guard_check(rejected, chosen, guard or GuardConfig())
    return {"similarity": round(similarity(rejected, chosen), 4), "guard_similarity": round(v.similarity, 4),
            "length_ratio": round(v.length_ratio, 4), "machinery": v.machinery,
            "guard": list(v.reasons) if guard is not None else []}


def dpo_pairs(trees: Sequence[Tree], prompts: dict[str, Prompt],
              guard: GuardConfig | None = GuardConfig()) -> tuple[list[PreferencePair], list[dict]]:
    """rejected = the actor's failed answer (root), chosen = the accepted refinement.

    Returns the pairs and the dropped ones (``origin`` dicts of pairs whose chosen answer failed the
    guard against the rejected answer; a solution deep in a tree can drift from the root by steps
    each of which passed against its parent)."""
    out, dropped = [], []
    for t in trees:
        if not t.solved or t.solution is None:
            continue
        root, sol = t.nodes[t.root], t.nodes[t.solution]
        origin = {"tree": t.id, "strategy": t.strategy, "depth": sol.depth,
                  **pair_quality(root.response, sol.response, guard)}
        if origin["guard"]:
            dropped.append(origin)
            continue
        out.append(PreferencePair(
            prompt=prompts[t.prompt_id].messages,
            chosen=[Message(role="assistant", content=sol.response)],
            rejected=[Message(role="assistant", content=root.response)],
            origin=origin,
        ))
    return out, dropped


def rft_examples(trees: Sequence[Tree], judged: Sequence[JudgedSample], prompts: dict[str, Prompt],
                 cfg: RFTSettings = RFTSettings(), pairs: Sequence[PreferencePair] | None = None,
                 seed: int = 0, fmt: str = "rewrite") -> list[dict]:
    """Conversational SFT rows ``{"messages": [...], "origin": ...}`` for the refiner (its refine
    chats in the search's reply format ``fmt``, the format its replies were written in).

    - refinement: the refine chat of the solution's parent (with the parent's judgment) -> the
      reply that produced the solution (only trees whose pair is in ``pairs``, when given: the
      refiner learns no edit whose pair the guard dropped);
    - judgment: prompt + answer -> a rationale from a vote that agrees with the majority (from
      negative collection and from tree nodes); checker-written rationales and undecided labels
      are not used. Yes/no are balanced to ``cfg.balance``; duplicates are dropped.
    """
    rng = random.Random(seed)
    refine_rows, seen = [], set()
    kept = None if pairs is None else {p.origin.get("tree") for p in pairs}
    for t in trees:
        if not t.solved or t.solution is None or (kept is not None and t.id not in kept):
            continue
        sol = t.nodes[t.solution]
        parent = t.nodes[sol.parent] if sol.parent is not None else None
        if parent is None or not sol.reply or parent.judgment is None:
            continue
        chat = refine_chat(prompts[t.prompt_id].text, parent.response, parent.judgment.rationale, fmt)
        key = (t.prompt_id, parent.response, sol.reply)
        if key not in seen:
            seen.add(key)
            refine_rows.append(SFTRow.of(chat, sol.reply, {"kind": "refinement", "tree": t.id}))
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
        row = SFTRow.of(chat, j.rationale, {"kind": "judgment", "label": j.follows, "prompt": pid})
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


def _mean(xs: Sequence[float]) -> float | None:
    return round(statistics.fmean(xs), 4) if xs else None


def _quartiles(xs: Sequence[float]) -> list[float] | None:
    """min, 25%, median, 75%, max."""
    if not xs:
        return None
    q = statistics.quantiles(xs, n=4, method="inclusive") if len(xs) > 1 else [xs[0]] * 3
    return [round(v, 4) for v in (min(xs), *q, max(xs))]


@dataclass
class SearchStats:
    trees: int
    solved: int
    success_rate: float
    mean_expanded_solved: float | None  # expanded nodes per solved tree (paper: 3.4-4.3)
    mean_solution_depth: float | None
    refined_pair_similarity: float | None  # mean over the pairs kept
    independent_pair_similarity: float | None  # two independent samples of the same prompt
    refinements: int = 0  # nodes below the roots
    judged_yes: int = 0  # refinements the judge accepted, faithful or not
    guard_rejected: dict[str, int] | None = None  # refinements failing each guard test (a node may fail several)
    guard_rejected_judged_yes: int = 0  # accepted by the judge but not faithful: what the guard stopped
    pairs: int = 0
    pairs_dropped: int = 0  # solved trees whose chosen answer failed the guard against the root
    pair_similarity_quartiles: list[float] | None = None  # min, 25%, median, 75%, max over the pairs kept
    pair_length_ratio_quartiles: list[float] | None = None  # chosen / rejected length
    pairs_with_machinery: int = 0  # among the pairs kept (0 unless the guard is off)

    def as_dict(self) -> dict:
        return asdict(self)


def search_stats(trees: Sequence[Tree], judged: Sequence[JudgedSample] = (),
                 pairs: Sequence[PreferencePair] | None = None, dropped: Sequence[dict] = ()) -> SearchStats:
    """Tree, guard and pair-quality figures; pairs default to every solved tree's (root, solution)."""
    solved = [t for t in trees if t.solved]
    quality = ([p.origin for p in pairs] if pairs is not None else
               [pair_quality(t.nodes[t.root].response, t.nodes[t.solution].response, None) for t in solved
                if t.solution is not None])
    sims, ratios = [q["similarity"] for q in quality], [q["length_ratio"] for q in quality]
    by_prompt: dict[str, list[str]] = {}
    for j in judged:
        by_prompt.setdefault(j.id, []).append(j.response)
    indep = [similarity(a, b) for resp in by_prompt.values() for a, b in itertools.combinations(resp, 2)]
    kids = [n for t in trees for n in t.nodes if n.parent is not None]
    yes = [n for n in kids if n.judgment is not None and n.judgment.value > 0.5]
    return SearchStats(
        trees=len(trees), solved=len(solved), success_rate=round(len(solved) / len(trees), 4) if trees else 0.0,
        mean_expanded_solved=_mean([t.expanded for t in solved]),
        mean_solution_depth=_mean([t.nodes[t.solution].depth for t in solved if t.solution is not None]),
        refined_pair_similarity=_mean(sims), independent_pair_similarity=_mean(indep),
        refinements=len(kids), judged_yes=len(yes),
        guard_rejected={r: sum(r in n.guard for n in kids) for r in REASONS},
        guard_rejected_judged_yes=sum(not n.faithful for n in yes),
        pairs=len(sims), pairs_dropped=len(dropped),
        pair_similarity_quartiles=_quartiles(sims), pair_length_ratio_quartiles=_quartiles(ratios),
        pairs_with_machinery=sum(q["machinery"] is not None for q in quality),
    )
