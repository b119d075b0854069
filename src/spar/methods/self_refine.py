"""SELF on spar's stages (spec C4): one model answers, judges its answers with its own feedback
(spar's judge prompt and votes), refines each failed answer once (no tree search: that is SPaR's
addition), judges the refinement again, and is fine-tuned (SFT, no preference loss) on the
refinements its own feedback accepts. The refinement must pass the same guard as SPaR's (still the
same answer, no prompt machinery). With ``self_refine.meta_skill`` the accepted refinement replies
(judgment -> refinement chats) are trained too, so the model keeps its feedback-and-refine skill;
with ``self_refine.keep_correct`` answers judged correct at once are targets as well."""

from __future__ import annotations

import json

from spar import stages as S
from spar.io import read_jsonl, read_prompts, write_jsonl, write_text
from spar.methods.base import Context, Method, Stage
from spar.methods.common import JUDGE, NEGATIVES, PROMPTS, SAMPLE, eval_stages, train_stage
from spar.progress import console
from spar.roles.templates import refine_chat
from spar.types import JudgedSample, SFTRow, Tree


def one_refinement(search):
    """SELF's single self-refinement: one greedy refinement, judged once more."""
    return search.but(strategy="greedy", budget=1)


def _refine(ctx: Context) -> None:
    S.run_search(ctx.backend("actor"), ctx.cfg.judge, one_refinement(ctx.cfg.search), ctx.path("negatives.jsonl"),
                 ctx.path("trees.jsonl"), ctx.seed, chunk=max(8, ctx.chunk * 4), show=ctx.show)


def sft_targets(prompts: dict, trees: list[Tree], judged: list[JudgedSample], keep_correct: bool,
                meta_skill: bool) -> tuple[list[dict], dict]:
    """SFT rows: prompt -> accepted refinement (and -> answers accepted at once, with keep_correct),
    plus the refinement chats of the accepted ones (with meta_skill)."""
    rows, seen = [], set()

    def add(pid: str, text: str, kind: str) -> None:
        if (pid, text) not in seen:
            seen.add((pid, text))
            rows.append(SFTRow.of(prompts[pid].messages, text, {"kind": kind, "prompt": pid}))

    accepted = 0
    for t in trees:
        if not t.solved or t.solution is None:
            continue
        accepted += 1
        sol = t.nodes[t.solution]
        add(t.prompt_id, sol.response, "refined")
        parent = t.nodes[sol.parent] if sol.parent is not None else None
        if meta_skill and parent is not None and parent.judgment is not None and sol.reply:
            chat = refine_chat(prompts[t.prompt_id].text, parent.response, parent.judgment.rationale)
            rows.append(SFTRow.of(chat, sol.reply, {"kind": "refinement", "tree": t.id}))
    correct = 0
    if keep_correct:
        for j in judged:
            if j.judgment.follows is True:
                correct += 1
                add(j.id, j.response, "correct")
    stats = {"refined": len(trees), "accepted": accepted, "correct_kept": correct, "rows": len(rows),
             "guard_rejected": sum(1 for t in trees for n in t.nodes if n.guard)}
    return rows, stats


def _targets(ctx: Context) -> None:
    prompts = {p.id: p for p in read_prompts(ctx.path("prompts.jsonl"))}
    s = ctx.cfg.self_refine
    rows, stats = sft_targets(prompts, read_jsonl(ctx.path("trees.jsonl"), Tree), read_jsonl(ctx.path("judgments.jsonl"), JudgedSample),
                              s.keep_correct, s.meta_skill)
    write_jsonl(ctx.path("sft.jsonl"), rows)
    write_text(ctx.path("stats.json"), json.dumps({"method": "self", **stats}, indent=1) + "\n")
    ctx.spend.update(rows=len(rows), accepted=stats["accepted"])
    ctx.summary[f"iter_{ctx.t}.sft_rows"] = len(rows)
    if ctx.show:
        console.print(f"refinements accepted {stats['accepted']}/{stats['refined']} · SFT rows {len(rows)}")


METHOD = Method(
    name="self",
    roles=("actor",),
    prologue=(PROMPTS, *eval_stages()),
    stages=(
        SAMPLE,
        JUDGE,
        NEGATIVES,
        Stage("refine", _refine, inputs=("negatives.jsonl",), outputs=("trees.jsonl",), settings=("search", "judge"),
              models=("actor",), resumable=True),
        Stage("targets", _targets, inputs=("prompts.jsonl", "trees.jsonl", "judgments.jsonl"), outputs=("sft.jsonl", "stats.json"),
              settings=("self_refine",)),
        train_stage("train_actor", "sft", "actor", "sft.jsonl", "train_actor", "actor"),
        *eval_stages(),
    ),
)
