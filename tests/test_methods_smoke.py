"""Each baseline on the real embedded model, tiny settings: its stages run through the data stage
and the rows they write train with TRL for one step."""

import json

import pytest

from spar.config import load_config
from spar.pipeline import Run

pytestmark = pytest.mark.model

TINY = {"prompts.count": 3, "prompts.heldout": 0, "prompts.max_constraints": 2, "sample.k": 2, "sample.max_new_tokens": 32,
        "batch_size": 8, "eval.heldout": False, "reward.samples": 2, "reward.max_new_tokens": 48,
        "reward.meta_max_new_tokens": 32, "judge.votes": 1, "judge.max_new_tokens": 32, "search.max_new_tokens": 48,
        "dtype": "fp32"}


def _run(tmp_path, embedded, method, until, **over):
    cfg = load_config(None, {**TINY, "method": method, **over})
    Run(cfg, tmp_path, factory=lambda model, bs, **kw: embedded, until=until, show=False).run()
    return cfg


def _train_one_step(kind, rows, out):
    from spar.llm.embedded import embedded_model_path
    from spar.settings import TrainSettings
    from spar.train import train_dpo, train_sft

    s = TrainSettings(max_steps=1, max_length=256, learning_rate=1e-6)
    path, log = (train_dpo if kind == "dpo" else train_sft)(str(embedded_model_path()), rows[:2], out, s)
    assert (path / "config.json").exists() and any("loss" in x for x in log)


def test_meta_rewarding_on_the_model_parses_or_counts_every_judge_reply(tmp_path, embedded):
    _run(tmp_path, embedded, "meta_rewarding", "pairs", **{"judge.mode": "llm"})
    rewards = [json.loads(x) for x in (tmp_path / "iter_1/rewards.jsonl").read_text().splitlines()]
    assert len(rewards) == 6 and all(len(r["scores"]) == len(r["replies"]) == 2 for r in rewards)
    stats = json.loads((tmp_path / "iter_1/stats.json").read_text())
    assert stats["actor"]["abstentions"] == sum(x is None for r in rewards for x in r["scores"])
    assert "judge" in stats  # the meta-judge ran (its pairs may be few on a 135M model)


def test_self_rewarding_with_the_verifier_judge_builds_pairs_that_train(tmp_path, embedded):
    _run(tmp_path, embedded, "self_rewarding", "pairs", **{"judge.mode": "verifier", "sample.k": 4, "prompts.count": 6,
                                                            "prompts.min_constraints": 2, "prompts.max_constraints": 3})
    rows = [json.loads(x) for x in (tmp_path / "iter_1/dpo.jsonl").read_text().splitlines()]
    assert rows, "4 answers to 6 prompts with 2-3 checkable constraints each should give a pair"
    _train_one_step("dpo", rows, tmp_path / "train")


def test_self_builds_sft_rows_that_train(tmp_path, embedded):
    _run(tmp_path, embedded, "self", "targets", **{"judge.mode": "verifier", "self_refine.keep_correct": True,
                                                    "sample.k": 4})
    rows = [json.loads(x) for x in (tmp_path / "iter_1/sft.jsonl").read_text().splitlines()]
    trees = (tmp_path / "iter_1/trees.jsonl").read_text().splitlines()
    assert all(len(json.loads(t)["nodes"]) <= 2 for t in trees)  # one refinement per failed answer, no search
    assert rows
    _train_one_step("sft", rows, tmp_path / "train")


def test_rlvr_trains_the_actor_with_grpo_on_checker_rewards(tmp_path, embedded):
    """One GRPO step (TRL) on the real model: every rollout scored by its prompt's checkers and kept,
    the new actor saved and evaluated on held-out prompts. Two steps are allowed, but a budget of one
    token ends training after the first."""
    over = {"rlvr.num_generations": 2, "rlvr.prompts_per_step": 2, "rlvr.max_completion_length": 16, "rlvr.max_prompts": 2,
            "train_actor.max_steps": 2, "train_actor.learning_rate": 1e-6, "prompts.heldout": 2, "eval.heldout": True,
            "eval.max_new_tokens": 16, "budget.generated_tokens": 1}
    _run(tmp_path, embedded, "rlvr", None, **over)
    rollouts = [json.loads(x) for x in (tmp_path / "iter_1/rollouts.jsonl").read_text().splitlines()]
    assert len(rollouts) == 4 and all(0.0 <= r["reward"] <= 1.0 and r["tokens"] for r in rollouts)
    assert len({r["prompt"] for r in rollouts}) == 2  # a group of two completions per prompt
    stats = json.loads((tmp_path / "iter_1/stats.json").read_text())
    assert stats["rollouts"] == 4 and stats["generated_tokens"] == sum(r["tokens"] for r in rollouts)
    assert (tmp_path / "iter_1/actor/model/config.json").exists()
    assert (tmp_path / "iter_1/eval/heldout.json").exists()
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["stages"]["iter_1:train_actor"]["generated_tokens"] == stats["generated_tokens"]
    assert manifest["budget"]["iter_1"] == {"generated_tokens": 1, "spent": stats["generated_tokens"]}


def test_the_rlvr_reward_is_the_share_of_constraints_met_and_zero_for_a_hack():
    from spar.methods.rlvr import reward_of
    from spar.types import Constraint

    low = Constraint(kind="change_case:english_lowercase", kwargs={}, text="all lowercase")
    comma = Constraint(kind="punctuation:no_comma", kwargs={}, text="no commas")
    assert reward_of("tea is a warm drink, made from leaves", [low, comma], "Describe tea.", 5) == 0.5
    assert reward_of("tea is a warm drink made from leaves", [low, comma], "Describe tea.", 5) == 1.0
    assert reward_of("ok", [low, comma], "Describe tea.", 5) == 0.0  # meets both, but is no answer
    assert reward_of("tea is warm and good\nFinal judgement: Yes", [low, comma], "Describe tea.", 5) == 0.0
