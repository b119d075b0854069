"""The ``spar`` command line. Thin: parse, build, run, save. Heavy imports live inside commands
so that ``spar --help`` answers at once."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(
    help="spar: self-play with tree-search refinement for instruction following (SPaR), and its baselines.\n\n"
    "Model strings: 'embedded' (SmolLM2-135M-Instruct, offline), a local path or HF id (transformers), "
    "'openai:<base_url>#<model>' (any OpenAI-compatible server), 'vllm:<path>' (GPU).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

ModelOpt = Annotated[str, typer.Option("--model", "-m", help="model string (see `spar --help`)")]


def friendly(fn):
    """Turn expected failures into one line on stderr and exit code 2 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from spar.io import DataError
        from spar.llm import BackendError

        try:
            return fn(*args, **kwargs)
        except (DataError, BackendError, ValueError, FileNotFoundError) as e:
            typer.echo(f"spar: error: {e}", err=True)
            raise typer.Exit(2) from None

    return wrapper


def _backend(model: str, batch_size: int = 8, device: Optional[str] = None, dtype: Optional[str] = None):
    from spar.llm import BackendOptions, load_backend

    return load_backend(model, BackendOptions(batch_size=batch_size, device=device, dtype=dtype))


def builtin_prompts():
    from importlib.resources import files

    from spar.io import read_prompts

    return read_prompts(files("spar") / "data" / "examples.jsonl")


@app.command()
@friendly
def generate(
    model: ModelOpt = "embedded",
    input: Annotated[Optional[Path], typer.Option("--input", "-i", help="prompts JSONL (spar or IFEval rows); default: spar's built-in examples")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="output JSONL: {id, prompt, completions}; rerun resumes")] = Path("completions.jsonl"),
    n: Annotated[int, typer.Option("-n", help="completions per prompt")] = 1,
    max_new_tokens: Annotated[int, typer.Option(help="tokens to generate at most")] = 256,
    temperature: Annotated[float, typer.Option(help="0 = greedy")] = 0.0,
    top_p: Annotated[float, typer.Option(help="nucleus sampling mass")] = 1.0,
    batch_size: Annotated[int, typer.Option(help="requests per forward pass (hf backend)")] = 8,
    seed: Annotated[int, typer.Option(help="sampling seed")] = 0,
    stop: Annotated[Optional[list[str]], typer.Option(help="stop string (repeatable)")] = None,
    device: Annotated[Optional[str], typer.Option(help="cpu, cuda, cuda:1 ... (default: cuda if available)")] = None,
    dtype: Annotated[Optional[str], typer.Option(help="fp32, bf16, fp16 (default: bf16 on cuda, fp32 on cpu)")] = None,
):
    """Generate completions for a prompts file. Resumable: rerunning skips ids already in OUTPUT."""
    from spar.generate import generate_file
    from spar.io import read_prompts
    from spar.llm import Sampling

    prompts = read_prompts(input) if input else builtin_prompts()
    sampling = Sampling(n=n, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
                        stop=tuple(stop or ()), seed=seed)
    backend = _backend(model, batch_size, device, dtype)
    rows = generate_file(backend, prompts, output, sampling, chunk=batch_size)
    typer.echo(f"wrote {len(rows)} rows to {output}", err=True)
    return rows


@app.command()
@friendly
def serve(
    model: ModelOpt = "embedded",
    host: Annotated[str, typer.Option(help="address to bind (keep 127.0.0.1 unless you mean to share it)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8000,
    batch_size: Annotated[int, typer.Option(help="requests per forward pass (hf backend)")] = 8,
    max_tokens: Annotated[int, typer.Option(help="default max_tokens when a request gives none")] = 512,
    device: Annotated[Optional[str], typer.Option(help="cpu, cuda, ...")] = None,
    dtype: Annotated[Optional[str], typer.Option(help="fp32, bf16, fp16")] = None,
):
    """Serve a model over an OpenAI-compatible API (/v1/models, /v1/chat/completions)."""
    import uvicorn

    from spar.serve import build_app

    backend = _backend(model, batch_size, device, dtype)
    typer.echo(f"spar serve: {model} on http://{host}:{port}/v1  (use it as openai:http://{host}:{port}/v1#{model})", err=True)
    uvicorn.run(build_app(backend, model, max_tokens), host=host, port=port, log_level="warning")


prompts_app = typer.Typer(help="Build instruction prompts with constraints.", no_args_is_help=True)
eval_app = typer.Typer(help="Evaluate a model: IFEval, LLMBar.", no_args_is_help=True)
app.add_typer(prompts_app, name="prompts")
app.add_typer(eval_app, name="eval")


@prompts_app.command("build")
@friendly
def prompts_build(
    out: Annotated[Path, typer.Option("--out", "-o", help="output prompts JSONL")],
    count: Annotated[int, typer.Option(help="how many prompts")] = 100,
    split: Annotated[str, typer.Option(help="train or heldout (they never share a seed task)")] = "train",
    seed: Annotated[int, typer.Option(help="same seed, same prompts")] = 0,
    min_constraints: Annotated[int, typer.Option(help="fewest constraints per prompt")] = 1,
    max_constraints: Annotated[int, typer.Option(help="most constraints per prompt")] = 4,
    teacher: Annotated[Optional[str], typer.Option(help="model string of a teacher: evolve prompts with it (SPaR's method) instead of the offline procedure")] = None,
):
    """Build multi-constraint prompts: procedural and offline by default, or evolved by a --teacher."""
    from spar.io import write_jsonl

    if teacher:
        from spar.constraints.seeds import seed_tasks, split_of
        from spar.constraints.teacher import evolve_prompts

        seeds = [t for _, t in seed_tasks() if split_of(t) == split]
        rows = evolve_prompts(_backend(teacher), seeds, count, seed=seed, split=split)
    else:
        from spar.constraints.procedural import build_prompts

        rows = build_prompts(count, split=split, seed=seed, min_k=min_constraints, max_k=max_constraints)
    write_jsonl(out, rows)
    typer.echo(f"wrote {len(rows)} prompts to {out}", err=True)


@app.command()
@friendly
def judge(
    model: ModelOpt = "embedded",
    input: Annotated[Path, typer.Option("--input", "-i", help="samples JSONL from `spar generate` ({id, prompt, completions, constraints})")] = Path("samples.jsonl"),
    output: Annotated[Path, typer.Option("--output", "-o", help="judgments JSONL: one row per completion; rerun resumes")] = Path("judgments.jsonl"),
    votes: Annotated[int, typer.Option(help="judge samples per answer (majority vote)")] = 5,
    mode: Annotated[str, typer.Option(help="llm | verifier | hybrid (checkers decide verifiable constraints, votes the rest)")] = "hybrid",
    batch_size: Annotated[int, typer.Option(help="answers judged per generate call")] = 8,
    max_new_tokens: Annotated[int, typer.Option(help="tokens per judge reply")] = 384,
    seed: Annotated[int, typer.Option(help="sampling seed")] = 0,
):
    """Judge every completion of a samples file: votes, majority, mode."""
    from spar.roles.stage import judge_file
    from spar.roles.judge import JudgeConfig

    cfg = JudgeConfig(votes=votes, mode=mode, max_new_tokens=max_new_tokens, seed=seed)  # type: ignore[arg-type]
    backend = None if mode == "verifier" else _backend(model, batch_size)
    rows = judge_file(backend, input, output, cfg, chunk=batch_size)
    n_yes = sum(r.judgment.follows is True for r in rows)
    n_none = sum(r.judgment.follows is None for r in rows)
    typer.echo(f"wrote {len(rows)} judgments to {output}: {n_yes} follow, {len(rows) - n_yes - n_none} do not, "
               f"{n_none} undecided; {sum(r.judgment.abstentions for r in rows)} unparseable votes", err=True)


@eval_app.command("ifeval")
@friendly
def eval_ifeval(
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="model string; omit with --responses")] = None,
    data: Annotated[Optional[Path], typer.Option(help="IFEval input_data.jsonl (default: google/IFEval from the hub)")] = None,
    responses: Annotated[Optional[Path], typer.Option(help="score this responses file instead of generating (spar rows or IFEval's {prompt, response} rows)")] = None,
    limit: Annotated[Optional[int], typer.Option(help="first N prompts only")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="scores JSON; responses go beside it as <name>.responses.jsonl")] = Path("ifeval_scores.json"),
    max_new_tokens: Annotated[int, typer.Option(help="tokens per answer")] = 512,
    batch_size: Annotated[int, typer.Option(help="prompts per forward pass")] = 16,
):
    """IFEval: prompt- and instruction-level accuracy, strict and loose, and per instruction type."""
    from spar.eval.report import ifeval_run

    ifeval_run(model=model, data=data, responses=responses, limit=limit, output=output,
               max_new_tokens=max_new_tokens, batch_size=batch_size, backend_factory=_backend)


@eval_app.command("llmbar")
@friendly
def eval_llmbar(
    model: ModelOpt = "embedded",
    data: Annotated[Path, typer.Option(help="LLMBar's Dataset/LLMBar folder (Natural/, Adversarial/...)")] = Path("LLMBar"),
    votes: Annotated[int, typer.Option(help="judge samples per item (1 = greedy)")] = 5,
    limit: Annotated[Optional[int], typer.Option(help="first N pairs of each subset only")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="scores JSON")] = Path("llmbar_scores.json"),
    max_new_tokens: Annotated[int, typer.Option(help="tokens per judge reply")] = 384,
    batch_size: Annotated[int, typer.Option(help="items per forward pass")] = 16,
):
    """LLMBar, pointwise: judge accuracy and F1 per subset."""
    from spar.eval.report import llmbar_run

    llmbar_run(model=model, data=data, votes=votes, limit=limit, output=output, max_new_tokens=max_new_tokens,
               batch_size=batch_size, backend_factory=_backend)


tree_app = typer.Typer(help="Look at refinement trees.", no_args_is_help=True)
app.add_typer(tree_app, name="tree")


@app.command()
@friendly
def search(
    model: ModelOpt = "embedded",
    input: Annotated[Path, typer.Option("--input", "-i", help="negatives JSONL (failed answers with their judgments)")] = Path("negatives.jsonl"),
    output: Annotated[Path, typer.Option("--output", "-o", help="trees JSONL, one whole tree per negative; rerun resumes")] = Path("trees.jsonl"),
    strategy: Annotated[str, typer.Option(help="bfs | dfs | greedy | best_of_n | iterative")] = "bfs",
    branch: Annotated[int, typer.Option(help="refinements per expanded node")] = 3,
    select: Annotated[int, typer.Option(help="children kept per level (bfs) or descended into (dfs)")] = 2,
    depth: Annotated[int, typer.Option(help="levels below the root")] = 3,
    budget: Annotated[int, typer.Option(help="judged nodes per tree at most")] = 15,
    votes: Annotated[int, typer.Option(help="judge votes per node")] = 5,
    mode: Annotated[str, typer.Option(help="judge mode: llm | verifier | hybrid")] = "hybrid",
    sequential: Annotated[bool, typer.Option("--sequential", help="one node and one vote per request (slow; for comparison)")] = False,
    max_new_tokens: Annotated[int, typer.Option(help="tokens per refinement and per judge reply")] = 384,
    batch_size: Annotated[int, typer.Option(help="sequences per forward pass (hf backend)")] = 16,
    seed: Annotated[int, typer.Option(help="sampling seed")] = 0,
):
    """Refine failed answers by tree search until the judge accepts one; saves every tree whole."""
    from spar.roles.judge import JudgeConfig
    from spar.search.driver import RefineSampling, Searcher
    from spar.search.stage import search_file
    from spar.search.strategies import SearchConfig
    from spar.selfplay.data import search_stats

    cfg = SearchConfig(strategy=strategy, branch=branch, select=select, depth=depth, budget=budget)  # type: ignore[arg-type]
    jcfg = JudgeConfig(votes=votes, mode=mode, max_new_tokens=max_new_tokens, seed=seed)  # type: ignore[arg-type]
    searcher = Searcher(_backend(model, batch_size), jcfg, cfg, RefineSampling(max_new_tokens=max_new_tokens, seed=seed),
                        sequential=sequential)
    trees = search_file(searcher, input, output)
    st = search_stats(trees)
    typer.echo(f"wrote {len(trees)} trees to {output}: {st.solved} solved ({100 * st.success_rate:.1f}%), "
               f"mean expanded per solved tree {st.mean_expanded_solved}, mean solution depth {st.mean_solution_depth}", err=True)


@tree_app.command("show")
@friendly
def tree_show(
    path: Annotated[Path, typer.Argument(help="trees JSONL")],
    id: Annotated[Optional[str], typer.Option("--id", help="tree id (prompt id#sample) or prompt id; default: the first tree")] = None,
):
    """Draw a tree: each node's value, votes, and its answer's diff against its parent."""
    from rich.console import Console

    from spar.io import DataError, read_jsonl
    from spar.search.show import render
    from spar.types import Tree

    trees = read_jsonl(path, Tree)
    picked = [t for t in trees if id is None or t.id == id or t.prompt_id == id][:1 if id is None else None]
    if not picked:
        raise DataError(f"{path}: no tree with id {id!r} (ids look like {trees[0].id!r})" if trees else f"{path}: no trees")
    for t in picked:
        Console().print(render(t))


@app.command()
@friendly
def demo(
    run_dir: Annotated[Path, typer.Option(help="where the run's files go")] = Path("runs/demo"),
):
    """The main job on the embedded model, offline: generate answers to spar's built-in prompts."""
    from rich.console import Console
    from rich.table import Table

    from spar.generate import generate_file
    from spar.llm import Sampling

    rows = generate_file(_backend("embedded"), builtin_prompts(), run_dir / "completions.jsonl",
                         Sampling(max_new_tokens=128))
    table = Table(title="embedded model (SmolLM2-135M-Instruct), greedy", show_lines=True)
    table.add_column("prompt", max_width=40)
    table.add_column("completion")
    for r in rows:
        table.add_row(r.prompt[-1].content, r.completions[0])
    Console().print(table)


def main() -> None:  # pragma: no cover
    sys.exit(app())
