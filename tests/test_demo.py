"""`spar demo` end to end on the embedded model (~10 minutes on 2 cores: `make test-slow`)."""

import json

import pytest
from typer.testing import CliRunner

from spar.cli import app

pytestmark = [pytest.mark.slow, pytest.mark.model]


def test_demo_runs_one_whole_iteration(tmp_path):
    run = tmp_path / "demo"
    res = CliRunner().invoke(app, ["demo", "--run-dir", str(run)])
    assert res.exit_code == 0, res.output
    for f in ("config.yaml", "manifest.json", "prompts.jsonl", "report.html", "iter_1/samples.jsonl", "iter_1/judgments.jsonl",
              "iter_1/negatives.jsonl", "iter_1/trees.jsonl", "iter_1/dpo.jsonl", "iter_1/rft.jsonl",
              "iter_0/eval/heldout.json", "iter_1/eval/heldout.json"):
        assert (run / f).exists(), f
    manifest = json.loads((run / "manifest.json").read_text())
    assert all(s["status"] == "done" for s in manifest["stages"].values())
    assert "before / after" in res.output
    again = CliRunner().invoke(app, ["demo", "--run-dir", str(run)])  # everything is done: nothing reruns
    assert again.exit_code == 0 and "done, inputs unchanged" in again.output
