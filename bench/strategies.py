"""Success rate of bfs, dfs, iterative, best_of_n and greedy at the same node budget on the same
negatives of the embedded model, judged by the checkers (so "solved" means the constraints are met).

Prints a table and, last, one JSON line.   python bench/strategies.py [--negatives 6] [--budget 15]
"""

from __future__ import annotations

import argparse
import json

from rich.console import Console
from rich.table import Table

from search import negatives, timed_search
from spar.machine import describe
from spar.llm import BackendOptions, load_backend
from spar.settings import JudgeSettings
from spar.settings import SearchSettings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--negatives", type=int, default=6)
    ap.add_argument("--budget", type=int, default=15)
    args = ap.parse_args()
    backend = load_backend("embedded", BackendOptions(batch_size=32))
    negs = negatives(backend, args.negatives)
    console = Console()
    fig: dict = {"machine": describe(), "negatives": len(negs)}
    vcfg = JudgeSettings(mode="verifier")
    table = Table(title=f"strategies at a {args.budget}-node budget on the same {len(negs)} negatives (checker judge)")
    # nodes: refinements in the tree; a text seen before in the tree is not judged again
    for c in ("strategy", "solved", "success", "mean nodes", "seconds"):
        table.add_column(c, justify="right")
    fig["strategies"] = {}
    for strat in ("bfs", "dfs", "iterative", "best_of_n", "greedy"):
        trees, dt, _, _ = timed_search(backend, negs, vcfg, SearchSettings(strategy=strat, budget=args.budget, max_new_tokens=48),
                                       False)
        solved = sum(t.solved for t in trees)
        console.print(f"{strat}: {solved}/{len(trees)} solved in {dt:.1f} s")
        mean_nodes = sum(len(t.nodes) - 1 for t in trees) / len(trees)
        table.add_row(strat, f"{solved}/{len(trees)}", f"{100 * solved / len(trees):.0f}%", f"{mean_nodes:.1f}", f"{dt:.1f}")
        fig["strategies"][strat] = {"solved": solved, "solved_ids": sorted(t.id for t in trees if t.solved),
                                    "success_rate": round(solved / len(trees), 3),
                                    "mean_nodes": round(mean_nodes, 2), "seconds": round(dt, 1)}
    console.print(table)
    print(json.dumps(fig))


if __name__ == "__main__":
    main()
