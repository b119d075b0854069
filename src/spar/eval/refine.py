"""Refinement accuracy: how often a refiner turns a failed answer into one that passes.

Failed answers come from a benchmark's responses (an answer the checkers fail) or from a file of
negatives. For each: one greedy refinement, and a tree search at a budget whose judge is the
refiner's own vote (never the benchmark's checkers, which would grade with the answer key; the
checker-backed modes are allowed only for spar's procedural prompts, the training-time setting,
and are labelled). Every result is then scored by the benchmark's checkers, and each refinement's
similarity to its original is reported beside the pass rate: a refiner that rewrites everything
is not one that edits.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from spar.eval.ifeval import score_one
from spar.io import DataError
from spar.llm import Backend
from spar.roles.guard import similarity
from spar.roles.judge import judge
from spar.search.driver import Searcher
from spar.settings import JudgeSettings, SearchSettings
from spar.types import Negative, Prompt, Tree


def passes(prompt: Prompt, response: str) -> bool:
    """The benchmark's verdict: every constraint of the prompt met (strict)."""
    return all(score_one(prompt, response).strict)


def failed_answers(prompts: Sequence[Prompt], responses: dict[str, str]) -> list[tuple[Prompt, str]]:
    """(prompt, answer) for every answer the benchmark's checkers fail, in prompt order."""
    return [(p, responses[p.id]) for p in prompts if p.id in responses and not passes(p, responses[p.id])]


def as_negatives(backend: Backend, failed: Sequence[tuple[Prompt, str]], judge_cfg: JudgeSettings,
                 seed: int = 0) -> list[Negative]:
    """Roots for the search, each with the refiner's own judgment of the failed answer (its reasons
    are what the refiner is asked to fix)."""
    js = judge(backend, [p for p, _ in failed], [r for _, r in failed], judge_cfg, seed=seed)
    return [Negative(prompt=p, index=0, response=r, judgment=j) for (p, r), j in zip(failed, js)]


def _final(tree: Tree) -> tuple[str, bool]:
    """What a search returns: the accepted refinement, or the original where none was accepted."""
    by_id = {n.id: n for n in tree.nodes}
    if tree.solution is not None:
        return by_id[tree.solution].response, True
    return by_id[tree.root].response, False


def _greedy_child(tree: Tree) -> str | None:
    kids = [n for n in tree.nodes if n.parent == tree.root]
    return kids[0].response if kids else None


def evaluate_refinement(backend: Backend, negatives: Sequence[Negative], judge_cfg: JudgeSettings,
                        search: SearchSettings, seed: int = 0) -> tuple[dict, list[dict]]:
    """Scores and one row per failed answer: the greedy refinement and the search's result, each
    with its benchmark verdict and its similarity to the original."""
    unscorable = [n for n in negatives if not n.prompt.constraints]
    if unscorable:
        raise DataError(f"{len(unscorable)} failed answers have no checkable constraint (e.g. {unscorable[0].key})")
    greedy_trees = Searcher(backend, judge_cfg, search.but(strategy="greedy", budget=1, guard=False), seed).run(negatives)
    trees = Searcher(backend, judge_cfg, search, seed).run(negatives)
    rows = []
    for n, g, t in zip(negatives, greedy_trees, trees):
        g_text = _greedy_child(g)
        final, accepted = _final(t)
        rows.append({
            "id": n.key, "original": n.response,
            "greedy": g_text, "greedy_passes": g_text is not None and passes(n.prompt, g_text),
            "greedy_similarity": None if g_text is None else round(similarity(n.response, g_text), 3),
            "search": final, "search_accepted": accepted, "search_passes": accepted and passes(n.prompt, final),
            "search_similarity": round(similarity(n.response, final), 3) if accepted else None,
            "search_nodes": len(t.nodes) - 1,
        })
    n = len(rows)

    def share(key: str) -> float:
        return round(100 * sum(bool(r[key]) for r in rows) / n, 2) if n else 0.0

    def mean(key: str) -> float | None:
        vals = [r[key] for r in rows if r[key] is not None]
        return round(statistics.fmean(vals), 3) if vals else None

    scores = {
        "failed_answers": n,
        "greedy": {"pass": share("greedy_passes"), "replied": sum(r["greedy"] is not None for r in rows),
                   "mean_similarity": mean("greedy_similarity")},
        search.strategy: {"pass": share("search_passes"), "accepted_by_judge": share("search_accepted"),
                          "accepted_but_failing": sum(r["search_accepted"] and not r["search_passes"] for r in rows),
                          "mean_similarity": mean("search_similarity"), "budget": search.budget,
                          "mean_nodes": round(statistics.fmean(r["search_nodes"] for r in rows), 2) if n else 0.0},
        "judge": judge_cfg.mode,
    }
    return scores, rows


def check_judge(mode: str, source: str) -> None:
    """The checkers are the answer key of a benchmark: a search judged by them grades itself."""
    if mode != "llm" and source != "procedural":
        raise DataError(f"judge mode {mode!r} uses the benchmark's own checkers to judge the search on {source}; "
                        "use --judge-mode llm (the refiner's vote), or a procedural set where the checkers are the "
                        "training-time judge")


def search_at_inference(refiner: Backend, prompts: Sequence[Prompt], answers: dict[str, str], judge_cfg: JudgeSettings,
                        search: SearchSettings, seed: int = 0) -> tuple[dict[str, str], list[dict], dict]:
    """Tree search at inference time: the refiner judges each answer; an answer it rejects is
    searched from, and replaced only by a node the judge accepted. Returns the final answers, one
    row per prompt, and the search's spend."""
    import time

    t0 = time.perf_counter()
    judged = as_negatives(refiner, [(p, answers[p.id]) for p in prompts if p.id in answers], judge_cfg, seed)
    negatives = [n for n in judged if n.judgment.follows is False]
    searcher = Searcher(refiner, judge_cfg, search, seed)
    trees = {t.prompt_id: t for t in searcher.run(negatives)}
    final, rows = dict(answers), []
    for n in judged:
        t = trees.get(n.prompt.id)
        text, accepted = _final(t) if t is not None else (n.response, False)
        final[n.prompt.id] = text
        rows.append({"id": n.prompt.id, "judged": {True: "yes", False: "no", None: "undecided"}[n.judgment.follows],
                     "searched": t is not None, "replaced": accepted, "nodes": len(t.nodes) - 1 if t else 0,
                     "original": n.response, "final": text})
    spend = {"seconds": round(time.perf_counter() - t0, 1), "judged_answers": len(judged), "searched": len(negatives),
             "replaced": sum(r["replaced"] for r in rows), "nodes": sum(r["nodes"] for r in rows),
             "refiner_calls": searcher.calls + (1 if judge_cfg.needs_model else 0)}
    return final, rows, spend
