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
