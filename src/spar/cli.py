"""The ``spar`` command line. Thin: parse, build, run, save. Heavy imports live inside commands
so that ``spar --help`` answers at once."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from spar.cli_bootstrap import bootstrap_app
from spar.cli_eval import eval_followbench, eval_refine
from spar.cli_report import compare, report
from spar.cli_experiment import experiment_app
from spar.cli_models import env, models_app
from spar.cli_train import train_app
from spar.cli_tree import tree_app
from spar.cli_sandbox import sandbox_app
from spar.registry import methods_help
from spar.cli_common import JUDGE, SEARCH, DtypeOpt, ModelOpt, _backend, _overrides, _shipped, friendly, IN, OUT, RUN_DIR  # noqa: F401 (_overrides: tests)
from spar.io import DataError
from spar.settings import JudgeSettings, RemoteSettings, SearchSettings

app = typer.Typer(
    help="spar: self-play with tree-search refinement for instruction following (SPaR), and its baselines.\n\n"
    "Model strings: 'embedded' (SmolLM2-135M-Instruct, offline), a local path or HF id (transformers), "
    "'openai:<base_url>#<model>' (any OpenAI-compatible server), 'vllm:<path>' (GPU).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


_REMOTE = RemoteSettings()


@app.callback()
def _options(
    timeout: Annotated[Optional[float], typer.Option(min=0.1, help=f"seconds per request to an openai: model before it is retried, in every backend the command builds [default: the recipe's remote.timeout, else {_REMOTE.timeout:g}]")] = None,
    retries: Annotated[Optional[int], typer.Option(min=0, help=f"retries of a failed request to an openai: model [default: the recipe's remote.retries, else {_REMOTE.retries}]")] = None,
):
    from spar.cli_common import REMOTE_GIVEN

    REMOTE_GIVEN.set({k: v for k, v in {"timeout": timeout, "retries": retries}.items() if v is not None})


def builtin_prompts():  # a few examples for `spar generate` without --input
    from importlib.resources import files

    from spar.io import read_prompts

    return read_prompts(files("spar") / "data" / "examples.jsonl")


@app.command()
@friendly
def generate(
    model: ModelOpt = "embedded",
    input: Annotated[Optional[Path], typer.Option("--input", "-i", help="prompts JSONL (spar or IFEval rows); default: spar's built-in examples"), IN] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="output JSONL: {id, prompt, completions}; rerun resumes"), OUT] = Path("completions.jsonl"),
    n: Annotated[int, typer.Option("-n", min=1, help="completions per prompt")] = 1,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="tokens to generate at most")] = 256,
    temperature: Annotated[float, typer.Option(min=0.0, help="0 = greedy")] = 0.0,
    top_p: Annotated[float, typer.Option(min=0.0, max=1.0, help="nucleus sampling mass")] = 1.0,
    batch_size: Annotated[int, typer.Option(min=1, help="requests per forward pass (hf backend)")] = 8,
    seed: Annotated[int, typer.Option(help="sampling seed")] = 0,
    stop: Annotated[Optional[list[str]], typer.Option(help="stop string (repeatable)")] = None,
    device: Annotated[Optional[str], typer.Option(help="cpu, cuda, cuda:1 ... (default: cuda if available)")] = None,
    dtype: DtypeOpt = None,
):
    """Generate completions for a prompts file. Resumable: rerunning skips ids already in OUTPUT."""
    from spar.generate import generate_file
    from spar.io import read_prompts
    from spar.llm import BackendOptions, Sampling, check_model

    sampling = Sampling(n=n, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
                        stop=tuple(stop or ()), seed=seed)
    check_model(model, BackendOptions(device=device, dtype=dtype), max_new_tokens)
    prompts = read_prompts(input) if input else builtin_prompts()
    if not prompts:
        raise DataError(f"{input}: no prompts in the file")
    rows = generate_file(_backend(model, batch_size, device, dtype), prompts, output, sampling, chunk=batch_size)
    typer.echo(f"wrote {len(rows)} rows to {output}", err=True)
    return rows


@app.command()
@friendly
def serve(
    model: ModelOpt = "embedded",
    host: Annotated[str, typer.Option(help="address to bind (keep 127.0.0.1 unless you mean to share it)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="port")] = 8000,
    batch_size: Annotated[int, typer.Option(min=1, help="requests per forward pass (hf backend)")] = 8,
    max_tokens: Annotated[int, typer.Option(min=1, help="default max_tokens when a request gives none")] = 512,
    device: Annotated[Optional[str], typer.Option(help="cpu, cuda, ...")] = None,
    dtype: DtypeOpt = None,
):
    """Serve a model over an OpenAI-compatible API (/v1/models, /v1/chat/completions)."""
    import socket

    import uvicorn

    from spar.serve import build_app

    # the address is taken before the model loads: a port in use is one line, not a model load and a
    # server's log
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise DataError(f"{host}:{port}: cannot listen there ({e.strerror or e})") from None
    backend = _backend(model, batch_size, device, dtype, max_new_tokens=max_tokens)._get()  # loaded before the address is announced
    typer.echo(f"spar serve: {model} on http://{host}:{port}/v1  (use it as openai:http://{host}:{port}/v1#{model})", err=True)
    server = uvicorn.Server(uvicorn.Config(build_app(backend, model, max_tokens), log_level="warning"))
    server.run(sockets=[sock])


prompts_app = typer.Typer(help="Build instruction prompts with constraints.", no_args_is_help=True)
eval_app = typer.Typer(help="Evaluate a model: IFEval, LLMBar, FollowBench (rule-checked part), refinement.", no_args_is_help=True)
app.add_typer(prompts_app, name="prompts")
app.add_typer(eval_app, name="eval")


@prompts_app.command("build")
@friendly
def prompts_build(
    out: Annotated[Path, typer.Option("--out", "-o", help="output prompts JSONL"), OUT],
    count: Annotated[int, typer.Option(min=1, help="how many prompts")] = 100,
    split: Annotated[str, typer.Option(help="train or heldout (they never share a seed task)")] = "train",
    seed: Annotated[int, typer.Option(help="same seed, same prompts")] = 0,
    min_constraints: Annotated[int, typer.Option(min=1, help="fewest constraints per prompt")] = 1,
    max_constraints: Annotated[int, typer.Option(min=1, help="most constraints per prompt")] = 4,
    teacher: Annotated[Optional[str], typer.Option(help="model string of a teacher: evolve prompts with it (SPaR's method) instead of the offline procedure")] = None,
):
    """Build multi-constraint prompts: procedural and offline by default, or evolved by a --teacher."""
    from spar.io import write_jsonl

    if teacher:
        from spar.constraints.seeds import seed_tasks, split_of
        from spar.selfplay.evolve import evolve_prompts

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
    input: Annotated[Path, typer.Option("--input", "-i", help="samples JSONL from `spar generate` ({id, prompt, completions, constraints})"), IN] = Path("samples.jsonl"),
    output: Annotated[Path, typer.Option("--output", "-o", help="judgments JSONL: one row per completion; rerun resumes"), OUT] = Path("judgments.jsonl"),
    votes: Annotated[int, typer.Option(min=1, help="judge samples per answer (majority vote)")] = JUDGE.votes,
    mode: Annotated[str, typer.Option(help="llm | verifier | hybrid (checkers decide verifiable constraints, votes the rest)")] = JUDGE.mode,
    temperature: Annotated[float, typer.Option(min=0.0, help="sampling temperature of the votes (one vote is greedy)")] = JUDGE.temperature,
    top_p: Annotated[float, typer.Option(min=0.0, max=1.0, help="nucleus mass of the votes")] = JUDGE.top_p,
    batch_size: Annotated[int, typer.Option(min=1, help="answers judged per generate call")] = 8,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="tokens per judge reply")] = JUDGE.max_new_tokens,
    seed: Annotated[int, typer.Option(help="sampling seed")] = 0,
    dtype: DtypeOpt = None,
):
    """Judge every completion of a samples file: votes, majority, mode."""
    from spar.io import refuse_same_path
    from spar.stages import run_judge

    refuse_same_path(input, output)
    cfg = JudgeSettings(votes=votes, mode=mode, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens)
    backend = None if not cfg.needs_model else _backend(model, batch_size, dtype=dtype, max_new_tokens=max_new_tokens)
    rows = run_judge(backend, cfg, input, output, seed, chunk=batch_size)
    n_yes = sum(r.judgment.follows is True for r in rows)
    n_none = sum(r.judgment.follows is None for r in rows)
    typer.echo(f"wrote {len(rows)} judgments to {output}: {n_yes} follow, {len(rows) - n_yes - n_none} do not, "
               f"{n_none} undecided; {sum(r.judgment.abstentions for r in rows)} unparseable votes", err=True)


@eval_app.command("ifeval")
@friendly
def eval_ifeval(
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="model string; omit with --responses")] = None,
    data: Annotated[Optional[Path], typer.Option(help="IFEval input_data.jsonl (default: google/IFEval from the hub)"), IN] = None,
    responses: Annotated[Optional[Path], typer.Option(help="score this responses file instead of generating (spar rows or IFEval's {prompt, response} rows)"), IN] = None,
    limit: Annotated[Optional[int], typer.Option(min=1, help="first N prompts only")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="scores JSON; responses go beside it as <name>.responses.jsonl"), OUT] = Path("ifeval_scores.json"),
    max_new_tokens: Annotated[int, typer.Option(min=1, help="tokens per answer")] = 512,
    batch_size: Annotated[int, typer.Option(min=1, help="prompts per forward pass")] = 16,
    search: Annotated[Optional[str], typer.Option(help="tree search at inference time: bfs | dfs (scores with and without)")] = None,
    refiner: Annotated[Optional[str], typer.Option(help="with --search: the refiner and judge (default: --model)")] = None,
    budget: Annotated[int, typer.Option(min=1, help="with --search: judged nodes per search")] = SEARCH.budget,
    votes: Annotated[int, typer.Option(min=1, help="with --search: the refiner's judge votes per answer")] = JUDGE.votes,
    dtype: DtypeOpt = None,
):
    """IFEval: prompt- and instruction-level accuracy, strict and loose, and per instruction type;
    with --search, also after tree search at inference time (the refiner's own vote judges: IFEval's
    checkers are its answer key and never judge the search)."""
    from spar.eval.report import ifeval_run

    cfg = SearchSettings(strategy=search, budget=budget, max_new_tokens=max_new_tokens) if search else None
    ifeval_run(model=model, data=data, responses=responses, limit=limit, output=output,
               max_new_tokens=max_new_tokens, batch_size=batch_size,
               backend_factory=functools.partial(_backend, dtype=dtype, max_new_tokens=max_new_tokens), search=cfg, refiner=refiner,
               judge_cfg=JudgeSettings(votes=votes, mode="llm"))


@eval_app.command("llmbar")
@friendly
def eval_llmbar(
    model: ModelOpt = "embedded",
    data: Annotated[Path, typer.Option(help="LLMBar's Dataset/LLMBar folder (Natural/, Adversarial/...)"), IN] = Path("LLMBar"),
    votes: Annotated[str, typer.Option(help="votes per item, or several from one sampling: 1,3,5,7,9 (the verdict "
                                            "at k is the majority of the first k samples; 1 alone = greedy)")] = "5",
    limit: Annotated[Optional[int], typer.Option(min=1, help="first N pairs of each subset only")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="scores JSON; per-item replies and votes go to "
                                                                  "OUTPUT's stem + .items.jsonl"), OUT] = Path("llmbar_scores.json"),
    max_new_tokens: Annotated[int, typer.Option(min=1, help="tokens per judge reply")] = 384,
    batch_size: Annotated[int, typer.Option(min=1, help="items per forward pass")] = 16,
    dtype: DtypeOpt = None,
):
    """LLMBar, pointwise: judge accuracy and F1 per subset, at one or several numbers of votes."""
    from spar.eval.report import llmbar_run

    try:
        ks = sorted({int(x) for x in votes.split(",")})
    except ValueError:
        raise typer.BadParameter(f"expected numbers separated by commas, got {votes!r}", param_hint="--votes") from None
    if ks[0] < 1:
        raise typer.BadParameter("every number of votes must be at least 1", param_hint="--votes")
    llmbar_run(model=model, data=data, votes=ks, limit=limit, output=output, max_new_tokens=max_new_tokens,
               batch_size=batch_size, backend_factory=functools.partial(_backend, dtype=dtype, max_new_tokens=max_new_tokens))


eval_app.command("refine")(eval_refine)
eval_app.command("followbench")(eval_followbench)


app.add_typer(bootstrap_app, name="bootstrap")
app.add_typer(experiment_app, name="experiment")
app.add_typer(sandbox_app, name="sandbox")
app.add_typer(models_app, name="models")
app.command("env")(env)
app.add_typer(tree_app, name="tree")
app.add_typer(train_app, name="train")


@app.command()
@friendly
def search(
    model: ModelOpt = "embedded",
    input: Annotated[Path, typer.Option("--input", "-i", help="negatives JSONL (failed answers with their judgments)"), IN] = Path("negatives.jsonl"),
    output: Annotated[Path, typer.Option("--output", "-o", help="trees JSONL, one whole tree per negative; rerun resumes"), OUT] = Path("trees.jsonl"),
    strategy: Annotated[str, typer.Option(help="bfs | dfs | greedy | best_of_n | iterative")] = SEARCH.strategy,
    branch: Annotated[int, typer.Option(min=1, help="refinements per expanded node")] = SEARCH.branch,
    select: Annotated[int, typer.Option(min=1, help="children kept per level (bfs) or descended into (dfs)")] = SEARCH.select,
    depth: Annotated[int, typer.Option(min=1, help="levels below the root")] = SEARCH.depth,
    budget: Annotated[int, typer.Option(min=1, help="judged nodes per tree at most")] = SEARCH.budget,
    temperature: Annotated[float, typer.Option(min=0.0, help="sampling temperature of the refinements")] = SEARCH.temperature,
    top_p: Annotated[float, typer.Option(min=0.0, max=1.0, help="nucleus mass of the refinements")] = SEARCH.top_p,
    votes: Annotated[int, typer.Option(min=1, help="judge votes per node")] = JUDGE.votes,
    mode: Annotated[str, typer.Option(help="judge mode: llm | verifier | hybrid")] = JUDGE.mode,
    sequential: Annotated[bool, typer.Option("--sequential", help="one node and one vote per request (slow; for comparison)")] = False,
    guard: Annotated[bool, typer.Option("--guard/--no-guard", help="accept only refinements that stay the same answer: similar to the parent, free of prompt machinery, of similar length")] = SEARCH.guard,
    min_similarity: Annotated[float, typer.Option(min=0.0, max=1.0, help="guard: case-folded similarity to the parent at least this (rapidfuzz ratio / 100)")] = SEARCH.min_similarity,
    max_length_ratio: Annotated[float, typer.Option(min=1.0, help="guard: length within this factor of the parent's, either way")] = SEARCH.max_length_ratio,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="tokens per refinement (as in `spar iterate`'s search.max_new_tokens)")] = SEARCH.max_new_tokens,
    judge_max_new_tokens: Annotated[int, typer.Option(min=1, help="tokens per judge reply (judge.max_new_tokens)")] = JUDGE.max_new_tokens,
    batch_size: Annotated[int, typer.Option(min=1, help="sequences per forward pass (hf backend)")] = 16,
    seed: Annotated[int, typer.Option(help="sampling seed")] = 0,
    refine_format: Annotated[str, typer.Option(help="the refiner's reply: rewrite (the whole answer, the paper's) or edits (operations that quote the answer; spar applies them)")] = SEARCH.refine_format,
    dtype: DtypeOpt = None,
):
    """Refine failed answers by tree search until the judge accepts one; saves every tree whole."""
    from spar.io import refuse_same_path
    from spar.selfplay.data import search_stats
    from spar.stages import run_search

    refuse_same_path(input, output)
    cfg = SearchSettings(strategy=strategy, branch=branch, select=select, depth=depth, budget=budget, temperature=temperature,
                         top_p=top_p, max_new_tokens=max_new_tokens, guard=guard, min_similarity=min_similarity,
                         max_length_ratio=max_length_ratio, refine_format=refine_format)
    jcfg = JudgeSettings(votes=votes, mode=mode, max_new_tokens=judge_max_new_tokens)
    counts: dict = {}
    trees = run_search(_backend(model, batch_size, dtype=dtype, max_new_tokens=max(max_new_tokens, judge_max_new_tokens)), jcfg, cfg, input, output, seed,
                       sequential=sequential, counts=counts)
    st = search_stats(trees)
    typer.echo(f"wrote {len(trees)} trees to {output}: {st.solved} solved ({100 * st.success_rate:.1f}%), "
               f"mean expanded per solved tree {st.mean_expanded_solved}, mean solution depth {st.mean_solution_depth}; "
               f"{st.refinements} refinements, {st.judged_yes} accepted by the judge, of which {st.guard_rejected_judged_yes} "
               f"failed the guard; guard rejections {st.guard_rejected}"
               + (f"; {counts['edit_failures']} replies whose edits did not apply" if counts else ""), err=True)


def _iterate(config: Optional[Path], run_dir: Optional[Path], overrides: dict, until: Optional[str]):
    from spar.cli_common import remote_given
    from spar.config import load_config
    from spar.pipeline import Run

    cfg = load_config(config, {**overrides, **{f"remote.{k}": v for k, v in remote_given().items()}})
    from spar.config import check_recipe

    check_recipe(cfg, config)
    run = Run(cfg, run_dir or Path("runs") / cfg.name, until=until)
    return run, run.run()


@app.command()
@friendly
def iterate(
    config: Annotated[Optional[Path], typer.Option(help="recipe YAML, or a shipped recipe by name (smollm2-135m/demo, llama3-8b/spar)", callback=_shipped), IN] = None,
    run_dir: Annotated[Optional[Path], typer.Option(help="run directory (default runs/<name>); rerun to resume"), RUN_DIR] = None,
    iterations: Annotated[Optional[int], typer.Option(help="self-play iterations (overrides the recipe)")] = None,
    method: Annotated[Optional[str], typer.Option(help=f"overrides the recipe's method: ({methods_help()})")] = None,
    until: Annotated[Optional[str], typer.Option(help="stop right after the first stage of this name (spar: prompts, eval, bootstrap, sample, judge, negatives, search, data, train_actor, train_refiner), or after iter_N:<stage>")] = None,
    set: Annotated[Optional[list[str]], typer.Option("--set", help="override a recipe value, KEY=VALUE (repeatable), e.g. search.budget=6")] = None,
    executor: Annotated[Optional[str], typer.Option(help="local | ray: spread generation over Ray actors (executor.* in the recipe)")] = None,
):
    """Run self-play iterations of a method (SPaR by default: sample -> judge -> search -> data ->
    train actor/refiner -> eval; the baselines on the same stages).

    Resumable: rerunning skips finished stages and rows; a changed setting reruns only what it affects."""
    over = _overrides(set)
    if iterations is not None:
        over["iterations"] = iterations
    if method is not None:
        over["method"] = method
    if executor is not None:
        over["executor.kind"] = executor
    _iterate(config, run_dir, over, until)


@app.command()
@friendly
def demo(
    run_dir: Annotated[Path, typer.Option(help="where the run's files go"), RUN_DIR] = Path("runs/demo"),
    ifeval_data: Annotated[Optional[Path], typer.Option(help="IFEval input_data.jsonl: adds a fixed IFEval slice to the before/after table"), IN] = None,
):
    """One complete SPaR iteration on the embedded model, offline, on a CPU in minutes (what `make demo` runs)."""
    from importlib.resources import files

    from rich.console import Console
    from rich.table import Table

    from spar.report import scores

    recipe = Path(str(files("spar") / "recipes" / "smollm2-135m" / "demo.yaml"))
    over = {"eval.ifeval_data": str(ifeval_data)} if ifeval_data else {}
    run, summary = _iterate(recipe, run_dir, over, None)
    table = Table(title="before / after one SPaR iteration (prompt-level strict accuracy, %)")
    for c in ("benchmark", "prompts", "before", "after"):
        table.add_column(c, justify="right")
    for bench, per in scores(run_dir).items():
        if 0 in per and 1 in per:
            table.add_row(bench, str(per[0]["n_prompts"]), f"{per[0]['prompt_strict']:.2f}", f"{per[1]['prompt_strict']:.2f}")
    console = Console()
    console.print(table)
    from spar.report import print_pairs

    print_pairs(console, run_dir / "iter_1" / "dpo.jsonl")
    console.print(f"run directory: {run_dir}  ·  report: {run_dir / 'report.html'}  ·  pairs: {run_dir / 'iter_1' / 'dpo.jsonl'}")



app.command("compare")(compare)
app.command("report")(report)


def main() -> None:  # pragma: no cover
    sys.exit(app())
