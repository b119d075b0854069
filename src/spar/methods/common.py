"""Stages every method shares: the prompts, the actor's samples, the judge, training, evaluation."""

from __future__ import annotations

import json

from spar.methods.base import Context, Stage
from spar.progress import console
from spar import stages as S


def _prompts(ctx: Context) -> None:
    S.run_prompts(ctx.cfg.prompts, ctx.cfg.seed, ctx.path("prompts.jsonl"), ctx.path("heldout.jsonl"))


PROMPTS = Stage("prompts", _prompts, inputs=("cfg:prompts.path",), outputs=("prompts.jsonl", "heldout.jsonl"),
                settings=("prompts", "seed"), run_level=True)


def _sample(ctx: Context) -> None:
    rows = S.run_sample(ctx.backend("actor"), ctx.cfg.sample, ctx.path("prompts.jsonl"), ctx.path("samples.jsonl"),
                        ctx.seed, chunk=ctx.chunk, show=ctx.show, stop=ctx.budget.exhausted)
    if ctx.budget.limit is not None:
        ctx.spend["prompts_sampled"] = len(rows)


SAMPLE = Stage("sample", _sample, inputs=("prompts.jsonl",), outputs=("samples.jsonl",), settings=("sample",),
               models=("actor",), resumable=True)


def _judge(ctx: Context) -> None:
    backend = ctx.backend("refiner") if ctx.cfg.judge.needs_model else None
    rows = S.run_judge(backend, ctx.cfg.judge, ctx.path("samples.jsonl"), ctx.path("judgments.jsonl"), ctx.seed,
                       chunk=ctx.chunk, show=ctx.show)
    ctx.spend["labels"] = {"yes": sum(r.judgment.follows is True for r in rows),
                           "no": sum(r.judgment.follows is False for r in rows),
                           "undecided": sum(r.judgment.follows is None for r in rows)}


JUDGE = Stage("judge", _judge, inputs=("samples.jsonl",), outputs=("judgments.jsonl",), settings=("judge",),
              models=("refiner",), resumable=True)


def _negatives(ctx: Context) -> None:
    rows = S.run_negatives(ctx.cfg.negatives, ctx.path("prompts.jsonl"), ctx.path("judgments.jsonl"),
                           ctx.path("negatives.jsonl"), ctx.seed)
    ctx.spend["negatives"] = len(rows)
    ctx.summary[f"iter_{ctx.t}.negatives"] = len(rows)


NEGATIVES = Stage("negatives", _negatives, inputs=("prompts.jsonl", "judgments.jsonl"), outputs=("negatives.jsonl",),
                  settings=("negatives",))


def train_stage(name: str, kind: str, role: str, data: str, section: str, out: str) -> Stage:
    """SFT or DPO of ``role``'s current model on the iteration's ``data`` file, settings from ``section``."""

    def go(ctx: Context) -> str | None:
        s = ctx.cfg.at(section)
        model, losses = S.run_train(kind, ctx.model(role), ctx.path(data), ctx.path(out), s.but(merge_lora=True), ctx.cfg.seed,
                                    ctx.cfg.launcher)
        ctx.spend["loss"] = losses
        if losses and ctx.show:
            console.print(f"{kind} loss per step: {', '.join(f'{v:.4f}' for v in losses)}")
        return None if model is None else S.served_like(ctx.model(role), str(ctx.path(out) / "model"), ctx.packaged_on_vllm)

    return Stage(name, go, inputs=(data,), outputs=(f"{out}/model",), settings=(section,), models=(role,), loads=(),
                 trains=role)


def eval_stages() -> tuple[Stage, ...]:
    """Held-out procedural prompts and IFEval (when ``eval.ifeval_data`` is set), greedy, per prompt."""

    def make(name: str) -> Stage:
        def go(ctx: Context) -> None:
            jobs = {n: (src, limit) for n, src, limit in S.eval_jobs(ctx.cfg.eval, ctx.path("heldout.jsonl"))}
            src, limit = jobs[name]
            r = S.run_eval(ctx.backend("actor"), ctx.cfg.eval, name, src, limit, ctx.path("eval"),
                           {"model": ctx.model("actor"), "iteration": ctx.t, "method": ctx.cfg.method},
                           chunk=ctx.chunk * 2, show=ctx.show)
            ctx.spend["prompt_strict"] = r["prompt_strict"]

        def when(cfg, t: int, name=name) -> bool:
            if t == 0 and not cfg.eval.before:
                return False
            if name == "heldout":
                return cfg.eval.heldout and cfg.prompts.heldout > 0
            return bool(cfg.eval.ifeval_data)

        inputs = ("heldout.jsonl",) if name == "heldout" else ("cfg:eval.ifeval_data",)
        settings = ("eval.max_new_tokens",) + (("eval.ifeval_limit",) if name == "ifeval" else ())
        return Stage(f"eval:{name}", go, inputs=inputs,
                     outputs=(f"eval/{name}.json", f"eval/{name}.responses.jsonl", f"eval/{name}.outcomes.jsonl"),
                     settings=settings, models=("actor",), resumable=True, when=when, group="eval")

    def llmbar(ctx: Context) -> None:
        from spar.eval.llmbar import evaluate_llmbar, load_llmbar
        from spar.io import write_jsonl, write_text
        from spar.settings import JudgeSettings

        e = ctx.cfg.eval
        items = load_llmbar(e.llmbar_data, e.llmbar_limit)
        cfg = JudgeSettings(votes=max(e.llmbar_votes), mode="llm", max_new_tokens=ctx.cfg.judge.max_new_tokens,
                            temperature=ctx.cfg.judge.temperature, top_p=ctx.cfg.judge.top_p)
        by_k, rows = evaluate_llmbar(ctx.backend("refiner"), items, cfg, ks=e.llmbar_votes)
        write_jsonl(ctx.path("eval/llmbar.items.jsonl"), rows)
        write_text(ctx.path("eval/llmbar.json"), json.dumps({"benchmark": "llmbar", "model": ctx.model("refiner"),
                                                               "iteration": ctx.t, "by_votes": {str(k): v for k, v in by_k.items()}},
                                                              indent=1) + "\n")
        ctx.spend["llmbar_accuracy"] = by_k[max(by_k)]["Overall (mean of subsets)"]["accuracy"]

    def refine(ctx: Context) -> None:
        from spar.eval.refine import as_negatives, evaluate_refinement, failed_answers
        from spar.io import read_jsonl, read_prompts, write_jsonl, write_text
        from spar.types import Completion

        prompts = read_prompts(ctx.path("heldout.jsonl"))
        answers = {r.id: r.completions[0] for r in read_jsonl(ctx.path("eval/heldout.responses.jsonl"), Completion)}
        backend = ctx.backend("refiner")
        negs = as_negatives(backend, failed_answers(prompts, answers), ctx.cfg.judge, ctx.seed)
        scores, rows = (evaluate_refinement(backend, negs, ctx.cfg.judge, ctx.cfg.search.but(budget=ctx.cfg.eval.refine_budget),
                                            ctx.seed) if negs else ({"failed_answers": 0}, []))
        write_jsonl(ctx.path("eval/refine.items.jsonl"), rows)
        write_text(ctx.path("eval/refine.json"), json.dumps({"benchmark": "refine", "source": "heldout",
                                                               "model": ctx.model("refiner"), "iteration": ctx.t,
                                                               "judge_is_the_checkers": ctx.cfg.judge.mode != "llm",
                                                               **scores}, indent=1) + "\n")
        ctx.spend["refine_greedy_pass"] = scores.get("greedy", {}).get("pass")

    def followbench(ctx: Context) -> None:
        from spar.eval.followbench import answer, dumps, evaluate_followbench, select
        from spar.io import write_jsonl, write_text

        e = ctx.cfg.eval
        items = select(e.followbench_data, judged=bool(e.followbench_judge), limit=e.followbench_limit)
        answers = answer(ctx.backend("actor"), items, ctx.path("eval/followbench.responses.jsonl"), e.max_new_tokens,
                         chunk=ctx.chunk * 2, show=ctx.show)
        judge = ctx.backend_for(e.followbench_judge) if e.followbench_judge else None
        result, outcomes = evaluate_followbench(items, answers, judge,
                                                ctx.path("eval/followbench.judge.jsonl"), chunk=ctx.chunk * 2, show=ctx.show)
        write_jsonl(ctx.path("eval/followbench.outcomes.jsonl"), outcomes)
        write_text(ctx.path("eval/followbench.json"), dumps({"benchmark": "followbench", "model": ctx.model("actor"),
                                                             "iteration": ctx.t, "judge": e.followbench_judge,
                                                             "part": "rules and judge" if judge else "rules only", **result}))
        ctx.spend["followbench_hsr"] = result["hsr_mean"]

    def before(cfg, t: int) -> bool:
        return t > 0 or cfg.eval.before

    return (make("heldout"), make("ifeval"),
            Stage("eval:refine", refine, inputs=("heldout.jsonl", "eval/heldout.responses.jsonl"),
                  outputs=("eval/refine.json", "eval/refine.items.jsonl"), settings=("eval.refine_budget", "judge", "search"),
                  models=("refiner",), group="eval",
                  when=lambda cfg, t: before(cfg, t) and cfg.eval.refine and cfg.eval.heldout and cfg.prompts.heldout > 0),
            Stage("eval:followbench", followbench, inputs=("cfg:eval.followbench_data",),
                  outputs=("eval/followbench.json", "eval/followbench.responses.jsonl", "eval/followbench.outcomes.jsonl"),
                  settings=("eval.max_new_tokens", "eval.followbench_judge", "eval.followbench_limit"), models=("actor",),
                  resumable=True, group="eval", when=lambda cfg, t: before(cfg, t) and bool(cfg.eval.followbench_data)),
            Stage("eval:llmbar", llmbar, inputs=("cfg:eval.llmbar_data",), outputs=("eval/llmbar.json", "eval/llmbar.items.jsonl"),
                  settings=("eval.llmbar_votes", "eval.llmbar_limit", "judge"), models=("refiner",), group="eval",
                  when=lambda cfg, t: before(cfg, t) and bool(cfg.eval.llmbar_data)))
