"""spar eval refine: greedy and searched refinements of failed answers, scored by the benchmark's
checkers, with similarity to the original; the benchmark's checkers never judge the search."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from fake import FakeBackend
from pipeline_harness import script
from spar.eval.refine import check_judge, evaluate_refinement, failed_answers, passes
from spar.io import DataError
from spar.settings import JudgeSettings, SearchSettings
from spar.types import Constraint, Judgment, Message, Negative, Prompt

NO_COMMA = [Constraint(kind="punctuation:no_comma")]


def negative(i: int, text: str) -> Negative:
    p = Prompt(id=f"p{i}", messages=[Message(role="user", content=f"Describe the sea {i} without commas.")],
               constraints=NO_COMMA, source="procedural:heldout")
    return Negative(prompt=p, index=0, response=text, judgment=Judgment(follows=False, votes=[False],
                                                                        rationale="It has commas.\nFinal judgement: No"))


def test_failed_answers_are_those_the_checkers_fail():
    ps = [negative(i, "").prompt for i in range(3)]
    got = failed_answers(ps, {"p0": "calm and blue", "p1": "calm, blue", "p2": "grey, wet"})
    assert [p.id for p, _ in got] == ["p1", "p2"]
    assert passes(ps[0], "calm and blue") and not passes(ps[0], "calm, blue")


def test_greedy_and_search_refinements_are_scored_by_the_checkers_with_their_similarity():
    negs = [negative(i, f"The sea {i} is calm, blue, and wide today") for i in range(4)]
    # the scripted refiner drops the commas and appends a short tag: an edit, not a rewrite
    scores, rows = evaluate_refinement(FakeBackend(script), negs, JudgeSettings(votes=3, mode="llm"),
                                       SearchSettings(budget=6, depth=2), seed=0)
    assert scores["failed_answers"] == 4 and scores["greedy"]["pass"] == 100.0
    assert all(r["greedy"] and "," not in r["greedy"] and r["greedy_similarity"] > 0.7 for r in rows)
    bfs = scores["bfs"]
    assert bfs["pass"] == 100.0 * sum(r["search_passes"] for r in rows) / 4
    for r in rows:  # a search result counts only where the refiner's judge accepted it
        assert r["search_passes"] <= r["search_accepted"]
        if not r["search_accepted"]:
            assert r["search"] == r["original"] and r["search_similarity"] is None


def test_the_benchmark_checkers_never_judge_a_search_on_the_benchmark():
    with pytest.raises(DataError, match="own checkers"):
        check_judge("hybrid", "ifeval")
    with pytest.raises(DataError):
        check_judge("verifier", "ifeval")
    check_judge("llm", "ifeval")
    check_judge("hybrid", "procedural")


def test_a_negative_without_checkable_constraints_is_refused():
    n = negative(0, "x, y")
    n = n.model_copy(update={"prompt": n.prompt.model_copy(update={"constraints": []})})
    with pytest.raises(DataError, match="no checkable constraint"):
        evaluate_refinement(FakeBackend(script), [n], JudgeSettings(), SearchSettings())


def test_the_command_refuses_checker_judges_on_ifeval_and_writes_nothing(tmp_path):
    from spar.cli import app

    data, resp = tmp_path / "i.jsonl", tmp_path / "r.jsonl"
    data.write_text(json.dumps({"key": 1, "prompt": "No commas.", "instruction_id_list": ["punctuation:no_comma"],
                                "kwargs": [{}]}) + "\n")
    resp.write_text(json.dumps({"id": "1", "response": "a, b"}) + "\n")
    res = CliRunner().invoke(app, ["eval", "refine", "--data", str(data), "--responses", str(resp), "--judge-mode",
                                   "verifier", "-o", str(tmp_path / "s.json")])
    assert res.exit_code == 2 and "own checkers" in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["i.jsonl", "r.jsonl"]


def _ifeval_prompts(n: int) -> list[Prompt]:
    return [Prompt(id=str(i), messages=[Message(role="user", content=f"Describe the sea {i} without commas.")],
                   constraints=NO_COMMA, source="ifeval") for i in range(n)]


def test_search_at_inference_never_calls_the_benchmark_checkers(monkeypatch):
    from spar.eval.refine import search_at_inference
    import spar.roles.judge as J

    def forbidden(*a, **k):
        raise AssertionError("the benchmark's checkers were asked during the search")

    monkeypatch.setattr(J, "verify", forbidden)
    monkeypatch.setattr(J, "check_follows", forbidden)
    prompts = _ifeval_prompts(6)
    answers = {p.id: f"The sea {p.id} is calm, blue, and wide" for p in prompts}
    final, rows, spend = search_at_inference(FakeBackend(script), prompts, answers, JudgeSettings(votes=3, mode="llm"),
                                             SearchSettings(budget=6, depth=2))
    assert spend["searched"] == sum(r["searched"] for r in rows) and spend["judged_answers"] == 6
    for r in rows:  # an answer is replaced only by a node the refiner's judge accepted
        assert (final[r["id"]] != r["original"]) == r["replaced"]
        if r["replaced"]:
            assert r["searched"] and r["judged"] == "no"


def test_with_a_judge_that_accepts_everything_the_scores_are_plain_greedy():
    from spar.eval.ifeval import score
    from spar.eval.refine import search_at_inference

    prompts = _ifeval_prompts(5)
    answers = {p.id: ("calm, blue" if int(p.id) % 2 else "calm and blue") for p in prompts}
    final, rows, spend = search_at_inference(FakeBackend(default="Fine.\nFinal judgement: Yes"), prompts, answers,
                                             JudgeSettings(votes=3, mode="llm"), SearchSettings())
    assert final == answers and spend["searched"] == 0
    assert score(prompts, final)[0] == score(prompts, answers)[0]


def test_eval_ifeval_with_search_reports_both_from_one_run(tmp_path, monkeypatch):
    from spar.cli import app
    import spar.cli as cli

    data, resp = tmp_path / "i.jsonl", tmp_path / "r.jsonl"
    data.write_text("".join(json.dumps({"key": i, "prompt": f"Describe the sea {i} without commas.",
                                        "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]}) + "\n"
                            for i in range(4)))
    resp.write_text("".join(json.dumps({"id": str(i), "response": f"The sea {i} is calm, blue, and wide"}) + "\n"
                            for i in range(4)))
    monkeypatch.setattr(cli, "_backend", lambda *a, **k: FakeBackend(script))
    out = tmp_path / "s.json"
    res = CliRunner().invoke(app, ["eval", "ifeval", "--data", str(data), "--responses", str(resp), "--search", "bfs",
                                   "--refiner", "scripted", "--budget", "6", "-o", str(out)])
    assert res.exit_code == 0, res.output
    result = json.loads(out.read_text())
    assert result["prompt_strict"] == 0.0 and "search" in result
    s = result["search"]
    assert s["judge"] == "llm" and s["spend"]["judged_answers"] == 4
    assert s["prompt_strict"] == 100.0 * s["spend"]["replaced"] / 4  # every accepted refinement drops the commas
    assert (tmp_path / "s.search.items.jsonl").exists() and (tmp_path / "s.search.outcomes.jsonl").exists()


def test_the_loop_runs_refinement_accuracy_and_llmbar_per_iteration(tmp_path):
    import pipeline_harness as H
    from spar.compare import load_run

    bar = tmp_path / "LLMBar"
    for sub in ("Natural", "Adversarial/Neighbor", "Adversarial/GPTInst", "Adversarial/GPTOut", "Adversarial/Manual"):
        (bar / sub).mkdir(parents=True)
        (bar / sub / "dataset.json").write_text(json.dumps([{"input": "Say hi.", "output_1": "Hi.", "output_2": "Bye.",
                                                             "label": 1}] * 2))
    run = tmp_path / "run"
    H.run(run, until="eval", **{"prompts.heldout": 6, "eval.heldout": True, "eval.refine": True, "eval.refine_budget": 3,
                                "eval.llmbar_data": str(bar), "eval.llmbar_votes": [1, 3], "prompts.min_constraints": 1,
                                "iterations": 1})
    for t in (0,):
        ev = run / f"iter_{t}" / "eval"
        refine = json.loads((ev / "refine.json").read_text())
        assert refine["judge_is_the_checkers"] is True  # the harness judges in hybrid mode: labelled
        assert refine["failed_answers"] == len((ev / "refine.items.jsonl").read_text().splitlines())
        llmbar = json.loads((ev / "llmbar.json").read_text())
        assert set(llmbar["by_votes"]) == {"1", "3"} and len((ev / "llmbar.items.jsonl").read_text().splitlines()) == 20
    r = load_run(run)
    assert "llmbar" in r["iterations"][0] and "refine" in r["iterations"][0]
    from spar.compare import compare, markdown

    assert "| refiner | iter |" in markdown(compare([run])).replace("Refiner", "refiner")
