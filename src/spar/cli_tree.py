"""``spar tree``: draw refinement trees and count what the search did."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from spar.cli_common import SEARCH, friendly, IN

tree_app = typer.Typer(help="Look at refinement trees.", no_args_is_help=True)


@tree_app.command("show")
@friendly
def tree_show(
    path: Annotated[Path, typer.Argument(help="trees JSONL"), IN],
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


@tree_app.command("stats")
@friendly
def tree_stats(
    path: Annotated[Path, typer.Argument(help="trees JSONL"), IN],
    prompts: Annotated[Path, typer.Option(help="the prompts of the trees (a negatives JSONL or a prompts JSONL)"), IN],
    judgments: Annotated[Optional[Path], typer.Option(help="judgments JSONL of the samples, for the similarity of independent samples"), IN] = None,
    guard: Annotated[bool, typer.Option("--guard/--no-guard", help="apply the guard to each (rejected, chosen) pair, as the data stage does")] = True,
    min_similarity: Annotated[float, typer.Option(min=0.0, max=1.0, help="guard: case-folded similarity at least this")] = SEARCH.min_similarity,
    max_length_ratio: Annotated[float, typer.Option(min=1.0, help="guard: length within this factor")] = SEARCH.max_length_ratio,
    show: Annotated[int, typer.Option(help="print this many pairs drawn at random (seeded) for reading")] = 0,
    seed: Annotated[int, typer.Option(help="seed of the draw")] = 0,
):
    """Tree, guard and pair-quality figures of a trees file as one JSON object (what stats.json holds)."""
    import json

    from spar.io import DataError, read_jsonl, read_prompts
    from spar.report import sample_pairs
    from spar.selfplay.data import dpo_pairs, search_stats
    from spar.types import JudgedSample, Negative, Tree

    trees = read_jsonl(path, Tree)
    try:
        by_id = {n.prompt.id: n.prompt for n in read_jsonl(prompts, Negative)}
    except DataError:
        by_id = {p.id: p for p in read_prompts(prompts)}
    missing = sorted({t.prompt_id for t in trees} - set(by_id))
    if missing:
        raise DataError(f"{prompts}: no prompt for tree(s) of {', '.join(missing[:3])}")
    gcfg = SEARCH.but(guard=guard, min_similarity=min_similarity, max_length_ratio=max_length_ratio).guard_config()
    after = False
    if gcfg is not None:  # nodes searched without the guard: judge them by it now (in memory only)
        from spar.search.strategies import guard_node

        for t in trees:
            by_node = {n.id: n for n in t.nodes}
            for n in t.nodes:
                if n.parent is not None and n.similarity is None:
                    guard_node(n, by_node[n.parent], gcfg)
                    after = True
    pairs, dropped = dpo_pairs(trees, by_id, gcfg)
    st = search_stats(trees, read_jsonl(judgments, JudgedSample) if judgments else (), pairs, dropped)
    typer.echo(json.dumps({**st.as_dict(), "guard_applied_after_search": after}))
    for i, p in enumerate(sample_pairs([x.model_dump() for x in pairs], show, seed), 1):
        typer.echo(f"\n=== pair {i} ({p['origin']['tree']}, similarity {p['origin']['similarity']}) ===\n"
                   f"PROMPT: {p['prompt'][-1]['content']}\n--- rejected ---\n{p['rejected'][0]['content']}\n"
                   f"--- chosen ---\n{p['chosen'][0]['content']}")
