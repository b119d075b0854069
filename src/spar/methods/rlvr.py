"""Verifiable-reward RL as a baseline (the IF-RLVR recipe, arXiv 2507.02833, in its simplest form):
GRPO on the iteration's training prompts, with TRL's GRPOTrainer, the reward computed by the
prompt's own constraint checkers. No judge, no search, no pairs: the policy samples a group of
answers per prompt and moves towards the ones that meet more constraints, with a KL term to the
starting model.

The reward of an answer to a prompt with constraints C is the share of C its checkers pass
(strict, ``spar.constraints.checkers.follows``), in [0, 1]; it is 0 for an answer of fewer than
``rlvr.min_words`` words or one carrying prompt machinery (``spar.roles.guard.machinery``), so that
an empty or echoed reply cannot collect the constraints it trivially meets. Prompts without a
checkable constraint are not trained on. Every rollout and its reward is kept in
``rollouts.jsonl``; the manifest records the generated tokens. With ``budget.generated_tokens``,
training stops after the optimiser step in which the rollouts reach what is left of the budget.
"""

from __future__ import annotations

import json
import statistics

from spar.io import read_prompts, write_jsonl, write_text
from spar.methods.base import Context, Method, Stage
from spar.methods.common import PROMPTS, eval_stages
from spar.progress import console
from spar.types import Constraint


def reward_of(answer: str, constraints: list[Constraint], instruction: str, min_words: int) -> float:
    """The share of ``constraints`` the answer meets, or 0 for a reply too short or with machinery."""
    from spar.constraints.checkers import follows
    from spar.roles.guard import machinery

    if not constraints or len(answer.split()) < min_words or machinery(answer) is not None:
        return 0.0
    return sum(follows(c.kind, c.kwargs, answer, prompt=instruction) for c in constraints) / len(constraints)


def prompt_rows(prompts, max_prompts: int | None) -> list[dict]:
    """GRPO's dataset: the chat, and the columns the reward reads."""
    rows = []
    for p in prompts:
        if p.constraints:
            rows.append({"prompt": [m.model_dump() for m in p.messages], "id": p.id, "instruction": p.text,
                         "constraints": json.dumps([c.model_dump() for c in p.constraints])})
    return rows[:max_prompts] if max_prompts else rows


class Reward:
    """TRL's reward function, keeping every rollout it scores (for rollouts.jsonl and the spend)."""

    __name__ = "checkers"

    def __init__(self, min_words: int):
        self.min_words = min_words
        self.rollouts: list[dict] = []

    def tokens(self) -> int:
        """Tokens of every rollout scored so far (the GRPO stage's spend)."""
        return sum(r["tokens"] or 0 for r in self.rollouts)

    def __call__(self, prompts, completions, id, instruction, constraints, completion_ids=None, **_):
        out = []
        for k, completion in enumerate(completions):
            text = completion[-1]["content"] if isinstance(completion, list) else str(completion)
            cons = [Constraint(**c) for c in json.loads(constraints[k])]
            r = reward_of(text, cons, instruction[k], self.min_words)
            out.append(r)
            self.rollouts.append({"prompt": id[k], "completion": text, "reward": r,
                                  "tokens": len(completion_ids[k]) if completion_ids is not None else None})
        return out


def _grpo(ctx: Context) -> str | None:
    from spar import stages as S
    from spar.train import train_grpo

    rl = ctx.cfg.rlvr
    rows = prompt_rows(read_prompts(ctx.path("prompts.jsonl")), rl.max_prompts)
    if not rows:
        return None
    reward = Reward(rl.min_words)
    left = ctx.budget.left()
    path, log = train_grpo(S.model_path(ctx.model("actor")), rows, ctx.path("actor"), reward,
                           ctx.cfg.train_actor.but(merge_lora=True), rl, seed=ctx.cfg.seed,
                           stop=None if left is None else (lambda: reward.tokens() >= left))
    write_jsonl(ctx.path("rollouts.jsonl"), reward.rollouts)
    rewards = [r["reward"] for r in reward.rollouts]
    groups: dict[str, list[float]] = {}
    for r in reward.rollouts:
        groups.setdefault(r["prompt"], []).append(r["reward"])
    stats = {"method": "rlvr", "prompts": len(rows), "rollouts": len(rewards),
             "mean_reward": round(statistics.fmean(rewards), 4) if rewards else None,
             "zero_reward_share": round(sum(r == 0 for r in rewards) / len(rewards), 4) if rewards else None,
             "prompts_all_equal": sum(len(set(g)) == 1 for g in groups.values()),
             "generated_tokens": reward.tokens(),
             "loss": [round(x["loss"], 4) for x in log if "loss" in x]}
    write_text(ctx.path("stats.json"), json.dumps(stats, indent=1) + "\n")
    ctx.spend.update(rollouts=len(rewards), generated_tokens=stats["generated_tokens"], mean_reward=stats["mean_reward"])
    if ctx.show:
        console.print(f"GRPO: {len(rewards)} rollouts, mean reward {stats['mean_reward']}, "
                      f"{stats['prompts_all_equal']} of {len(groups)} prompts with no difference in their group")
    return S.served_like(ctx.model("actor"), str(path), ctx.packaged_on_vllm)


METHOD = Method(
    name="rlvr",
    roles=("actor",),
    prologue=(PROMPTS, *eval_stages()),
    stages=(
        Stage("train_actor", _grpo, inputs=("prompts.jsonl",), outputs=("rollouts.jsonl", "stats.json", "actor/model"),
              settings=("rlvr", "train_actor"), models=("actor",), loads=(), trains="actor"),
        *eval_stages(),
    ),
)
