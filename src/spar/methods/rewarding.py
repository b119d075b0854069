"""Self-Rewarding and Meta-Rewarding on spar's stages (rules in ``spar.selfplay.rewarding``).

One model plays every part: it answers, scores its answers with the five-point judge, (for
Meta-Rewarding) meta-judges its own judgments, and is trained by DPO on the pairs. Judge modes:
``llm`` is the five-point prompt; ``verifier`` scores by the checkers (5 x the share met) and has
no judgments to meta-judge; ``hybrid`` takes the lower of the two (the checkers can take points
away, only the model can give them for the task itself).
"""

from __future__ import annotations

import json
from pathlib import Path

from spar.rows import map_rows
from spar.io import read_jsonl, read_prompts, write_jsonl, write_text
from spar.llm import Backend, Sampling
from spar.methods.base import Context, Method, Stage
from spar.methods.common import PROMPTS, SAMPLE, eval_stages, train_stage
from spar.progress import console, token_bar
from spar.roles.templates import meta_judge_chat, parse_score, parse_winner, reward_chat
from spar.selfplay import rewarding as R
from spar.settings import RewardSettings
from spar.types import Completion, MetaJudged, Scored


def run_reward(backend: Backend | None, mode: str, s: RewardSettings, prompts: Path, samples: Path, out: Path, seed: int,
               chunk: int = 16, show: bool = True, stop=None) -> list[Scored]:
    """Every answer scored 0-5 (resumable by answer); ``stop()`` (a budget) is asked before each chunk
    of answers, and once it says so the rest stay unscored."""
    by_id = {p.id: p for p in read_prompts(prompts)}
    items = [(c.id, k, text) for c in read_jsonl(samples, Completion) for k, text in enumerate(c.completions)]
    sampling = (Sampling(n=1, temperature=0.0, max_new_tokens=s.max_new_tokens, seed=seed) if s.samples == 1 else
                Sampling(n=s.samples, temperature=s.temperature, top_p=s.top_p, max_new_tokens=s.max_new_tokens, seed=seed))

    def work(part, emit, bar) -> None:
        tick, advance = bar
        if mode == "verifier":
            replies: list[list[str]] = [[] for _ in part]
        else:
            replies = backend.generate([reward_chat(by_id[i].text, t) for i, _, t in part], sampling, on_batch=tick)
        for (i, k, text), reps in zip(part, replies):
            checked = R.verifier_score(by_id[i], text) if mode != "llm" else None
            if mode == "verifier":
                emit(Scored(id=i, index=k, response=text, scores=[checked], score=checked, by="verifier"))
                continue
            scores = [parse_score(r) for r in reps]
            score = R.mean_score(scores)
            if mode == "hybrid" and score is not None and checked is not None:
                score = min(score, checked)
            emit(Scored(id=i, index=k, response=text, scores=scores, replies=reps, score=score))
        advance(len(part))

    return map_rows(items, out, Scored, key=lambda it: f"{it[0]}#{it[1]}", row_key="key", work=work, chunk=chunk,
                    stop=stop, progress=lambda total, done: token_bar("reward", total, done, show))


def run_meta_judge(backend: Backend, s: RewardSettings, prompts: Path, rewards: Path, out: Path, seed: int,
                   chunk: int = 16, show: bool = True) -> list[MetaJudged]:
    """Per prompt, the answer judged least consistently: its judgments compared two by two, both
    orders (resumable by prompt)."""
    by_id = {p.id: p for p in read_prompts(prompts)}
    groups: dict[str, list[Scored]] = {}
    for r in read_jsonl(rewards, Scored):
        groups.setdefault(r.id, []).append(r)
    rows = []
    for pid, answers in groups.items():
        pick = R.most_uncertain(answers, seed)
        if pick is not None:
            players = R.judgments_of(pick)
            rows.append(MetaJudged(id=pid, index=pick.index, response=pick.response, judgments=players,
                                   pairs=R.comparisons(len(players))))
    sampling = Sampling(n=1, temperature=s.temperature, top_p=s.top_p, max_new_tokens=s.meta_max_new_tokens, seed=seed)

    def work(part, emit, bar) -> None:
        tick, advance = bar
        chats = [meta_judge_chat(by_id[r.id].text, r.response, r.judgments[a], r.judgments[b]) for r in part for a, b in r.pairs]
        replies = iter(backend.generate(chats, sampling, on_batch=tick))
        for r in part:
            reps = [next(replies)[0] for _ in r.pairs]
            emit(r.model_copy(update={"replies": reps, "outcomes": [parse_winner(x) or 0 for x in reps]}))
        advance(len(part))

    return map_rows(rows, out, MetaJudged, key=lambda r: r.id, work=work, chunk=chunk,
                    progress=lambda total, done: token_bar("meta-judge", total, done, show))


def _reward(ctx: Context) -> None:
    judge = ctx.cfg.judge
    rows = run_reward(ctx.backend("actor") if judge.needs_model else None, judge.mode, ctx.cfg.reward,
                      ctx.path("prompts.jsonl"), ctx.path("samples.jsonl"), ctx.path("rewards.jsonl"), ctx.seed,
                      chunk=ctx.chunk, show=ctx.show, stop=ctx.budget.exhausted if judge.needs_model else None)
    ctx.spend.update(scored=sum(r.score is not None for r in rows),
                     abstentions=sum(x is None for r in rows for x in r.scores))


def _meta(ctx: Context) -> None:
    rows = run_meta_judge(ctx.backend("actor"), ctx.cfg.reward, ctx.path("prompts.jsonl"), ctx.path("rewards.jsonl"),
                          ctx.path("meta.jsonl"), ctx.seed, chunk=ctx.chunk, show=ctx.show)
    ctx.spend.update(responses=len(rows), comparisons=sum(len(r.pairs) for r in rows))


def _meta_when(cfg, t: int) -> bool:
    return cfg.method == "meta_rewarding" and cfg.judge.needs_model and t <= cfg.reward.meta_judge_iterations


def _pairs(ctx: Context) -> None:
    c, t = ctx.cfg, ctx.t
    meta = c.method == "meta_rewarding"
    by_id = {p.id: p for p in read_prompts(ctx.path("prompts.jsonl"))}
    guard = R.chosen_guard(c.search.guard_config())
    pairs, stats = R.actor_pairs(by_id, read_jsonl(ctx.path("rewards.jsonl"), Scored),
                                 c.reward.rho_at(t) if meta else None, ctx.seed, guard)
    out = {"method": c.method, "actor": stats}
    if _meta_when(c, t):
        jp, jstats = R.judge_pairs(by_id, read_jsonl(ctx.path("meta.jsonl"), MetaJudged), c.reward.judge_max_chars)
        pairs += jp
        out["judge"] = jstats
    write_jsonl(ctx.path("dpo.jsonl"), pairs)
    write_text(ctx.path("stats.json"), json.dumps({**out, "pairs": len(pairs)}, indent=1) + "\n")
    ctx.spend["pairs"] = len(pairs)
    ctx.summary[f"iter_{t}.pairs"] = len(pairs)
    if ctx.show:
        extra = f" + {out['judge']['pairs']} judge pairs" if "judge" in out else ""
        console.print(f"actor pairs {stats['pairs']} of {stats['prompts']} prompts (ties {stats['ties']}, too few scored "
                      f"{stats['too_few_scored']}, guard {stats['guard_dropped']}, abstentions {stats['abstentions']})" + extra)


def _method(name: str) -> Method:
    meta_stage = (Stage("meta_judge", _meta, inputs=("prompts.jsonl", "rewards.jsonl"), outputs=("meta.jsonl",),
                        settings=("reward",), models=("actor",), resumable=True, when=_meta_when),)
    return Method(
        name=name,
        roles=("actor",),
        prologue=(PROMPTS, *eval_stages()),
        stages=(
            SAMPLE,
            Stage("reward", _reward, inputs=("prompts.jsonl", "samples.jsonl"), outputs=("rewards.jsonl",),
                  settings=("reward", "judge.mode"), models=("actor",), resumable=True),
            *(meta_stage if name == "meta_rewarding" else ()),
            Stage("pairs", _pairs, inputs=("prompts.jsonl", "rewards.jsonl") + (("meta.jsonl",) if name == "meta_rewarding" else ()),
                  outputs=("dpo.jsonl", "stats.json"), settings=("reward", "search.guard", "method")),
            train_stage("train_actor", "dpo", "actor", "dpo.jsonl", "train_actor", "actor"),
            *eval_stages(),
        ),
    )


SELF_REWARDING = _method("self_rewarding")
META_REWARDING = _method("meta_rewarding")
