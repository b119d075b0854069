"""``spar eval refine``: the refiner's accuracy at fixing failed answers."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from spar.cli_common import JUDGE, SEARCH, DtypeOpt, ModelOpt, _backend, friendly, IN, OUT


@friendly
def eval_refine(
    model: ModelOpt = "embedded",
    failed: Annotated[Optional[Path], typer.Option(help="negatives JSONL (a run's negatives.jsonl, or `spar bootstrap refiner --eval-out`)"), IN] = None,
    data: Annotated[Optional[Path], typer.Option(help="IFEval input_data.jsonl: refine the answers in --responses that fail it"), IN] = None,
    responses: Annotated[Optional[Path], typer.Option(help="a model's IFEval responses (with --data)"), IN] = None,
    limit: Annotated[Optional[int], typer.Option(min=1, help="first N failed answers only")] = None,
    strategy: Annotated[str, typer.Option(help="search beside the greedy refinement: bfs | dfs")] = "bfs",
    budget: Annotated[int, typer.Option(min=1, help="judged nodes per search")] = SEARCH.budget,
    judge_mode: Annotated[str, typer.Option(help="judge of the search: llm (the refiner's vote); verifier or hybrid only on procedural negatives")] = "llm",
    votes: Annotated[int, typer.Option(min=1, help="judge votes per node")] = JUDGE.votes,
    output: Annotated[Path, typer.Option("--output", "-o", help="scores JSON; one row per failed answer goes to OUTPUT's stem + .items.jsonl"), OUT] = Path("refine_scores.json"),
    max_new_tokens: Annotated[int, typer.Option(min=1, help="tokens per refinement")] = SEARCH.max_new_tokens,
    batch_size: Annotated[int, typer.Option(min=1, help="requests per forward pass")] = 16,
    seed: Annotated[int, typer.Option(help="sampling seed")] = 0,
    dtype: DtypeOpt = None,
):
    """Refinement accuracy: one greedy refinement and a tree search per failed answer; the share that
    the benchmark's checkers now pass, and each refinement's similarity to the original."""
    from rich.console import Console
    from rich.table import Table

    from spar.eval.refine import as_negatives, check_judge, evaluate_refinement, failed_answers
    from spar.io import DataError, read_jsonl, refuse_same_path, write_jsonl, write_text
    from spar.settings import JudgeSettings, SearchSettings
    from spar.types import Negative

    if (failed is None) == (data is None):
        raise DataError("give either --failed NEGATIVES.jsonl, or --data IFEVAL.jsonl with --responses")
    items_path = output.with_name(output.stem + ".items.jsonl")
    for src in (failed, responses, data):
        if src is not None:
            refuse_same_path(src, output, items_path)
    if failed is not None:
        negatives = read_jsonl(failed, Negative)
        check_judge(judge_mode, _source_of(negatives))
    else:
        check_judge(judge_mode, "ifeval")
        if responses is None:
            raise DataError("--data needs --responses: the answers to refine")
    judge_cfg = JudgeSettings(votes=votes, mode=judge_mode)
    search = SearchSettings(strategy=strategy, budget=budget, max_new_tokens=max_new_tokens)
    backend = _backend(model, batch_size, dtype=dtype)
    t0 = time.perf_counter()
    if failed is None:
        from spar.eval.ifeval import load_ifeval, read_responses

        prompts = load_ifeval(data)
        wrong = failed_answers(prompts, read_responses(responses, prompts))
        negatives = as_negatives(backend, wrong[:limit] if limit else wrong, judge_cfg.but(mode="llm"), seed)
    else:
        negatives = negatives[:limit] if limit else negatives
    if not negatives:
        raise DataError("no failed answers to refine")
    scores, rows = evaluate_refinement(backend, negatives, judge_cfg, search, seed)
    result = {"benchmark": "refine", "model": model, "source": str(failed or responses), "seconds": round(time.perf_counter() - t0, 1),
              "items_file": items_path.name, **scores}
    write_jsonl(items_path, rows)
    write_text(output, json.dumps(result, indent=2) + "\n")
    table = Table(title=f"Refinement of {scores['failed_answers']} failed answers ({model}; search judged by: {judge_mode})")
    for c in ("", "passes now %", "judge accepted %", "mean similarity to the original"):
        table.add_column(c, justify="right")
    g, s = scores["greedy"], scores[strategy]
    table.add_row("greedy, one refinement", f"{g['pass']:.2f}", "", str(g["mean_similarity"]))
    table.add_row(f"{strategy}, budget {budget}", f"{s['pass']:.2f}", f"{s['accepted_by_judge']:.2f}", str(s["mean_similarity"]))
    Console().print(table)
    typer.echo(f"wrote {output} and {items_path}", err=True)


def _source_of(negatives: list) -> str:
    """procedural when every negative's prompt came from spar's builder, else the prompts' source."""
    sources = {n.prompt.source for n in negatives}
    return "procedural" if all(s.startswith("procedural") for s in sources) else ", ".join(sorted(sources))


@friendly
def eval_followbench(
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="model string; omit with --responses")] = None,
    data: Annotated[Path, typer.Option(help="FollowBench's data/ folder (the six *_constraints.json files)"), IN] = Path("followbench/data"),
    judge: Annotated[Optional[str], typer.Option(help="model string of the judge for the 470 items rules do not check (openai:URL#MODEL, a local model, ...)")] = None,
    rules_only: Annotated[bool, typer.Option("--rules-only", help="score only the 350 of 820 items that rules check (offline, no judge)")] = False,
    responses: Annotated[Optional[Path], typer.Option(help="score this responses file (spar rows, id FILE:EXAMPLE:LEVEL) instead of generating"), IN] = None,
    limit: Annotated[Optional[int], typer.Option(min=1, help="first N items only")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="scores JSON; responses, judge replies and per-item outcomes go beside it"), OUT] = Path("followbench_scores.json"),
    max_new_tokens: Annotated[int, typer.Option(min=1, help="tokens per answer")] = 384,
    judge_max_new_tokens: Annotated[int, typer.Option(min=1, help="tokens per judge reply")] = 512,
    batch_size: Annotated[int, typer.Option(min=1, help="prompts per forward pass")] = 16,
    dtype: DtypeOpt = None,
):
    """FollowBench, English: HSR and SSR per level 1-5 and per constraint file, and CSL. 350 of the
    820 items are checked by rules; the other 470 by --judge, which answers YES/NO per added
    constraint (a reply that does not parse counts as a failure and is reported apart). Answers and
    judge replies are saved as they come: a rerun resumes."""
    from rich.console import Console
    from rich.table import Table

    from spar.eval.followbench import answer, dumps, evaluate_followbench, select
    from spar.io import DataError, read_jsonl, refuse_same_path, write_jsonl, write_text
    from spar.types import Completion

    if not rules_only and not judge:
        raise DataError("470 of FollowBench's 820 items need an LLM judge: pass --judge MODEL (e.g. openai:URL#MODEL), "
                        "or --rules-only to score the 350 items that rules check")
    if rules_only and judge:
        raise DataError("--rules-only and --judge exclude each other")
    outcomes, resp_path = output.with_suffix(".outcomes.jsonl"), output.with_suffix(".responses.jsonl")
    judge_path = output.with_suffix(".judge.jsonl")
    if responses is not None:
        refuse_same_path(responses, output, outcomes, judge_path)
    items = select(data, judged=not rules_only, limit=limit)
    t0 = time.perf_counter()
    made: dict[str, object] = {}

    def backend(name: str):
        if name not in made:
            made[name] = _backend(name, batch_size, dtype=dtype)
        return made[name]

    if responses is not None:
        answers = {r.id: r.completions[0] for r in read_jsonl(responses, Completion)}
    else:
        if not model:
            raise DataError("spar eval followbench needs --model, or --responses to score saved answers")
        answers = answer(backend(model), items, resp_path, max_new_tokens, chunk=batch_size * 4)
    scored, rows = evaluate_followbench(items, answers, backend(judge) if judge else None, judge_path,
                                        judge_max_new_tokens, chunk=batch_size * 4)
    result = {"benchmark": "followbench", "part": "rules only" if rules_only else "rules and judge", "model": model,
              "judge": judge, "responses": str(responses or resp_path), "seconds": round(time.perf_counter() - t0, 1),
              **scored}
    write_jsonl(outcomes, rows)
    write_text(output, dumps(result))
    what = "rule-checked items only" if rules_only else f"rules + judge {judge}"
    table = Table(title=f"FollowBench, {what} ({result['items']} of 820): HSR % per level (SSR in the last row)")
    for c in ("file", "L1", "L2", "L3", "L4", "L5"):
        table.add_column(c, justify="right")
    for name, per in result["hsr_by_file"].items():
        table.add_row(name, *("–" if per[lv] is None else f"{per[lv]:.1f}" for lv in range(1, 6)))
    table.add_row("all (HSR)", *("–" if v is None else f"{v:.1f}" for v in result["hsr_by_level"].values()))
    table.add_row("all (SSR)", *("–" if v is None else f"{v:.1f}" for v in result["ssr_by_level"].values()))
    Console().print(table)
    if result["judged_items"]:
        typer.echo(f"judge replies that did not parse: {result['judge_unparsed']} of {result['judged_items']} (scored as failures)", err=True)
    typer.echo(f"CSL {result['csl']} over {result['csl_examples']} examples; scores in {output}", err=True)
