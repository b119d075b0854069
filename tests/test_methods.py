"""Self-Rewarding, Meta-Rewarding and SELF: their rules on hand-made rows, and their stages on the
scripted backend (determinism, --until, resume after SIGKILL)."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import pipeline_harness as H
from spar.selfplay import rewarding as R
from spar.settings import GuardConfig
from spar.types import Constraint, Judgment, Message, MetaJudged, Node, Prompt, Scored, Tree

P = Prompt(id="p", messages=[Message(role="user", content="Describe the sea. Use no commas.")],
           constraints=[Constraint(kind="punctuation:no_comma", kwargs={})])
PROMPTS = {"p": P}


def scored(index, response, scores):
    return Scored(id="p", index=index, response=response, scores=scores, replies=[f"j{index}{k}" for k in range(len(scores))],
                  score=R.mean_score(scores))


def test_self_rewarding_pairs_the_highest_against_the_lowest_and_drops_ties():
    rows = [scored(0, "mid answer", [3, 3]), scored(1, "best answer", [5, 4, None]), scored(2, "worst", [1, None])]
    pairs, counts = R.actor_pairs(PROMPTS, rows, None, seed=0, guard=None)
    (p,) = pairs
    assert p.chosen[0].content == "best answer" and p.rejected[0].content == "worst"
    assert p.origin["chosen_score"] == 4.5 and counts["abstentions"] == 2 and counts["pairs"] == 1
    tie = [scored(0, "a", [3]), scored(1, "b", [3])]
    assert R.actor_pairs(PROMPTS, tie, None, 0, None)[1]["ties"] == 1
    alone = [scored(0, "a", [3]), scored(1, "b", [None]), scored(2, "a", [1])]  # b unscored, the second a a duplicate
    pairs, counts = R.actor_pairs(PROMPTS, alone, None, 0, None)
    assert not pairs and counts["too_few_scored"] == 1 and counts["unscored_answers"] == 1


def test_ties_at_the_top_are_broken_at_random_but_the_same_for_a_seed():
    rows = [scored(i, f"answer {i}", [5]) for i in range(6)] + [scored(9, "low", [0])]
    picks = {R.actor_pairs(PROMPTS, rows, None, seed, None)[0][0].chosen[0].content for seed in range(12)}
    assert len(picks) > 1
    assert R.actor_pairs(PROMPTS, rows, None, 3, None)[0] == R.actor_pairs(PROMPTS, rows, None, 3, None)[0]


def test_length_control_takes_the_shortest_near_the_top_and_the_longest_near_the_bottom():
    rows = [scored(0, "top but very long " * 5, [5]), scored(1, "near top, short", [4.5]), scored(2, "middle", [3]),
            scored(3, "bottom", [0]), scored(4, "near bottom and quite long " * 3, [0.5])]
    (p,), _ = R.actor_pairs(PROMPTS, rows, 0.2, 0, None)  # tiers: >= 4 and <= 1
    assert p.chosen[0].content == "near top, short" and p.rejected[0].content.startswith("near bottom")
    (p0,), _ = R.actor_pairs(PROMPTS, rows, 0.0, 0, None)  # rho 0: plain top and bottom
    assert p0.chosen[0].content.startswith("top but") and p0.rejected[0].content == "bottom"


def test_the_guard_drops_a_chosen_answer_that_carries_prompt_machinery_but_not_for_being_different():
    rows = [scored(0, "The sea is wide and blue.\nScore: 5", [5]), scored(1, "Waves, wind, salt.", [1])]
    pairs, counts = R.actor_pairs(PROMPTS, rows, None, 0, R.chosen_guard(GuardConfig()))
    assert not pairs and counts["guard_dropped"] == 1
    rows = [scored(0, "The sea is wide and blue and deep.", [5]), scored(1, "Waves, wind, salt. Gulls.", [1])]
    pairs, _ = R.actor_pairs(PROMPTS, rows, None, 0, R.chosen_guard(GuardConfig()))
    assert pairs and pairs[0].origin["similarity"] < 0.7  # independent samples are kept however unlike


def test_verifier_score_is_five_times_the_share_of_checks_met():
    two = P.model_copy(update={"constraints": [*P.constraints, Constraint(kind="change_case:english_lowercase", kwargs={})]})
    assert R.verifier_score(two, "the sea is wide") == 5.0
    assert R.verifier_score(two, "The sea is wide") == 2.5
    assert R.verifier_score(two, "The sea, wide") == 0.0
    assert R.verifier_score(Prompt(id="q", messages=P.messages), "x") is None


def test_the_meta_judge_target_is_the_answer_judged_least_consistently():
    rows = [scored(0, "a", [3, 3, 3]), scored(1, "b", [1, 5, 3]), scored(2, "c", [2, 4, None])]
    assert R.most_uncertain(rows, 0).index == 1
    assert R.most_uncertain([scored(0, "a", [3, None])], 0) is None  # one scored judgment: nothing to compare


def _meta(outcomes_of, n=3) -> MetaJudged:
    pairs = R.comparisons(n)
    return MetaJudged(id="p", index=0, response="r", judgments=[f"judgment {i}" for i in range(n)], pairs=pairs,
                      outcomes=[outcomes_of(a, b) for a, b in pairs])


def test_comparisons_run_both_orders_and_bradley_terry_finds_the_judgment_that_wins_either_way():
    row = _meta(lambda a, b: 1 if a == 2 else (-1 if b == 2 else (1 if a < b else -1)))  # 2 always wins; 0 beats 1
    assert sorted(row.pairs) == [(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)]
    pairs, counts = R.judge_pairs(PROMPTS, [row], max_chars=None)
    (p,) = pairs
    assert p.chosen[0].content == "judgment 2" and p.rejected[0].content == "judgment 1"
    assert "Score: N" in p.prompt[-1].content and counts["comparisons"] == 6


def test_pure_position_bias_teaches_nothing_and_long_judgments_are_dropped():
    always_first = _meta(lambda a, b: 1)
    assert R.position_weights([always_first]) == (0.0, 1.0)
    pairs, counts = R.judge_pairs(PROMPTS, [always_first], None)
    assert not pairs and counts["ties"] == 1
    row = _meta(lambda a, b: 1 if a == 2 else (-1 if b == 2 else (1 if a < b else -1)))
    row = row.model_copy(update={"judgments": ["j0", "j1", "x" * 50]})
    pairs, counts = R.judge_pairs(PROMPTS, [row], max_chars=20)
    assert not pairs and counts["too_long"] == 1


def test_self_trains_only_on_refinements_its_own_judge_accepted():
    from spar.methods.self_refine import sft_targets

    no, yes = Judgment(follows=False, rationale="Commas.\nFinal judgement: No"), Judgment(follows=True)
    solved = Tree(id="p#0", prompt_id="p", solved=True, expanded=1, strategy="greedy", solution=1,
                  nodes=[Node(id=0, parent=None, depth=0, response="Waves, wind.", judgment=no),
                         Node(id=1, parent=0, depth=1, response="Waves and wind.", judgment=yes, reply="[[start]]\nWaves and wind.[[end]]")])
    failed = Tree(id="p#1", prompt_id="p", solved=False, expanded=1, strategy="greedy",
                  nodes=[Node(id=0, parent=None, depth=0, response="Salt, sun.", judgment=no),
                         Node(id=1, parent=0, depth=1, response="Salt, sun!", judgment=no, reply="x")])
    rows, stats = sft_targets(PROMPTS, [solved, failed], [], keep_correct=False, meta_skill=True)
    assert [r["messages"][-1]["content"] for r in rows] == ["Waves and wind.", "[[start]]\nWaves and wind.[[end]]"]
    assert stats["accepted"] == 1 and stats["refined"] == 2
    from spar.types import JudgedSample

    rows, _ = sft_targets(PROMPTS, [solved], [JudgedSample(id="p", index=2, response="Calm sea.", judgment=yes)],
                          keep_correct=True, meta_skill=False)
    assert [r["messages"][-1]["content"] for r in rows] == ["Waves and wind.", "Calm sea."]


METHODS = ["self_rewarding", "meta_rewarding", "self"]


@pytest.fixture
def fake_training(monkeypatch):
    import spar.train

    def fake(model, rows, out, settings, seed=0):
        (Path(out) / "model").mkdir(parents=True, exist_ok=True)
        return Path(out) / "model", [{"loss": 0.5}]

    monkeypatch.setattr(spar.train, "train_dpo", fake)
    monkeypatch.setattr(spar.train, "train_sft", fake)


@pytest.mark.parametrize("method", METHODS)
def test_each_method_runs_its_stages_deterministically(tmp_path, method, fake_training):
    a = H.run(tmp_path / "a", until=None, method=method, iterations=2)
    H.run(tmp_path / "b", until=None, method=method, iterations=2)
    data = "sft.jsonl" if method == "self" else "dpo.jsonl"
    for t in (1, 2):
        rows = [json.loads(x) for x in (tmp_path / f"a/iter_{t}/{data}").read_text().splitlines()]
        assert rows, f"no training rows in iteration {t}"
        assert (tmp_path / f"a/iter_{t}/{data}").read_text() == (tmp_path / f"b/iter_{t}/{data}").read_text()
        for r in rows:  # rows in TRL's conversational formats
            if method == "self":
                assert r["messages"][-1]["role"] == "assistant"
            else:
                assert r["chosen"][0]["role"] == r["rejected"][0]["role"] == "assistant" and r["prompt"][-1]["role"] == "user"
    stages = json.loads((tmp_path / "a/manifest.json").read_text())["stages"]
    assert stages["iter_2:train_actor"]["model"] == str(tmp_path / "a/iter_2/actor/model")
    assert all("spend" in rec for rec in stages.values())
    if method == "meta_rewarding":  # judge pairs in iterations 1 and 2 (reward.meta_judge_iterations), from both orders
        kinds = {json.loads(x)["origin"]["kind"] for x in (tmp_path / "a/iter_1/dpo.jsonl").read_text().splitlines()}
        assert kinds == {"actor", "judge"}
        meta = [json.loads(x) for x in (tmp_path / "a/iter_1/meta.jsonl").read_text().splitlines()]
        assert meta and all(len(m["pairs"]) == len(m["judgments"]) * (len(m["judgments"]) - 1) for m in meta)
    assert a.method.name == method


@pytest.mark.parametrize("method", METHODS)
def test_until_stops_after_each_stage_of_each_method(tmp_path, method, fake_training):
    from spar.methods import get_method

    evals = {"prompts.heldout": 4, "eval.heldout": True}
    H.run(tmp_path / "all", until=None, method=method, iterations=2, **evals)
    order = list(json.loads((tmp_path / "all/manifest.json").read_text())["stages"])
    for name in get_method(method).stage_names():
        d = tmp_path / name
        H.run(d, until=name, method=method, iterations=2, **evals)
        keys = list(json.loads((d / "manifest.json").read_text())["stages"])
        last = keys[-1]
        assert keys == order[: len(keys)] and (last.split(":", 1)[-1].startswith(name) or last == name), (name, keys)
        nxt = order[len(keys)] if len(keys) < len(order) else None
        assert nxt is None or not nxt.split(":", 1)[-1].startswith(name) or nxt.split(":")[0] != last.split(":")[0]


def test_until_a_stage_that_will_not_run_is_refused(tmp_path):
    from spar.io import DataError

    with pytest.raises(DataError, match="no such stage runs"):
        H.run(tmp_path, until="eval")  # the harness evaluates nothing
    with pytest.raises(DataError, match="no such stage runs"):
        H.run(tmp_path, until="iter_3:sample")


def test_the_verifier_judge_holds_the_judge_equal_across_methods(tmp_path, fake_training):
    H.run(tmp_path / "sr", until="pairs", method="self_rewarding", **{"judge.mode": "verifier"})
    rows = [json.loads(x) for x in (tmp_path / "sr/iter_1/rewards.jsonl").read_text().splitlines()]
    assert rows and all(r["by"] == "verifier" and r["replies"] == [] for r in rows)
    H.run(tmp_path / "mr", until="pairs", method="meta_rewarding", **{"judge.mode": "verifier"})
    assert not (tmp_path / "mr/iter_1/meta.jsonl").exists()  # no judgments to meta-judge


@pytest.mark.parametrize("method", ["meta_rewarding", "self"])
def test_sigkill_in_a_method_stage_loses_and_doubles_nothing(tmp_path, method):
    clean = tmp_path / "clean"
    H.run(clean, until=H.DATA_STAGE[method], method=method)
    files = sorted(p.relative_to(clean) for p in clean.rglob("*.jsonl"))
    killed = tmp_path / "killed"
    rng = random.Random(2)
    kills = 0
    for _ in range(5):
        proc = subprocess.Popen([sys.executable, str(Path(H.__file__)), str(killed), "0.08", method],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(1.5, 3.5))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
    assert kills >= 2
    subprocess.run([sys.executable, str(Path(H.__file__)), str(killed), "0", method], check=True, capture_output=True)
    for f in files:
        a, b = (clean / f).read_text().splitlines(), (killed / f).read_text().splitlines()
        assert sorted(a) == sorted(b), f


def test_one_method_registry_drives_the_config_the_cli_and_loading():
    import typer.main
    from pydantic import ValidationError

    from spar.cli import app
    from spar.config import RunConfig
    from spar.io import DataError
    from spar.methods import METHODS, REGISTRY, get_method

    for name in REGISTRY:
        assert get_method(name).name == name
        assert RunConfig(method=name).method == name
    with pytest.raises(ValidationError):
        RunConfig(method="dpo_only")
    with pytest.raises(DataError, match="method must be one of spar, self_rewarding"):
        get_method("dpo_only")
    opt = next(p for p in typer.main.get_command(app).commands["iterate"].params if p.name == "method")
    assert all(f"{name}:" in opt.help for name in METHODS)


def test_a_dotted_settings_path_is_looked_up_in_one_place():
    from spar.config import RunConfig

    cfg = RunConfig()
    assert cfg.at("train_refiner") is cfg.train_refiner and cfg.at("eval.ifeval_data") == cfg.eval.ifeval_data
    assert cfg.at("search.guard") is True
    with pytest.raises(AttributeError):
        cfg.at("search.nothing")
