"""One function per stage: settings, backends, input paths, output paths.

The command line (``spar.cli``) and the loop (``spar.pipeline`` through ``spar.methods``) both
call these, so a stage run by hand writes what the same stage of the loop writes. Generation
stages append row by row and resume from what an earlier, killed call wrote; the others write
their files whole.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from spar.io import DataError, iter_json_lines, read_jsonl, read_prompts, write_jsonl, write_text
from spar.llm import Backend, Sampling
from spar.settings import (EvalSettings, LauncherSettings, JudgeSettings, NegativesSettings, PromptsSettings, RFTSettings, SampleSettings,
                           SearchSettings, TrainSettings)
from spar.types import Completion, JudgedSample, Negative, Prompt, Tree


def run_prompts(s: PromptsSettings, seed: int, train_out: Path, heldout_out: Path) -> list[Prompt]:
    """Training prompts (procedural, or the first ``count`` of a file) and held-out procedural prompts."""
    from spar.constraints.procedural import build_prompts

    if s.source == "file":
        if not s.path:
            raise DataError("prompts.source=file needs prompts.path")
        rows = read_prompts(s.path)[: s.count]
    else:
        rows = build_prompts(s.count, "train", seed, s.min_constraints, s.max_constraints)
    write_jsonl(train_out, rows)
    write_jsonl(heldout_out, build_prompts(s.heldout, "heldout", seed, s.min_constraints, s.max_constraints)
                if s.heldout else [])
    return rows


def run_sample(backend: Backend, s: SampleSettings, prompts: Path | list[Prompt], out: Path, seed: int,
               chunk: int = 16, show: bool = True, stop=None) -> list[Completion]:
    """The actor's ``k`` answers per prompt (resumable by prompt; ``stop``: a budget, asked per chunk)."""
    from spar.generate import generate_file

    rows = read_prompts(prompts) if isinstance(prompts, Path) else prompts
    return generate_file(backend, rows, out, s.sampling(seed), chunk=chunk, show=show, stop=stop)


def run_judge(backend: Backend | None, s: JudgeSettings, samples: Path, out: Path, seed: int, chunk: int = 16,
              show: bool = True) -> list[JudgedSample]:
    """Every answer judged (votes, majority, mode); ``backend`` may be None in verifier mode."""
    from spar.roles.stage import judge_file

    if s.needs_model and backend is None:
        raise DataError(f"judge mode {s.mode!r} needs a model")
    return judge_file(backend if s.needs_model else None, samples, out, s, seed=seed, chunk=chunk, show=show)


def run_negatives(s: NegativesSettings, prompts: Path, judgments: Path, out: Path, seed: int) -> list[Negative]:
    from spar.selfplay.negatives import pick_negatives

    rows = pick_negatives(read_prompts(prompts), read_jsonl(judgments, JudgedSample), s, seed=seed)
    write_jsonl(out, rows)
    return rows


def run_search(backend: Backend, judge: JudgeSettings, s: SearchSettings, negatives: Path, out: Path, seed: int,
               chunk: int = 64, show: bool = True, sequential: bool = False, counts: dict | None = None,
               stop=None) -> list[Tree]:
    """A refinement tree per negative (resumable by tree). ``counts`` (when given) gets the edits
    format's failed replies (``edit_failures``: operations that did not apply to their answer)."""
    from spar.search.driver import Searcher
    from spar.search.stage import search_file

    searcher = Searcher(backend, judge, s, seed, sequential=sequential)
    trees = search_file(searcher, negatives, out, chunk=chunk, show=show, stop=stop)
    if counts is not None and s.refine_format == "edits":
        counts["edit_failures"] = searcher.edit_failures
    return trees


def run_data(search: SearchSettings, rft: RFTSettings, prompts: Path, trees: Path, judgments: Path,
             dpo_out: Path, rft_out: Path, stats_out: Path, seed: int) -> dict[str, Any]:
    """DPO pairs (the guard applied), the refiner's RFT rows, and the trees' stats."""
    from spar.selfplay.data import dpo_pairs, rft_examples, search_stats

    by_id = {p.id: p for p in read_prompts(prompts)}
    tr, judged = read_jsonl(trees, Tree), read_jsonl(judgments, JudgedSample)
    pairs, dropped = dpo_pairs(tr, by_id, search.guard_config())
    write_jsonl(dpo_out, pairs)
    write_jsonl(rft_out, rft_examples(tr, judged, by_id, rft, pairs, seed=seed, fmt=search.refine_format))
    stats = search_stats(tr, judged, pairs, dropped).as_dict()
    write_text(stats_out, json.dumps(stats, indent=1) + "\n")
    return stats


def _form(value) -> str | None:
    """"text" for a string, "chat" for a list of {role, content} messages, None for anything else."""
    if isinstance(value, str):
        return "text"
    if isinstance(value, list) and value and all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in value):
        return "chat"
    return None


def read_train_rows(kind: str, data: Path) -> list[dict]:
    """Training rows, each checked for the fields its trainer needs and their types, all in one form
    (text or chat), before any is used (errors name the file and line)."""
    rows, first = [], None
    for lineno, row in iter_json_lines(data):
        if kind == "dpo":
            fields = ("prompt", "chosen", "rejected")
        else:
            fields = ("messages",) if "messages" in row else ("prompt", "completion")
        if not all(k in row for k in fields):
            raise DataError(f"{data}:{lineno}: a {kind} row needs "
                            + ("prompt, chosen, rejected" if kind == "dpo" else "messages, or prompt + completion"))
        forms = {k: _form(row[k]) for k in fields}
        bad = [k for k, f in forms.items() if f is None]
        if bad:
            raise DataError(f"{data}:{lineno}: {bad[0]!r} must be a string or a non-empty list of "
                            "{role, content} messages")
        shape = tuple(forms.values())
        if first is None:
            first = (lineno, shape)
        elif shape != first[1]:
            raise DataError(f"{data}:{lineno}: the row mixes text and chat fields differently from line {first[0]} "
                            f"({', '.join(f'{k}: {f}' for k, f in forms.items())})")
        rows.append(row)
    return rows


def model_path(model: str) -> str:
    """The weights a model string names, for training: a packaged name resolves to its local
    safetensors copy, ``vllm:X`` to X; a model served over HTTP (``openai:``) has no weights here."""
    from spar.llm.adapters import resolve
    from spar.llm.embedded import PACKAGED, packaged_model_path

    model = resolve(model)
    if model.startswith("vllm:"):
        model = model.removeprefix("vllm:")
    if model in PACKAGED:
        return str(packaged_model_path(model))
    if model.startswith("openai:"):
        raise DataError(f"{model}: a model behind an HTTP server cannot be trained here; name its weights "
                        "(a local path or HF id, or vllm:PATH to serve them with vLLM) as the model instead")
    return model


def served_like(base: str, weights: str, packaged_on_vllm: bool = False) -> str:
    """The model string that serves freshly trained ``weights`` the way ``base`` was served: vLLM stays
    vLLM (``vllm:`` + path), and so does a packaged model the run serves with vLLM; otherwise the
    path, run with transformers."""
    from spar.llm.embedded import PACKAGED

    if base.startswith("vllm:") or (base in PACKAGED and packaged_on_vllm):
        return "vllm:" + weights
    return weights


def run_train(kind: str, base: str, data: Path, out: Path, s: TrainSettings, seed: int,
              launcher: LauncherSettings | None = None) -> tuple[str | None, list[float]]:
    """SFT or DPO of ``base`` on ``data``; the model goes to ``out/model``. With no rows nothing is
    trained: returns (None, []). With ``launcher.kind == "accelerate"`` the training runs as
    ``accelerate launch ... -m spar train`` in child processes."""
    from spar.train import train_dpo, train_sft

    rows = read_train_rows(kind, data)
    if not rows:
        return None, []
    if launcher is not None and launcher.kind == "accelerate":
        return launch_train(kind, model_path(base), data, out, s, seed, launcher)
    path, log = (train_dpo if kind == "dpo" else train_sft)(model_path(base), rows, out, s, seed=seed)
    return str(path), _losses(log)


def _losses(log: list[dict]) -> list[float]:
    """The loss per logged step of a trainer's log history."""
    return [round(x["loss"], 4) for x in log if "loss" in x]


def launch_command(kind: str, weights: str, data: Path, out: Path, s: TrainSettings, seed: int,
                   launcher: LauncherSettings) -> list[str]:
    """The ``accelerate launch`` command line that trains as ``spar train`` would in this process."""
    import sys

    import torch

    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(launcher.num_processes)]
    if launcher.config_file:
        from spar.config import shipped

        cmd += ["--config_file", str(shipped(launcher.config_file))]
    elif not torch.cuda.is_available():
        cmd.append("--cpu")  # DDP over gloo
    cmd += [*launcher.args, "-m", "spar", "train", kind, "--data", str(data), "--out", str(out), "--model", weights,
            "--seed", str(seed)]
    for key, value in s.model_dump(mode="json").items():
        cmd += ["--set", f"{key}={json.dumps(value)}"]
    return cmd


def launch_train(kind: str, weights: str, data: Path, out: Path, s: TrainSettings, seed: int,
                 launcher: LauncherSettings) -> tuple[str, list[float]]:
    import subprocess

    cmd = launch_command(kind, weights, data, out, s, seed, launcher)
    done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if done.returncode != 0 or not (out / "model").is_dir():
        tail = "\n".join(done.stdout.splitlines()[-25:])
        raise RuntimeError(f"accelerate launch of spar train {kind} failed (exit {done.returncode}):\n{tail}")
    return str(out / "model"), _losses(json.loads((out / "train_log.json").read_text())["log"])


def eval_jobs(e: EvalSettings, heldout: Path | None) -> list[tuple[str, Path, int | None]]:
    """(name, prompts file, limit) of each benchmark the eval stage scores."""
    jobs: list[tuple[str, Path, int | None]] = []
    if e.heldout and heldout is not None:
        jobs.append(("heldout", heldout, None))
    if e.ifeval_data:
        jobs.append(("ifeval", Path(e.ifeval_data), e.ifeval_limit))
    return jobs


def run_eval(backend: Backend, e: EvalSettings, name: str, src: Path, limit: int | None, out_dir: Path, meta: dict,
             chunk: int = 32, show: bool = True) -> dict:
    """Greedy answers to a benchmark's prompts, scored by its checkers: ``<name>.json`` (scores),
    ``<name>.responses.jsonl`` and ``<name>.outcomes.jsonl`` (per prompt)."""
    from spar.eval.ifeval import outcome_rows, score
    from spar.generate import generate_file

    prompts = read_prompts(src)
    prompts = prompts[:limit] if limit else prompts
    rows = generate_file(backend, prompts, out_dir / f"{name}.responses.jsonl", Sampling(max_new_tokens=e.max_new_tokens),
                         chunk=chunk, show=show)
    sc, per_prompt = score(prompts, {r.id: r.completions[0] for r in rows})
    write_jsonl(out_dir / f"{name}.outcomes.jsonl", outcome_rows(per_prompt))
    result = {"benchmark": name, **meta, **sc.as_dict()}
    write_text(out_dir / f"{name}.json", json.dumps(result, indent=1) + "\n")
    return result
