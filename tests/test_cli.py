import json
import subprocess
import sys
import time

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fake import FakeBackend
from spar.cli import app
from spar.generate import generate_file
from spar.io import read_jsonl, read_prompts
from spar.llm import Sampling
from spar.types import Completion

runner = CliRunner()
SPAR = [sys.executable, "-m", "spar"]


@pytest.mark.parametrize("args", [[], ["generate"], ["serve"], ["demo"]])
def test_help_is_fast_and_imports_nothing_heavy(args):
    t = time.perf_counter()
    res = subprocess.run(SPAR + args + ["--help"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert time.perf_counter() - t < 3.0  # under a second warm; margin for a loaded CI machine
    code = "import sys, spar.cli; print(sorted(m for m in ('torch', 'transformers', 'trl') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "[]"


def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path):
    bad = tmp_path / "p.jsonl"
    bad.write_text('{"id": "a", "prompt": "ok"}\n{"id": "b", "prompt": 5}\n')
    out = tmp_path / "out.jsonl"
    res = runner.invoke(app, ["generate", "--input", str(bad), "--output", str(out)])
    assert res.exit_code == 2
    assert f"{bad}:2:" in res.output and len(res.output.strip().splitlines()) == 1
    assert not out.exists()


def test_generate_resumes_without_lost_or_doubled_rows(tmp_path):
    src = tmp_path / "p.jsonl"
    src.write_text("".join(json.dumps({"id": f"p{i}", "prompt": f"question {i}"}) + "\n" for i in range(10)))
    prompts = read_prompts(src)
    out = tmp_path / "out.jsonl"

    class Dies(FakeBackend):
        def generate(self, requests, sampling, on_batch=None):
            if len(self.calls) == 2:
                raise KeyboardInterrupt  # killed during the third chunk
            return super().generate(requests, sampling, on_batch)

    with pytest.raises(KeyboardInterrupt):
        generate_file(Dies(default="a"), prompts, out, Sampling(), chunk=3, show=False)
    assert [r.id for r in read_jsonl(out, Completion)] == ["p0", "p1", "p2", "p3", "p4", "p5"]
    again = FakeBackend(default="a")
    rows = generate_file(again, prompts, out, Sampling(), chunk=3, show=False)
    assert [r.id for r in rows] == [f"p{i}" for i in range(10)]
    assert sorted(r.id for r in read_jsonl(out, Completion)) == sorted(f"p{i}" for i in range(10))
    assert sum(len(c[0]) for c in again.calls) == 4  # only the rest was generated


def test_builtin_examples_parse():
    from importlib.resources import files

    assert len(read_prompts(files("spar") / "data" / "examples.jsonl")) >= 5


def test_bootstrap_refiner_and_tree_stats_commands(tmp_path):
    from test_bootstrap import completions
    from spar.io import write_jsonl
    from spar.types import Judgment, Negative, Node, Tree

    samples = tmp_path / "samples.jsonl"
    write_jsonl(samples, completions(16))
    out, ev = tmp_path / "boot.jsonl", tmp_path / "eval.jsonl"
    pairs = tmp_path / "pairs.jsonl"
    res = runner.invoke(app, ["bootstrap", "refiner", "-i", str(samples), "-o", str(out), "--eval-out", str(ev),
                              "--heldout-kinds", "keywords:forbidden_words", "--pairs-out", str(pairs),
                              "--kinds", "keywords:forbidden_words,startend:end_checker,punctuation:no_comma"])
    assert res.exit_code == 0, res.output
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert rows and all(r["origin"]["broken"] in ("startend:end_checker", "punctuation:no_comma") for r in rows)
    assert len(pairs.read_text().splitlines()) == len(rows)
    negs = read_jsonl(ev, Negative)
    assert negs and "break-and-restore examples" in res.output
    # the input is never the output; an unknown kind is one line and exit 2
    res = runner.invoke(app, ["bootstrap", "refiner", "-i", str(samples), "-o", str(samples)])
    assert res.exit_code == 2 and "output is the input" in res.output
    res = runner.invoke(app, ["bootstrap", "refiner", "-i", str(samples), "-o", str(out), "--heldout-kinds", "nope"])
    assert res.exit_code == 2 and "no breaker" in res.output
    # tree stats: one solved tree whose chosen answer drifted, one faithful
    n = negs[0]
    nodes = lambda chosen: [Node(id=0, parent=None, depth=0, response=n.response, judgment=n.judgment),  # noqa: E731
                            Node(id=1, parent=0, depth=1, response=chosen, judgment=Judgment(follows=True))]
    trees = [Tree(id=f"{n.prompt.id}#{i}", prompt_id=n.prompt.id, nodes=nodes(c), solved=True, expanded=1, strategy="bfs", solution=1)
             for i, c in enumerate([n.response + " x", "Something else entirely."])]
    tpath = tmp_path / "trees.jsonl"
    write_jsonl(tpath, trees)
    res = runner.invoke(app, ["tree", "stats", str(tpath), "--prompts", str(ev), "--show", "1"])
    assert res.exit_code == 0, res.output
    st = json.loads(res.output.splitlines()[0])
    assert st["pairs"] == 1 and st["pairs_dropped"] == 1 and "=== pair 1" in res.output
    st = json.loads(runner.invoke(app, ["tree", "stats", str(tpath), "--prompts", str(ev), "--no-guard"]).output)
    assert st["pairs"] == 2 and st["pairs_dropped"] == 0


@pytest.mark.parametrize("args", [
    ["generate", "--batch-size", "-1"], ["generate", "--temperature", "nan"], ["generate", "-n", "0"],
    ["generate", "--top-p", "1.5"], ["generate", "--max-new-tokens", "0"], ["judge", "--votes", "0"],
    ["search", "--budget", "0"], ["search", "--min-similarity", "2"], ["eval", "ifeval", "--limit", "-1"],
    ["serve", "--port", "0"],
])
def test_numeric_options_out_of_range_exit_2_before_writing(tmp_path, args):
    out = tmp_path / "out.jsonl"
    res = runner.invoke(app, [*args, "-o", str(out)] if args[0] in ("generate", "judge", "search") else args)
    assert res.exit_code == 2, res.output
    assert not out.exists()


RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "smollm2-135m" / "demo.yaml"


def test_os_refusals_and_bad_bytes_are_one_line_errors(tmp_path):
    good = tmp_path / "p.jsonl"
    good.write_text('{"id": "a", "prompt": "Say hi."}\n')
    bad_utf8 = tmp_path / "bad.jsonl"
    bad_utf8.write_bytes(b'{"id": "a", "prompt": "Say hi."}\n{"id": "b", "prompt": "\xff\xfe"}\n')
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    cases = [
        (["generate", "-i", str(tmp_path), "-o", str(tmp_path / "o.jsonl")], "a directory"),
        (["generate", "-i", str(bad_utf8), "-o", str(tmp_path / "o.jsonl")], "bad.jsonl:2: not UTF-8"),
        (["iterate", "--config", str(tmp_path)], "not a directory"),
        (["iterate", "--config", str(RECIPE), "--set", "seed.x=1", "--until", "prompts", "--run-dir", str(tmp_path / "r")],
         "seed is not a section"),
    ]
    if os.geteuid() != 0:  # root writes into read-only directories anyway
        cases.append((["prompts", "build", "--out", str(ro / "x.jsonl"), "--count", "2"], "ermission"))
    for args, part in cases:
        res = runner.invoke(app, args)
        assert res.exit_code == 2 and part in res.output and "Traceback" not in res.output, (args, res.output)


def test_the_demo_prints_its_pairs_as_edits_or_says_there_are_none(tmp_path):
    from rich.console import Console

    from spar.report import print_pairs as _print_pairs

    path = tmp_path / "dpo.jsonl"
    row = {"schema_version": 1, "prompt": [{"role": "user", "content": "Describe tea. No commas. Leave a field such as [name]."}],
           "chosen": [{"role": "assistant", "content": "Tea is warm and green."}],
           "rejected": [{"role": "assistant", "content": "Tea is warm, and green."}],
           "origin": {"tree": "p#0", "similarity": 0.95, "depth": 1}}
    path.write_text(json.dumps(row) + "\n")
    console = Console(record=True, width=120)
    _print_pairs(console, path)
    out = console.export_text()
    assert "1 pair(s)" in out and "Describe tea. No commas. Leave a field such as [name]." in out and "similarity 0.95" in out
    assert "warm," in out and "warm " in out  # both sides of the edit are shown
    console = Console(record=True, width=120)
    _print_pairs(console, tmp_path / "missing.jsonl")
    out = console.export_text()
    assert "0 pair(s)" in out and "none this time" in out


def test_shipped_recipes_and_accelerate_configs_are_found_by_name_outside_a_checkout(tmp_path, monkeypatch):
    from spar.config import load_config, shipped
    from spar.stages import launch_command
    from spar.settings import TrainSettings

    monkeypatch.chdir(tmp_path)  # no recipes/ folder here
    for name in ("llama3-8b/spar", "llama3-8b/spar.yaml", "recipes/llama3-8b/spar.yaml"):
        assert shipped(name).is_file() and shipped(name).name == "spar.yaml"
    cfg = load_config("llama3-8b/spar")
    assert cfg.launcher.config_file == "recipes/accelerate/zero3.yaml"
    cmd = launch_command("dpo", "w", Path("d"), Path("o"), TrainSettings(), 0, cfg.launcher)
    assert Path(cmd[cmd.index("--config_file") + 1]).is_file()
    (tmp_path / "llama3-8b").mkdir()
    (tmp_path / "llama3-8b" / "spar").write_text("name: mine\n")
    assert shipped("llama3-8b/spar") == Path("llama3-8b/spar")  # a file here wins
    res = CliRunner().invoke(app, ["iterate", "--config", "nope/recipe", "--run-dir", str(tmp_path / "r")])
    assert res.exit_code == 2 and "nope/recipe" in res.output
    res = CliRunner().invoke(app, ["iterate", "--config", "smollm2-135m/demo", "--run-dir", str(tmp_path / "r"),
                                   "--until", "prompts"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "r" / "prompts.jsonl").is_file()


def test_stage_commands_default_to_the_loops_settings():
    """`spar judge` / `spar search` by hand run what `spar iterate` runs: every option named after a
    settings field defaults to that field's default (search.max_new_tokens once defaulted to the
    judge's 384 by hand against 512 in the loop)."""
    import typer.main

    from spar.cli import app
    from spar.settings import JudgeSettings, SearchSettings

    commands = typer.main.get_command(app).commands
    expected = {
        "judge": {name: f.default for name, f in JudgeSettings.model_fields.items()},
        "search": {**{f"judge_{n}" if n == "max_new_tokens" else n: f.default
                      for n, f in JudgeSettings.model_fields.items() if n in ("votes", "mode", "max_new_tokens")},
                   **{n: f.default for n, f in SearchSettings.model_fields.items()}},
    }
    for cmd, fields in expected.items():
        params = {p.name: p.default for p in commands[cmd].params}
        shared = sorted(set(params) & set(fields))
        assert len(shared) >= 5, (cmd, shared)
        for name in shared:
            assert params[name] == fields[name], f"spar {cmd} --{name.replace('_', '-')}: {params[name]!r} vs {fields[name]!r}"
    assert {p.name: p.default for p in commands["search"].params}["max_new_tokens"] == 512


def test_bootstrap_defaults_are_declared_once():
    """`spar bootstrap refiner`, the loop's bootstrap settings and the bootstrap's own config agree
    (per_answer, extra, judgments, whole_fixes, eval_share, budget)."""
    import dataclasses

    import typer.main

    from spar.cli import app
    from spar.selfplay.bootstrap import BootstrapConfig
    from spar.settings import BootstrapSettings

    cmd = typer.main.get_command(app).commands["bootstrap"].commands["refiner"]
    params = {p.name: p.default for p in cmd.params}
    settings = {n: f.default for n, f in BootstrapSettings.model_fields.items()}
    config = {f.name: f.default for f in dataclasses.fields(BootstrapConfig)}
    shared = ("per_answer", "extra", "judgments", "whole_fixes", "eval_share", "findings")
    for name in shared:
        assert params[name] == settings[name] == config[name], name
    assert params["budget"] == settings["budget"]
