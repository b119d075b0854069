"""Self-Rewarding and Meta-Rewarding, the rules (``../shared/specs/self_rewarding.md``, A and B).

- **Scores**: each answer is judged ``samples`` times with the five-point prompt
  (``templates.REWARD``); its score is the mean of the parsed scores. A reply without a score is an
  abstention: counted, never a score. An answer with no parsed score is unscored. With the verifier
  judge the score is 5 x the share of the prompt's checkable constraints the answer meets.
- **Actor pairs**: per prompt, among scored answers (exact duplicates dropped; at least two needed):
  Self-Rewarding takes the highest against the lowest (a tie between several at the top or bottom
  is broken at random, seeded); equal top and bottom scores drop the prompt. Meta-Rewarding's
  length control with ``rho``: chosen = the shortest answer scoring at least
  ``S_max - rho (S_max - S_min)``, rejected = the longest scoring at most ``S_min + rho (S_max - S_min)``.
- **Judge pairs** (Meta-Rewarding): per prompt, the answer whose judgments' scores vary most; every
  two of its judgments are compared by the meta-judge in both orders; wins are weighted against
  position bias (a first-position win counts ``w1 = wins_2nd / (wins_1st + wins_2nd)``, a
  second-position win ``w2 = wins_1st / (...)``, counted over the whole iteration); Bradley-Terry
  strengths from the weighted battle matrix pick the best and the worst judgment. A pair is dropped
  when they tie, or when the chosen judgment is longer than ``judge_max_chars``.
"""

from __future__ import annotations

import itertools
import math
import random
import statistics
from collections.abc import Sequence

from spar.constraints.checkers import follows, is_verifiable
from spar.roles.templates import reward_chat
from spar.selfplay.data import pair_quality
from spar.settings import GuardConfig
from spar.types import Message, MetaJudged, PreferencePair, Prompt, Scored


def verifier_score(prompt: Prompt, response: str) -> float | None:
    """5 x the share of the prompt's checkable constraints met; None when it has none to check."""
    checks = [follows(c.kind, c.kwargs, response, prompt=prompt.text) for c in prompt.constraints if is_verifiable(c.kind)]
    return round(5.0 * sum(checks) / len(checks), 4) if checks else None


def mean_score(scores: Sequence[float | None]) -> float | None:
    parsed = [s for s in scores if s is not None]
    return round(statistics.fmean(parsed), 4) if parsed else None


def _by_prompt(scored: Sequence[Scored]) -> dict[str, list[Scored]]:
    out: dict[str, list[Scored]] = {}
    for s in scored:
        out.setdefault(s.id, []).append(s)
    return out


def actor_pairs(prompts: dict[str, Prompt], scored: Sequence[Scored], rho: float | None, seed: int,
                guard: GuardConfig | None) -> tuple[list[PreferencePair], dict[str, int]]:
    """(chosen, rejected) answers per prompt; ``rho=None`` is Self-Rewarding's rule, a number
    Meta-Rewarding's length control. With ``chosen_guard`` the guard looks at the chosen answer
    alone (machinery): two independent samples are not meant to be similar."""
    counts = {"prompts": 0, "unscored_answers": 0, "abstentions": 0, "too_few_scored": 0, "ties": 0, "pairs": 0,
              "guard_dropped": 0}
    out = []
    for pid, rows in _by_prompt(scored).items():
        counts["prompts"] += 1
        counts["abstentions"] += sum(x is None for r in rows for x in r.scores)
        counts["unscored_answers"] += sum(r.score is None for r in rows)
        seen, cands = set(), []
        for r in sorted(rows, key=lambda r: r.index):
            if r.score is not None and r.response not in seen:
                seen.add(r.response)
                cands.append(r)
        if len(cands) < 2:
            counts["too_few_scored"] += 1
            continue
        top, bottom = max(c.score for c in cands), min(c.score for c in cands)
        if top == bottom:
            counts["ties"] += 1
            continue
        rng = random.Random(f"{seed}:{pid}")
        if rho is None:
            chosen = rng.choice([c for c in cands if c.score == top])
            rejected = rng.choice([c for c in cands if c.score == bottom])
        else:
            span = top - bottom
            chosen = min((c for c in cands if c.score >= top - rho * span), key=lambda c: (len(c.response), c.index))
            rejected = max((c for c in cands if c.score <= bottom + rho * span), key=lambda c: (len(c.response), -c.index))
        origin = {"kind": "actor", "prompt": pid, "chosen_index": chosen.index, "rejected_index": rejected.index,
                  "chosen_score": chosen.score, "rejected_score": rejected.score, "rho": rho,
                  **pair_quality(rejected.response, chosen.response, guard)}
        if origin["guard"]:
            counts["guard_dropped"] += 1
            continue
        counts["pairs"] += 1
        out.append(PreferencePair(prompt=prompts[pid].messages, chosen=[Message(role="assistant", content=chosen.response)],
                                  rejected=[Message(role="assistant", content=rejected.response)], origin=origin))
    return out, counts


def chosen_guard(guard: GuardConfig | None) -> GuardConfig | None:
    """The guard for pairs of independent samples: the chosen answer must be free of prompt
    machinery; similarity and length are not asked of two answers written apart (they are recorded)."""
    return None if guard is None else GuardConfig(min_similarity=0.0, max_length_ratio=float("inf"),
                                                  machinery=guard.machinery)


def most_uncertain(rows: Sequence[Scored], seed: int) -> Scored | None:
    """The answer whose judgments' parsed scores vary most (at least two different judgment texts
    with a score); ties at random, seeded. None when no answer has two such judgments."""
    best, best_var = [], 0.0
    for r in rows:
        texts = {rep for rep, s in zip(r.replies, r.scores) if s is not None}
        parsed = [s for s in r.scores if s is not None]
        if len(texts) < 2:
            continue
        var = statistics.pvariance(parsed)
        if not best or var > best_var + 1e-12:
            best, best_var = [r], var
        elif abs(var - best_var) <= 1e-12:
            best.append(r)
    if not best:
        return None
    return random.Random(f"{seed}:{best[0].id}").choice(best)


def judgments_of(row: Scored) -> list[str]:
    """The distinct judgment texts that carry a score, in order: the players of the meta-judge."""
    out: list[str] = []
    for rep, s in zip(row.replies, row.scores):
        if s is not None and rep not in out:
            out.append(rep)
    return out


def comparisons(n: int) -> list[tuple[int, int]]:
    """Every ordered pair (first shown, second shown) of n judgments: both orders of each two."""
    return [(m, k) for m, k in itertools.permutations(range(n), 2)]


def position_weights(rows: Sequence[MetaJudged]) -> tuple[float, float]:
    """(w1, w2): the weight of a win in first and in second position, from all outcomes given."""
    first = sum(o == 1 for r in rows for o in r.outcomes)
    second = sum(o == -1 for r in rows for o in r.outcomes)
    if first + second == 0:
        return 0.0, 0.0
    return second / (first + second), first / (first + second)


def battle_matrix(row: MetaJudged, w1: float, w2: float) -> list[list[float]]:
    """B[m][n]: judgment m's weighted wins over n, as first (outcome +1) and as second (outcome -1)."""
    n = len(row.judgments)
    b = [[0.0] * n for _ in range(n)]
    for (first, second), o in zip(row.pairs, row.outcomes):
        if o == 1:
            b[first][second] += w1
        elif o == -1:
            b[second][first] += w2
    return b


def bradley_terry(b: list[list[float]], iters: int = 500, prior: float = 0.01) -> list[float]:
    """Strengths eps (sum 0) maximising sum B[m][n] log sigmoid(eps_m - eps_n), by Hunter's MM
    updates; ``prior`` adds that many wins of every player over every other, so that an unbeaten
    or winless player keeps a finite strength."""
    n = len(b)
    w = [[b[m][k] + (prior if m != k else 0.0) for k in range(n)] for m in range(n)]
    p = [1.0] * n
    for _ in range(iters):
        new = []
        for m in range(n):
            wins = sum(w[m][k] for k in range(n) if k != m)
            denom = sum((w[m][k] + w[k][m]) / (p[m] + p[k]) for k in range(n) if k != m)
            new.append(wins / denom if denom > 0 else p[m])
        g = math.exp(sum(math.log(x) for x in new) / n)
        p = [x / g for x in new]
    return [math.log(x) for x in p]


def judge_pairs(prompts: dict[str, Prompt], rows: Sequence[MetaJudged], max_chars: int | None
                ) -> tuple[list[PreferencePair], dict[str, int]]:
    """Judge preference pairs: the prompt is the five-point judge chat, chosen/rejected the best and
    worst judgment by Bradley-Terry strength."""
    w1, w2 = position_weights(rows)
    counts = {"responses": len(rows), "comparisons": sum(len(r.outcomes) for r in rows),
              "unparsed": sum(o == 0 for r in rows for o in r.outcomes),
              "first_wins": sum(o == 1 for r in rows for o in r.outcomes),
              "second_wins": sum(o == -1 for r in rows for o in r.outcomes), "ties": 0, "too_long": 0, "pairs": 0}
    out = []
    for r in rows:
        eps = bradley_terry(battle_matrix(r, w1, w2))
        best = max(range(len(eps)), key=lambda i: (eps[i], -i))
        worst = min(range(len(eps)), key=lambda i: (eps[i], i))
        if eps[best] - eps[worst] < 1e-6:
            counts["ties"] += 1
            continue
        if max_chars is not None and len(r.judgments[best]) > max_chars:
            counts["too_long"] += 1
            continue
        counts["pairs"] += 1
        out.append(PreferencePair(
            prompt=reward_chat(prompts[r.id].text, r.response),
            chosen=[Message(role="assistant", content=r.judgments[best])],
            rejected=[Message(role="assistant", content=r.judgments[worst])],
            origin={"kind": "judge", "prompt": r.id, "index": r.index, "strengths": [round(e, 4) for e in eps],
                    "weights": [round(w1, 4), round(w2, 4)]}))
    return out, counts
