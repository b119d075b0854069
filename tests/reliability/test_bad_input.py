"""The bad-input corpus: every command that reads a file, given what a hurried or hostile user
gives it. Each case is a row: the files laid out, the command, the expected exit code and a part of
the message. For every row: exit code 2, one line on the output, the message names what is wrong
(file and line where there is one), and the directory is byte for byte as it was (no input
modified, nothing half written)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from spar.cli import app

runner = CliRunner()
J = json.dumps
USER = [{"role": "user", "content": "Describe the sea without commas."}]
CONS = [{"kind": "punctuation:no_comma"}]
PROMPT = J({"id": "a", "prompt": "Say hi."}) + "\n"
PROMPTS2 = PROMPT + J({"id": "b", "prompt": "Say bye."}) + "\n"
SAMPLE = {"id": "a", "prompt": USER, "completions": ["The sea is blue", "The sea, it is grey"], "constraints": CONS}
NEG = {"prompt": {"id": "a", "messages": USER, "constraints": CONS}, "index": 0, "response": "The sea, grey.",
       "judgment": {"follows": False, "votes": [False]}}
NODE = {"id": 0, "parent": None, "depth": 0, "response": "The sea, grey."}
TREE = {"id": "a#0", "prompt_id": "a", "nodes": [NODE], "solved": False, "expanded": 0, "strategy": "bfs"}
PAIR = {"prompt": USER, "chosen": [{"role": "assistant", "content": "The sea is grey."}],
        "rejected": [{"role": "assistant", "content": "The sea, grey."}]}
IFEVAL = {"key": 1, "prompt": "Describe the sea without commas.", "instruction_id_list": ["punctuation:no_comma"],
          "kwargs": [{}]}
RECIPE = "name: r\nmodel: embedded\nprompts:\n  count: 4\n"


def lines(*rows) -> str:
    return "".join((r if isinstance(r, str) else J(r)) + "\n" for r in rows)


@dataclass
class Case:
    kind: str
    files: dict[str, str | bytes | None]  # name -> text, bytes, or None for a directory
    args: list[str]  # "{d}" is the case's directory
    message: str  # a part of the one-line message ("{d}" allowed)
    code: int = 2
    root_ok: bool = True  # False: root ignores file permissions, so the case cannot be made
    usage: bool = False  # refused by the option parser: click's usage box (exit 2), not one line


CASES = [
    # --- spar generate: prompts in, completions out
    Case("missing input file", {}, ["generate", "-i", "{d}/nope.jsonl", "-o", "{d}/o.jsonl"], "nope.jsonl"),
    Case("input is a directory", {"p": None}, ["generate", "-i", "{d}/p", "-o", "{d}/o.jsonl"], "a directory"),
    Case("empty input file", {"p.jsonl": ""}, ["generate", "-i", "{d}/p.jsonl", "-o", "{d}/o.jsonl"], "no prompts"),
    Case("invalid JSON on a line", {"p.jsonl": PROMPT + '{"id": "b", "prompt": \n'},
         ["generate", "-i", "{d}/p.jsonl", "-o", "{d}/o.jsonl"], "p.jsonl:2:"),
    Case("a row that is not an object", {"p.jsonl": PROMPT + '["b", "Say bye."]\n'},
         ["generate", "-i", "{d}/p.jsonl", "-o", "{d}/o.jsonl"], "p.jsonl:2:"),
    Case("prompt of the wrong type", {"p.jsonl": PROMPT + lines({"id": "b", "prompt": 5})},
         ["generate", "-i", "{d}/p.jsonl", "-o", "{d}/o.jsonl"], "p.jsonl:2:"),
    Case("id null", {"p.jsonl": lines({"id": None, "prompt": "Say hi."})},
         ["generate", "-i", "{d}/p.jsonl", "-o", "{d}/o.jsonl"], "p.jsonl:1:"),
    Case("repeated ids", {"p.jsonl": PROMPT + PROMPT}, ["generate", "-i", "{d}/p.jsonl", "-o", "{d}/o.jsonl"], "p.jsonl:2:"),
    Case("unknown message role", {"p.jsonl": lines({"id": "a", "messages": [{"role": "wizard", "content": "hi"}]})},
         ["generate", "-i", "{d}/p.jsonl", "-o", "{d}/o.jsonl"], "p.jsonl:1:"),
    Case("schema from a newer spar", {"p.jsonl": lines({"id": "a", "prompt": "hi", "schema_version": 99})},
         ["generate", "-i", "{d}/p.jsonl", "-o", "{d}/o.jsonl"], "p.jsonl:1:"),
    Case("bytes that are not UTF-8", {"p.jsonl": PROMPT.encode() + b'{"id": "b", "prompt": "\xff\xfe"}\n'},
         ["generate", "-i", "{d}/p.jsonl", "-o", "{d}/o.jsonl"], "p.jsonl:2: not UTF-8"),
    Case("output is the input", {"p.jsonl": PROMPTS2}, ["generate", "-i", "{d}/p.jsonl", "-o", "{d}/p.jsonl"],
         "output is the input"),
    Case("output is a directory", {"p.jsonl": PROMPT, "o": None}, ["generate", "-i", "{d}/p.jsonl", "-o", "{d}/o"],
         "a directory"),
    Case("an output with a foreign torn last line", {"p.jsonl": PROMPTS2, "o.jsonl": '{"id": "a", "prompt": [], "comp'},
         ["generate", "-i", "{d}/p.jsonl", "-o", "{d}/o.jsonl"], "o.jsonl:1:"),
    Case("a device that is not there", {"p.jsonl": PROMPT},
         ["generate", "-i", "{d}/p.jsonl", "-o", "{d}/o.jsonl", "--device", "cuda:7"], "cuda"),
    Case("a length beyond the model's context (read from its config or GGUF header, nothing loaded)", {"p.jsonl": PROMPT},
         ["generate", "-i", "{d}/p.jsonl", "-o", "{d}/o.jsonl", "--max-new-tokens", "1000000000"],
         "exceeds the model's context"),
    Case("a dtype that does not exist", {"p.jsonl": PROMPT},
         ["generate", "-i", "{d}/p.jsonl", "-o", "{d}/o.jsonl", "--dtype", "fp8"], "dtype"),
    Case("an unknown model string", {"p.jsonl": PROMPT}, ["generate", "-m", "nosuch:thing", "-i", "{d}/p.jsonl",
                                                          "-o", "{d}/o.jsonl"], "nosuch"),
    Case("a negative batch size", {"p.jsonl": PROMPT},
         ["generate", "-i", "{d}/p.jsonl", "-o", "{d}/o.jsonl", "--batch-size", "-1"], "--batch-size", usage=True),
    Case("a temperature that is not a number", {"p.jsonl": PROMPT},
         ["generate", "-i", "{d}/p.jsonl", "-o", "{d}/o.jsonl", "--temperature", "nan"], "--temperature", usage=True),
    # --- spar judge: samples in, judgments out
    Case("completions that are not a list", {"s.jsonl": lines({**SAMPLE, "completions": "The sea"})},
         ["judge", "-i", "{d}/s.jsonl", "-o", "{d}/j.jsonl", "--mode", "verifier"], "s.jsonl:1:"),
    Case("a constraint kind with no checker", {"s.jsonl": lines({**SAMPLE, "constraints": [{"kind": "punctuation:no_coma"}]})},
         ["judge", "-i", "{d}/s.jsonl", "-o", "{d}/j.jsonl", "--mode", "verifier"], "punctuation:no_comma"),
    Case("kwargs a checker cannot take, on row 3",
         {"s.jsonl": lines(SAMPLE, {**SAMPLE, "id": "b"},
                           {**SAMPLE, "id": "c", "constraints": [{"kind": "keywords:existence", "kwargs": {"nope": 1}}]})},
         ["judge", "-i", "{d}/s.jsonl", "-o", "{d}/j.jsonl", "--mode", "verifier"], "s.jsonl:3:"),
    Case("repeated sample ids", {"s.jsonl": lines(SAMPLE, SAMPLE)},
         ["judge", "-i", "{d}/s.jsonl", "-o", "{d}/j.jsonl", "--mode", "verifier"], "s.jsonl:2:"),
    Case("a sample row without its prompt", {"s.jsonl": lines({"id": "a", "completions": ["x"]})},
         ["judge", "-i", "{d}/s.jsonl", "-o", "{d}/j.jsonl", "--mode", "verifier"], "s.jsonl:1:"),
    Case("an unknown judge mode", {"s.jsonl": lines(SAMPLE)},
         ["judge", "-i", "{d}/s.jsonl", "-o", "{d}/j.jsonl", "--mode", "oracle"], "mode"),
    Case("judgments written over the samples", {"s.jsonl": lines(SAMPLE)},
         ["judge", "-i", "{d}/s.jsonl", "-o", "{d}/s.jsonl", "--mode", "verifier"], "output is the input"),
    # --- spar search: negatives in, trees out
    Case("a negative without its judgment", {"n.jsonl": lines({k: v for k, v in NEG.items() if k != "judgment"})},
         ["search", "-i", "{d}/n.jsonl", "-o", "{d}/t.jsonl", "--mode", "verifier"], "n.jsonl:1:"),
    Case("a negative whose prompt is a string", {"n.jsonl": lines({**NEG, "prompt": "Describe the sea."})},
         ["search", "-i", "{d}/n.jsonl", "-o", "{d}/t.jsonl", "--mode", "verifier"], "n.jsonl:1:"),
    # --- spar tree show / stats: trees in
    Case("a tree whose nodes are each other's parents",
         {"t.jsonl": lines({**TREE, "nodes": [{**NODE, "parent": 1}, {**NODE, "id": 1, "parent": 0, "depth": 1}]})},
         ["tree", "show", "{d}/t.jsonl"], "t.jsonl:1:"),
    Case("a node whose parent is not in the tree",
         {"t.jsonl": lines({**TREE, "nodes": [NODE, {**NODE, "id": 1, "parent": 7, "depth": 1}]})},
         ["tree", "show", "{d}/t.jsonl"], "t.jsonl:1:"),
    Case("a solution id that is not a node", {"t.jsonl": lines({**TREE, "solved": True, "solution": 4})},
         ["tree", "show", "{d}/t.jsonl"], "t.jsonl:1:"),
    Case("a tree with no nodes", {"t.jsonl": lines({**TREE, "nodes": []})}, ["tree", "show", "{d}/t.jsonl"], "t.jsonl:1:"),
    Case("repeated node ids", {"t.jsonl": lines({**TREE, "nodes": [NODE, {**NODE, "parent": 0, "depth": 1}]})},
         ["tree", "show", "{d}/t.jsonl"], "t.jsonl:1:"),
    # --- spar eval ifeval: benchmark data and responses in, scores out
    Case("IFEval data that is not there", {}, ["eval", "ifeval", "--data", "{d}/nope.jsonl", "--responses",
                                               "{d}/nope2.jsonl", "-o", "{d}/s.json"], "nope"),
    Case("an IFEval row without its instruction list", {"i.jsonl": lines({"key": 1, "prompt": "x"}), "r.jsonl": ""},
         ["eval", "ifeval", "--data", "{d}/i.jsonl", "--responses", "{d}/r.jsonl", "-o", "{d}/s.json"], "i.jsonl:1"),
    Case("an instruction id with no checker", {"i.jsonl": lines({**IFEVAL, "instruction_id_list": ["punctuation:no_colon"]}),
                                               "r.jsonl": lines({"id": "1", "response": "x"})},
         ["eval", "ifeval", "--data", "{d}/i.jsonl", "--responses", "{d}/r.jsonl", "-o", "{d}/s.json"], "no_colon"),
    Case("responses whose completions is a string", {"i.jsonl": lines(IFEVAL),
                                                     "r.jsonl": lines({"id": "1", "completions": "The sea"})},
         ["eval", "ifeval", "--data", "{d}/i.jsonl", "--responses", "{d}/r.jsonl", "-o", "{d}/s.json"], "r.jsonl:1:"),
    Case("a response for no prompt of the data", {"i.jsonl": lines(IFEVAL), "r.jsonl": lines({"id": "99", "response": "x"})},
         ["eval", "ifeval", "--data", "{d}/i.jsonl", "--responses", "{d}/r.jsonl", "-o", "{d}/s.json"], "r.jsonl:1:"),
    Case("scores written over the responses", {"i.jsonl": lines(IFEVAL), "r.jsonl": lines({"id": "1", "response": "x"})},
         ["eval", "ifeval", "--data", "{d}/i.jsonl", "--responses", "{d}/r.jsonl", "-o", "{d}/r.jsonl"], "r.jsonl"),
    Case("LLMBar data folder that is not there", {}, ["eval", "llmbar", "--data", "{d}/LLMBar", "-o", "{d}/s.json"],
         "LLMBar"),
    # --- spar train: rows in, a model out
    Case("DPO rows of the wrong types", {"d.jsonl": lines(PAIR, {**PAIR, "chosen": 5})},
         ["train", "dpo", "--data", "{d}/d.jsonl", "--out", "{d}/m"], "d.jsonl:2:"),
    Case("an empty DPO file", {"d.jsonl": ""}, ["train", "dpo", "--data", "{d}/d.jsonl", "--out", "{d}/m"], "d.jsonl"),
    Case("a training setting that is not a number", {"d.jsonl": lines(PAIR)},
         ["train", "dpo", "--data", "{d}/d.jsonl", "--out", "{d}/m", "--set", "batch_size=abc"], "batch_size"),
    Case("a training setting that does not exist", {"d.jsonl": lines(PAIR)},
         ["train", "dpo", "--data", "{d}/d.jsonl", "--out", "{d}/m", "--set", "bata=0.1"], "bata"),
    Case("SFT rows without a completion", {"r.jsonl": lines({"prompt": USER})},
         ["train", "sft", "--data", "{d}/r.jsonl", "--out", "{d}/m"], "r.jsonl:1:"),
    # --- spar bootstrap refiner: samples in, refiner rows out
    Case("refiner rows written over the samples", {"s.jsonl": lines(SAMPLE)},
         ["bootstrap", "refiner", "-i", "{d}/s.jsonl", "-o", "{d}/s.jsonl"], "output is the input"),
    Case("a held-out kind with no breaker", {"s.jsonl": lines(SAMPLE)},
         ["bootstrap", "refiner", "-i", "{d}/s.jsonl", "-o", "{d}/b.jsonl", "--heldout-kinds", "nope"], "no breaker"),
    # --- spar iterate: a recipe in, a run out
    Case("a recipe that is not there", {}, ["iterate", "--config", "{d}/r.yaml", "--run-dir", "{d}/run"], "r.yaml"),
    Case("a recipe that is a directory", {"r.yaml": None}, ["iterate", "--config", "{d}/r.yaml", "--run-dir", "{d}/run"],
         "directory"),
    Case("a recipe that is not YAML", {"r.yaml": RECIPE + "sample: [k: 4\n"},
         ["iterate", "--config", "{d}/r.yaml", "--run-dir", "{d}/run"], "r.yaml:"),
    Case("a recipe key that does not exist", {"r.yaml": RECIPE + "sample:\n  kk: 4\n"},
         ["iterate", "--config", "{d}/r.yaml", "--run-dir", "{d}/run"], "r.yaml:6"),
    Case("a recipe value of the wrong type", {"r.yaml": RECIPE + "sample:\n  k: many\n"},
         ["iterate", "--config", "{d}/r.yaml", "--run-dir", "{d}/run"], "r.yaml:6"),
    Case("--set into a value that is not a section", {"r.yaml": RECIPE},
         ["iterate", "--config", "{d}/r.yaml", "--run-dir", "{d}/run", "--set", "seed.x=1"], "seed is not a section"),
    Case("--set with a value that is not YAML", {"r.yaml": RECIPE},
         ["iterate", "--config", "{d}/r.yaml", "--run-dir", "{d}/run", "--set", "sample.k=[1"], "sample.k"),
    Case("--set without '='", {"r.yaml": RECIPE},
         ["iterate", "--config", "{d}/r.yaml", "--run-dir", "{d}/run", "--set", "sample.k"], "KEY=VALUE"),
    Case("an unknown method", {"r.yaml": RECIPE},
         ["iterate", "--config", "{d}/r.yaml", "--run-dir", "{d}/run", "--method", "magic"], "method:"),
    # --- spar compare / report: run directories in
    Case("compare: a directory that is not a run", {"x": None}, ["compare", "{d}/x"], "not a run directory"),
    Case("compare: a run whose manifest is not JSON", {"x/config.yaml": RECIPE, "x/manifest.json": "{not json"}, ["compare", "{d}/x"],
         "manifest.json"),
    Case("report: a run directory that is not there", {}, ["report", "{d}/nope"], "nope"),
    # --- spar sandbox run: a program in
    Case("sandbox: a program that is not there", {}, ["sandbox", "run", "{d}/f.py", "--call", "evaluate", "--input", "[]"], "f.py: no such file"),
    Case("sandbox: arguments that are not JSON", {"f.py": "def evaluate(r):\n    return True\n"},
         ["sandbox", "run", "{d}/f.py", "--call", "evaluate", "--input", "{oops"], "JSON"),
    # --- spar eval refine: failed answers in
    Case("refine: neither negatives nor a benchmark", {}, ["eval", "refine", "-o", "{d}/s.json"], "either --failed"),
    Case("refine: a negative row of the wrong shape", {"n.jsonl": lines({**NEG, "index": "first"})},
         ["eval", "refine", "--failed", "{d}/n.jsonl", "-o", "{d}/s.json"], "n.jsonl:1:"),
    Case("refine: scores written over the negatives", {"n.jsonl": lines(NEG)},
         ["eval", "refine", "--failed", "{d}/n.jsonl", "-o", "{d}/n.jsonl"], "output is the input"),
    # --- spar eval followbench: the benchmark's files in
    Case("followbench: a data folder without its files", {"fb": None},
         ["eval", "followbench", "--data", "{d}/fb", "--rules-only", "--responses", "{d}/fb", "-o", "{d}/s.json"],
         "content_constraints.json: no such file"),
    Case("followbench: a file that is not JSON", {"fb/content_constraints.json": "[{", "r.jsonl": ""},
         ["eval", "followbench", "--data", "{d}/fb", "--rules-only", "--responses", "{d}/r.jsonl", "-o", "{d}/s.json"],
         "content_constraints.json:1:"),
    # --- spar experiment lr-sweep: pairs and held-out prompts in
    Case("lr-sweep: pairs of the wrong types", {"d.jsonl": lines({**PAIR, "rejected": None}), "h.jsonl": PROMPT},
         ["experiment", "lr-sweep", "--pairs", "{d}/d.jsonl", "--heldout", "{d}/h.jsonl", "-o", "{d}/o"], "d.jsonl:1:"),
    # --- spar prompts build: only an output, which must be writable
    Case("prompts: fewer constraints at most than at least", {},
         ["prompts", "build", "-o", "{d}/p.jsonl", "--min-constraints", "3", "--max-constraints", "2"], "constraints"),
    Case("prompts: an output in a read-only directory", {"ro": None},
         ["prompts", "build", "-o", "{d}/ro/p.jsonl", "--count", "2"], "ermission", root_ok=False),
    # --- second round: what a hostile user tried next
    Case("a recipe named '..' and no --run-dir (runs/.. is the current directory)", {"r.yaml": "name: ..\nmodel: embedded\n"},
         ["iterate", "--config", "{d}/r.yaml"], "r.yaml:1: name"),
    Case("a run directory that is the current directory", {"r.yaml": RECIPE}, ["iterate", "--config", "{d}/r.yaml", "--run-dir", "."],
         "the current directory"),
    Case("a run directory above the current directory", {"r.yaml": RECIPE}, ["iterate", "--config", "{d}/r.yaml", "--run-dir", ".."],
         "the current directory or one above it"),
    Case("a run directory holding someone else's config.yaml", {"r.yaml": RECIPE, "run/config.yaml": "mine"},
         ["iterate", "--config", "{d}/r.yaml", "--run-dir", "{d}/run"], "holds config.yaml, which no spar run wrote"),
    Case("a run directory holding someone else's report.html", {"r.yaml": RECIPE, "run/report.html": "mine"},
         ["iterate", "--config", "{d}/r.yaml", "--run-dir", "{d}/run"], "holds report.html"),
    Case("a recipe that is not UTF-8", {"r.yaml": RECIPE.encode() + b"# caf\xe9\n"},
         ["iterate", "--config", "{d}/r.yaml", "--run-dir", "{d}/run"], "r.yaml:5: not UTF-8"),
    Case("a recipe key given twice", {"r.yaml": RECIPE + "seed: 1\nseed: 2\n"},
         ["iterate", "--config", "{d}/r.yaml", "--run-dir", "{d}/run"], "r.yaml:6: not valid YAML (key 'seed' given twice"),
    Case("a prompt count of 1e12", {"r.yaml": RECIPE},
         ["iterate", "--config", "{d}/r.yaml", "--run-dir", "{d}/run", "--set", "prompts.count=1000000000000"], "prompts.count"),
    Case("a recipe whose model is misspelt", {"r.yaml": RECIPE.replace("model: embedded", "model: embeded")},
         ["iterate", "--config", "{d}/r.yaml", "--run-dir", "{d}/run"], "r.yaml: model: model 'embeded'"),
    Case("a recipe whose IFEval data is not there", {"r.yaml": RECIPE + "eval:\n  ifeval_data: /no/such/ifeval.jsonl\n"},
         ["iterate", "--config", "{d}/r.yaml", "--run-dir", "{d}/run"], "eval.ifeval_data: /no/such/ifeval.jsonl: no such file"),
    Case("a FIFO as input (a reader would wait forever)", {"p.jsonl": "FIFO"}, ["generate", "-i", "{d}/p.jsonl", "-o", "{d}/o.jsonl"],
         "a FIFO, not a regular file"),
    Case("an endless device as input", {}, ["generate", "-i", "/dev/zero", "-o", "{d}/o.jsonl"], "/dev/zero: a character device"),
    Case("an endless device as output", {"p.jsonl": PROMPT}, ["generate", "-i", "{d}/p.jsonl", "-o", "/dev/full"],
         "/dev/full: a character device"),
    Case("a symlink loop as input", {"p.jsonl": "LOOP"}, ["generate", "-i", "{d}/p.jsonl", "-o", "{d}/o.jsonl"], "p.jsonl: Too many levels of symbolic links"),
    Case("an output in a folder that is a file", {"p.jsonl": PROMPT, "f": "x"}, ["generate", "-i", "{d}/p.jsonl", "-o", "{d}/f/o.jsonl"],
         "f/o.jsonl: Not a directory"),
    Case("an output that is the input by another name", {"p.jsonl": PROMPT, "q.jsonl": "LINK:p.jsonl"},
         ["generate", "-i", "{d}/p.jsonl", "-o", "{d}/q.jsonl"], "output is the input"),
    Case("JSON nested 10,000 deep", {"p.jsonl": '{"id": "a", "prompt": "hi", "x": ' + "[" * 10000 + "]" * 10000 + "}\n"},
         ["generate", "-i", "{d}/p.jsonl", "-o", "{d}/o.jsonl"], "p.jsonl:1: JSON nested too deep"),
    Case("an id of 5,000 digits", {"p.jsonl": '{"id": ' + "9" * 5000 + ', "prompt": "hi"}\n'},
         ["generate", "-i", "{d}/p.jsonl", "-o", "{d}/o.jsonl"], "p.jsonl:1: not usable JSON"),
    Case("a lone surrogate", {"p.jsonl": '{"id": "a", "prompt": "hi \\ud800 there"}\n'},
         ["generate", "-i", "{d}/p.jsonl", "-o", "{d}/o.jsonl"], "p.jsonl:1: a \\u escape makes a lone surrogate"),
    Case("an empty stop string", {"p.jsonl": PROMPT}, ["generate", "-i", "{d}/p.jsonl", "-o", "{d}/o.jsonl", "--stop", ""],
         "stop string"),
    Case("a packaged model's name misspelt (a hub id that is not there)", {"p.jsonl": PROMPT},
         ["generate", "-m", "embeded", "-i", "{d}/p.jsonl", "-o", "{d}/o.jsonl"], "did you mean 'embedded'?"),
    Case("a model id that is no folder and no model string", {"p.jsonl": PROMPT},
         ["generate", "-m", "./no/such/model", "-i", "{d}/p.jsonl", "-o", "{d}/o.jsonl"], "no such folder"),
    Case("a second response for one IFEval prompt",
         {"i.jsonl": lines(IFEVAL), "r.jsonl": lines({"id": "1", "response": "x"}, {"id": "1", "response": "y, z"})},
         ["eval", "ifeval", "--data", "{d}/i.jsonl", "--responses", "{d}/r.jsonl", "-o", "{d}/s.json"], "r.jsonl:2: a second response"),
    Case("IFEval kwargs a checker cannot take",
         {"i.jsonl": lines({**IFEVAL, "instruction_id_list": ["length_constraints:number_words"],
                            "kwargs": [{"num_words": 5, "relation": "roughly"}]}), "r.jsonl": lines({"id": "1", "response": "x"})},
         ["eval", "ifeval", "--data", "{d}/i.jsonl", "--responses", "{d}/r.jsonl", "-o", "{d}/s.json"], "i.jsonl:1: kwargs"),
    Case("IFEval kwargs that are not a list of objects",
         {"i.jsonl": lines({**IFEVAL, "kwargs": "none"}), "r.jsonl": lines({"id": "1", "response": "x"})},
         ["eval", "ifeval", "--data", "{d}/i.jsonl", "--responses", "{d}/r.jsonl", "-o", "{d}/s.json"], "i.jsonl:1:"),
    Case("scores onto an endless device", {"i.jsonl": lines(IFEVAL), "r.jsonl": lines({"id": "1", "response": "x"})},
         ["eval", "ifeval", "--data", "{d}/i.jsonl", "--responses", "{d}/r.jsonl", "-o", "/dev/full"], "a character device"),
    Case("compare: a manifest of the wrong shape", {"x/config.yaml": RECIPE, "x/manifest.json": "[1, 2]"}, ["compare", "{d}/x"],
         "not a spar manifest"),
    Case("compare: a torn outcomes line",
         {"x/config.yaml": RECIPE, "x/manifest.json": '{"stages": {}}', "x/iter_0/eval/ifeval.json": "{}",
          "x/iter_0/eval/ifeval.outcomes.jsonl": '{"id": "1", "follows_strict": true}\n{"id": "2", "follo'},
         ["compare", "{d}/x"], "ifeval.outcomes.jsonl:2:"),
    Case("report: a manifest of the wrong shape", {"x/config.yaml": RECIPE, "x/manifest.json": '{"stages": [1]}'}, ["report", "{d}/x"],
         "not a spar manifest"),
    Case("tree show: a tree file that is a FIFO", {"t.jsonl": "FIFO"}, ["tree", "show", "{d}/t.jsonl"], "a FIFO"),
    Case("an unknown packaged model to prepare", {}, ["models", "prepare", "nosuch"], "no packaged model"),
]


def snapshot(d: Path) -> dict[str, tuple]:
    return {str(p.relative_to(d)): (p.read_bytes() if p.is_file() and not p.is_symlink() else None, p.lstat().st_mtime_ns)
            for p in sorted(d.rglob("*"))}


def lay_out(d: Path, files: dict) -> None:
    """Files by content; None makes a folder, "FIFO" a named pipe, "LOOP" a symlink to itself and
    "LINK:<name>" a symlink to another of the case's files."""
    for name, content in files.items():
        p = d / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if content is None:
            p.mkdir(exist_ok=True)
        elif content == "FIFO":
            os.mkfifo(p)
        elif content == "LOOP":
            p.symlink_to(p.name)
        elif isinstance(content, str) and content.startswith("LINK:"):
            p.symlink_to(content.removeprefix("LINK:"))
        elif isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content)


def test_the_corpus_is_large_and_its_kinds_distinct():
    assert len({c.kind for c in CASES}) == len(CASES) >= 90


@pytest.fixture(scope="module", params=["fresh", "prepared"])
def model_cache(request):
    """Each case runs twice: on a machine that has never converted the packaged model (an empty
    SPAR_HOME of its own, which must stay empty: no error comes after a conversion) and on one that
    has."""
    if request.param == "prepared":
        from spar.llm.embedded import packaged_model_path

        packaged_model_path("embedded")  # `make test` prepared it (spar models prepare); else it converts here
    return request.param


@pytest.mark.parametrize("case", CASES, ids=[c.kind for c in CASES])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(tmp_path, tmp_path_factory, case, record, model_cache, monkeypatch):
    if not case.root_ok and os.geteuid() == 0:
        pytest.skip("root writes into read-only directories: this case cannot be made as root")
    fresh = tmp_path_factory.mktemp("spar_home") if model_cache == "fresh" else None
    if fresh is not None:
        monkeypatch.setenv("SPAR_HOME", str(fresh))
    work = tmp_path / "work"  # the current directory of the command: a run directory must never be it
    work.mkdir()
    monkeypatch.chdir(work)
    lay_out(tmp_path, case.files)
    if "ro" in case.files:
        (tmp_path / "ro").chmod(0o500)
    before = snapshot(tmp_path)
    res = runner.invoke(app, [a.replace("{d}", str(tmp_path)) for a in case.args])
    out = res.output.strip()
    handled = (res.exit_code == case.code and (case.usage or len(out.splitlines()) == 1)
               and case.message.replace("{d}", str(tmp_path)) in out and snapshot(tmp_path) == before)
    words = [a for a in case.args[:2] if not a.startswith("-") and "{d}" not in a]
    shown = out.splitlines()[-1] if not case.usage else " ".join(
        ln.strip("│ ") for ln in out.splitlines() if ln.startswith("│"))  # the usage box's text
    record("bad_input", model_cache=model_cache, kind=case.kind, command=" ".join(words), exit_code=res.exit_code, message=shown[:300],
           handled=handled)
    assert res.exit_code == case.code, (out, res.exception)
    if case.usage:
        assert out.startswith("Usage:") and "Error" in out, out
    else:
        assert len(out.splitlines()) == 1 and out.startswith("spar: error: "), out
    assert case.message.replace("{d}", str(tmp_path)) in out, out
    assert snapshot(tmp_path) == before, "a file was written, changed or removed"
    if fresh is not None:
        assert not any(fresh.iterdir()), "an error came after a first-use step (a model conversion)"


# --- conditions the table cannot lay out as files ------------------------------------------------


def test_an_output_through_a_symlink_writes_its_target_and_keeps_the_link(tmp_path):
    (tmp_path / "i.jsonl").write_text(lines(IFEVAL))
    (tmp_path / "r.jsonl").write_text(lines({"id": "1", "response": "The sea is grey and calm."}))
    (tmp_path / "real.json").write_text("old")
    (tmp_path / "link.json").symlink_to("real.json")
    res = runner.invoke(app, ["eval", "ifeval", "--data", str(tmp_path / "i.jsonl"), "--responses", str(tmp_path / "r.jsonl"),
                              "-o", str(tmp_path / "link.json")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "link.json").is_symlink()
    assert json.loads((tmp_path / "real.json").read_text())["benchmark"] == "ifeval"


def test_a_read_only_file_system_is_refused_before_work(tmp_path, monkeypatch):
    """EROFS cannot be made without mounting; statvfs is made to say what a read-only mount says."""
    import spar.io

    real = os.statvfs

    class ReadOnly:
        def __init__(self, st):
            self.st = st

        def __getattr__(self, name):
            return getattr(self.st, name) if name != "f_flag" else self.st.f_flag | os.ST_RDONLY

    monkeypatch.setattr(spar.io.os, "statvfs", lambda p: ReadOnly(real(p)) if str(p).startswith(str(tmp_path)) else real(p))
    (tmp_path / "p.jsonl").write_text(PROMPT)
    for args in (["generate", "-i", str(tmp_path / "p.jsonl"), "-o", str(tmp_path / "o.jsonl")],
                 ["prompts", "build", "-o", str(tmp_path / "p2.jsonl"), "--count", "2"]):
        res = runner.invoke(app, args)
        assert res.exit_code == 2 and res.output.strip().endswith("is on a read-only file system"), res.output
        assert len(res.output.strip().splitlines()) == 1


def test_a_disk_that_fills_mid_write_is_one_line(tmp_path, monkeypatch):
    import errno

    import spar.io

    def full(path, text):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(spar.io, "write_text", full)
    res = runner.invoke(app, ["prompts", "build", "-o", str(tmp_path / "p.jsonl"), "--count", "2"])
    assert res.exit_code == 2 and res.output.strip() == f"spar: error: {tmp_path / 'p.jsonl'}: No space left on device", res.output


def test_tree_show_on_a_long_chain_is_linear_and_draws_a_bounded_depth(tmp_path):
    n = 20_000
    nodes = [NODE] + [{**NODE, "id": i, "parent": i - 1, "depth": i} for i in range(1, n)]
    (tmp_path / "t.jsonl").write_text(lines({**TREE, "nodes": nodes}))
    res = runner.invoke(app, ["tree", "show", str(tmp_path / "t.jsonl")])
    assert res.exit_code == 0, res.output
    from spar.search.show import MAX_DEPTH

    assert f"{n - MAX_DEPTH} nodes deeper than {MAX_DEPTH} levels not drawn" in res.output


def test_a_long_cycle_is_found(tmp_path):
    n = 20_000
    nodes = [NODE] + [{**NODE, "id": i, "parent": (i + 1) if i < n - 1 else 1, "depth": 1} for i in range(1, n)]
    (tmp_path / "t.jsonl").write_text(lines({**TREE, "nodes": nodes}))
    res = runner.invoke(app, ["tree", "show", str(tmp_path / "t.jsonl")])
    assert res.exit_code == 2 and "parents form a cycle" in res.output, res.output


def test_serve_on_a_taken_port_is_one_line_before_the_model_loads(tmp_path, monkeypatch):
    import socket

    monkeypatch.setenv("SPAR_HOME", str(tmp_path / "home"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        res = runner.invoke(app, ["serve", "--port", str(port)])
    assert res.exit_code == 2, res.output
    assert len(res.output.strip().splitlines()) == 1 and f"127.0.0.1:{port}: cannot listen there" in res.output
    assert not (tmp_path / "home").exists()
