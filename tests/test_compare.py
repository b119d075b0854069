"""`spar compare`: exact McNemar against known values, and the table of two small committed runs."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from spar.cli import app
from spar.compare import compare, mcnemar_exact

RUNS = Path(__file__).parent / "data" / "compare"


@pytest.mark.parametrize("b,c,p", [(0, 5, 0.0625), (1, 9, 0.021484375), (5, 5, 1.0), (2, 10, 0.03857421875), (0, 0, 1.0),
                                   (3, 0, 0.25)])
def test_exact_mcnemar_matches_the_binomial_test(b, c, p):  # R: binom.test(min(b, c), b + c)$p.value
    assert mcnemar_exact(b, c) == pytest.approx(p)
    assert mcnemar_exact(c, b) == pytest.approx(p)


def test_compare_two_committed_runs():
    result = compare([RUNS / "spar-run", RUNS / "sr-run"])
    spar, sr = result["runs"]
    # spar: 2 of 10 pass before, 6 after, 4 better and none worse -> p = 2 / 16
    assert spar["tests"]["ifeval"] == {"from": 0, "to": 1, "prompts": 10, "better": 4, "worse": 0, "p_value": 0.125}
    assert spar["iterations"][1]["rows"] == 2 and spar["iterations"][1]["pair_similarity"] == 0.85
    # sr has no iteration 0 of its own: it borrows spar's (same model, dtype, eval length) and says so
    assert sr["start_from"].endswith("spar-run")
    assert sr["tests"]["ifeval"] == {"from": 0, "to": 1, "prompts": 10, "better": 1, "worse": 1, "p_value": 1.0}
    assert spar["spend"] == {"calls": 4, "new_tokens": 100, "seconds": 20.0, "recorded": True}


def test_compare_command_prints_markdown_json_and_html(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["compare", str(RUNS / "spar-run"), str(RUNS / "sr-run"), "--html", str(tmp_path / "c.html")])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].startswith("| run | method | model | judge | iter | IFEval P(S)")
    assert "| spar-run | spar | embedded | verifier | 1 | 60.00 | 60.00 | 60.00 | 60.00 | 60.00 | – | 2 | 0.850 |" in res.output
    assert "| sr-run (iter 0 of spar-run) | self_rewarding |" in res.output
    assert "| spar-run | ifeval | 0 → 1 | 10 | 4 | 0 | 0.1250 |" in res.output
    assert "<img" in (tmp_path / "c.html").read_text()
    res = runner.invoke(app, ["compare", str(RUNS / "spar-run"), "--json"])
    data = json.loads(res.output)
    assert "ifeval_outcomes" not in data["runs"][0]["iterations"]["1"]
    res = runner.invoke(app, ["compare", str(tmp_path)])
    assert res.exit_code == 2 and "not a run directory" in res.output


def test_two_runs_are_tested_head_to_head_at_the_iteration_both_have():
    result = compare([RUNS / "spar-run", RUNS / "sr-run"])
    # iteration 1: spar-run passes prompts 0-5, sr-run 1 and 2: 4 prompts only spar passes, none only sr
    assert result["head_to_head"] == [{"a": str(RUNS / "spar-run"), "b": str(RUNS / "sr-run"), "iteration": 1,
                                       "benchmark": "ifeval", "prompts": 10, "a_only": 4, "b_only": 0, "p_value": 0.125}]
    res = CliRunner().invoke(app, ["compare", str(RUNS / "spar-run"), str(RUNS / "sr-run")])
    assert "| spar-run | sr-run | 1 | ifeval | 10 | 4 | 0 | 0.1250 |" in res.output
    assert json.loads(CliRunner().invoke(app, ["compare", str(RUNS / "spar-run"), str(RUNS / "sr-run"), "--json"]).output
                      )["head_to_head"][0]["a_only"] == 4


def _run(root: Path, name: str, model: str, iters: dict[int, list[bool]], dtype=None, manifest=None) -> Path:
    """A run directory with IFEval outcomes per iteration (prompt i passes when iters[t][i])."""
    run = root / name
    run.mkdir()
    (run / "config.yaml").write_text(f"name: {name}\nmodel: {model}\ndtype: {dtype or 'null'}\neval:\n  max_new_tokens: 256\n")
    for t, passes in iters.items():
        d = run / f"iter_{t}" / "eval"
        d.mkdir(parents=True)
        share = 100.0 * sum(passes) / len(passes)
        (d / "ifeval.json").write_text(json.dumps({m: share for m in ("prompt_strict", "inst_strict", "prompt_loose", "inst_loose")}))
        (d / "ifeval.outcomes.jsonl").write_text("".join(json.dumps({"id": str(i), "follows_strict": p}) + "\n"
                                                         for i, p in enumerate(passes)))
    if manifest is not None:
        (run / "manifest.json").write_text(json.dumps({"stages": manifest}))
    return run


def test_a_run_borrows_iteration_0_only_from_a_run_of_the_same_model_and_settings(tmp_path):
    a = _run(tmp_path, "a", "modelx", {0: [True] * 4})
    b = _run(tmp_path, "b", "modely", {0: [False] * 4})
    c = _run(tmp_path, "c", "modely", {1: [True, True, False, False]})
    d = _run(tmp_path, "d", "modely", {1: [True] * 4}, dtype="bf16")
    runs = compare([a, b, c, d])["runs"]
    assert runs[2]["start_from"] == str(b)  # not a (another model), not itself
    assert runs[2]["tests"]["ifeval"] == {"from": 0, "to": 1, "prompts": 4, "better": 2, "worse": 0, "p_value": 0.5}
    assert "start_from" not in runs[3] and runs[3]["tests"] == {}  # another dtype: no start to borrow
    assert "start_from" not in runs[0] and "start_from" not in runs[1]


def test_spend_is_summed_over_stages_and_shown_on_the_last_iteration_only(tmp_path):
    spend = lambda calls, tokens: {"calls": calls, "requests": 1, "prompt_tokens": 9, "new_tokens": tokens}  # noqa: E731
    a = _run(tmp_path, "a", "m", {0: [True, False], 1: [True, True]},
             manifest={"iter_0:eval": {"status": "done", "seconds": 1.25, "spend": spend(3, 30)},
                       "iter_1:sample": {"status": "done", "seconds": 2.5, "spend": spend(5, 70)}})
    old = _run(tmp_path, "old", "m", {0: [True, False], 1: [False, False]},
               manifest={"iter_1:sample": {"status": "done", "seconds": 4.0}, "iter_1:judge": {"status": "running"}})
    result = compare([a, old])
    assert result["runs"][0]["spend"] == {"calls": 8, "new_tokens": 100, "seconds": 3.8, "recorded": True}
    assert result["runs"][1]["spend"] == {"calls": 0, "new_tokens": 0, "seconds": 4.0, "recorded": False}
    from spar.compare import rows_of

    rows = {(r[0], r[4]): r for r in rows_of(result)}
    assert rows[("a", "0")][-3:] == ["", "", ""] and rows[("a", "1")][-3:] == ["8", "100", "4"]
    assert rows[("old", "1")][-3:] == ["–", "–", "4"] and rows[("a", "1")][5:10] == ["100.00"] * 5
    assert result["runs"][1]["tests"]["ifeval"] == {"from": 0, "to": 1, "prompts": 2, "better": 0, "worse": 1, "p_value": 1.0}


def test_a_run_is_read_with_every_evaluation_it_kept(tmp_path):
    """load_run: the judge's, FollowBench's and the refinement evaluation's figures, the pairs and
    their similarity, and the run's settings, each read from its own file and key."""
    from spar.compare import load_run

    run = _run(tmp_path, "r", "m", {1: [True, False]}, dtype="bf16")
    (run / "config.yaml").write_text("method: self\nmodel: m\ndtype: bf16\njudge:\n  mode: hybrid\neval:\n  max_new_tokens: 99\n")
    e = run / "iter_1" / "eval"
    (e / "llmbar.json").write_text(json.dumps({"by_votes": {"1": {"Overall (mean of subsets)": {"accuracy": 0.4}, "unparseable": 2},
                                                            "5": {"Overall (mean of subsets)": {"accuracy": 0.6}, "unparseable": 1}}}))
    (e / "followbench.json").write_text(json.dumps({"items": 10, "hsr_mean": 0.3, "ssr_mean": 0.5, "csl": 1.2,
                                                    "judge": "embedded", "judge_unparsed": 3}))
    (e / "refine.json").write_text(json.dumps({"failed_answers": 7, "greedy": {"pass": 2, "mean_similarity": 0.9},
                                               "dfs": {"pass": 4}, "judge_is_the_checkers": True}))
    pair = {"prompt": [], "chosen": [], "rejected": []}
    (run / "iter_1" / "dpo.jsonl").write_text("".join(json.dumps({**pair, "origin": o}) + "\n" for o in
                                                      ({"similarity": 0.8}, {"similarity": 0.6}, {})))
    (run / "iter_1" / "stats.json").write_text(json.dumps({"independent_pair_similarity": 0.35}))
    r = load_run(run)
    assert (r["method"], r["model"], r["judge"], r["dtype"], r["eval_tokens"]) == ("self", "m", "hybrid", "bf16", 99)
    it = r["iterations"][1]
    assert it["llmbar"] == {"votes": 5, "accuracy": 0.6, "unparseable": 1}
    assert it["followbench"] == {"items": 10, "hsr": 0.3, "ssr": 0.5, "csl": 1.2, "judge": "embedded", "unparsed": 3}
    assert it["refine"] == {"failed": 7, "greedy": 2, "search": 4, "similarity": 0.9, "checker_judge": True}
    assert it["rows"] == 3 and it["pair_similarity"] == 0.7 and it["independent_similarity"] == 0.35
    assert it["ifeval"]["prompt_strict"] == 50.0 and it["ifeval_outcomes"] == {"0": True, "1": False}
    assert r["spend"] == {"calls": 0, "new_tokens": 0, "seconds": 0.0, "recorded": True}  # no manifest: nothing spent
    from spar.compare import _refiner_cells

    assert _refiner_cells(it) == ["0.6", "5", "1", "7", "2", "4", "0.9", "True"]
    assert _refiner_cells({}) == ["–"] * 8
    (e / "refine.json").write_text(json.dumps({"failed_answers": 7, "greedy": {"pass": 2}, "bfs": {"pass": 3}}))
    (run / "iter_1" / "dpo.jsonl").unlink()
    (run / "iter_1" / "sft.jsonl").write_text(json.dumps({"messages": [], "origin": {}}) + "\n")
    it = load_run(run)["iterations"][1]
    assert it["refine"]["search"] == 3 and it["rows"] == 1 and it["pair_similarity"] is None
    (run / "config.yaml").write_text("model: m\n")
    r = load_run(run)
    assert (r["method"], r["judge"], r["eval_tokens"]) == ("spar", None, None)


def test_one_iteration_reader_and_one_spend_sum(tmp_path):
    from spar.report import iterations, spend_totals

    for name in ("iter_10", "iter_2", "iter_0", "iter_x", "notes"):
        (tmp_path / name).mkdir()
    assert [t for t, _ in iterations(tmp_path)] == [0, 2, 10]
    stages = {"a": {"seconds": 1.25, "status": "done", "spend": {"calls": 2, "new_tokens": 10, "prompt_tokens": 3}},
              "b": {"seconds": 2.0, "status": "done", "spend": {"calls": 1, "requests": 4, "new_tokens": 5}},
              "c": {"seconds": None, "status": "failed"}}
    assert spend_totals(stages) == {"seconds": 3.2, "calls": 3, "requests": 4, "prompt_tokens": 3, "new_tokens": 15,
                                    "recorded": True}
    stages["d"] = {"seconds": 1, "status": "done"}  # a finished stage from before spend was recorded
    assert spend_totals(stages)["recorded"] is False
