"""Tree search on the embedded model: the same negatives searched batched (all trees advance
together) vs --sequential (one request per node and one per vote, as the reference implementation
does): pairs and tree nodes (refinements, each judged or found in the tree's judgment cache) per
minute. bench/strategies.py compares the strategies.

Prints a table and, last, one JSON line.   python bench/search.py [--negatives 6] [--warmup 1] [--repeats 3] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

from rich.console import Console
from rich.table import Table

from spar.machine import describe
from spar.constraints.procedural import build_prompts
from spar.llm import BackendOptions, Sampling, load_backend
from spar.roles.judge import judge
from spar.settings import JudgeSettings
from spar.search.driver import Searcher
from spar.settings import SearchSettings
from spar.selfplay.negatives import pick_negatives
from spar.settings import NegativesSettings
from spar.types import JudgedSample


def negatives(backend, count: int, seed: int = 0):
    prompts = build_prompts(count * 2, "heldout", seed=seed, max_k=2)
    outs = backend.generate([p.messages for p in prompts], Sampling(n=2, temperature=0.9, top_p=0.9, max_new_tokens=64, seed=seed))
    flat = [(p, k, t) for p, o in zip(prompts, outs) for k, t in enumerate(o)]
    js = judge(None, [p for p, _, _ in flat], [t for _, _, t in flat], JudgeSettings(mode="verifier"))
    judged = [JudgedSample(id=p.id, index=k, response=t, judgment=j) for (p, k, t), j in zip(flat, js)]
    return pick_negatives(prompts, judged, NegativesSettings())[:count]


def timed_search(backend, negs, jcfg, scfg, sequential, seed=0):
    """Search the negatives; returns the trees, seconds, generate calls, and what the backend ran
    for them (spar.llm.hf.Usage: prompt tokens, prefilled positions, prefill seconds, new tokens)."""
    s = Searcher(backend, jcfg, scfg, seed, sequential=sequential)
    before = dataclasses.replace(backend.usage)
    t0 = time.perf_counter()
    trees = s.run(negs)
    dt = time.perf_counter() - t0
    used = {f.name: getattr(backend.usage, f.name) - getattr(before, f.name) for f in dataclasses.fields(before)}
    return trees, dt, s.calls, used


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--negatives", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=3, help="runs of the batched search (their mean is counted)")
    ap.add_argument("--warmup", type=int, default=1, help="uncounted batched runs first")
    ap.add_argument("--batch-size", type=int, default=64,
                    help="sequences per forward pass: 64 runs a step's 54 judge votes as one batch")
    args = ap.parse_args()
    backend = load_backend("embedded", BackendOptions(batch_size=args.batch_size))
    negs = negatives(backend, args.negatives)
    console = Console(width=160)  # the table stays whole when piped to a file
    fig: dict = {"machine": describe(), "negatives": len(negs),
                 "dtype": str(backend.model.dtype).removeprefix("torch."), "batch_size": args.batch_size}

    # 1. batched vs sequential, hybrid judge with 3 votes (labels from the checkers, votes still generated)
    jcfg = JudgeSettings(votes=3, mode="hybrid", max_new_tokens=32)
    scfg = SearchSettings(strategy="bfs", branch=3, select=1, depth=2, budget=6, max_new_tokens=48)
    # The batched search is short (~25 s here), so one slow spell of this shared machine moves it by
    # 10-20%: it runs `--repeats` times (the same seeded trees each time) and counts the mean, which
    # weighs slow spells as the one long sequential run does. Before them, `--warmup` uncounted runs:
    # a fresh process runs its first searches slower (28.1 and 20.6 s, then 23.2/21.6 and
    # 18.6/17.0 in two runs), and the sequential run, which comes last, is warm all through.
    for _ in range(args.warmup):
        fig.setdefault("warmup_seconds", []).append(round(timed_search(backend, negs, jcfg, scfg, False)[1], 1))
    for name, seq, runs in (("batched", False, args.repeats), ("sequential", True, 1)):
        times, prefill = [], []
        for _ in range(runs):
            trees, dt, calls, used = timed_search(backend, negs, jcfg, scfg, seq)
            times.append(dt)
            prefill.append(used["prefill_seconds"])
        dt = sum(times) / len(times)
        nodes = sum(len(t.nodes) - 1 for t in trees)
        pairs = sum(t.solved for t in trees)
        fig[name] = {"seconds": round(dt, 1), "runs": [round(x, 1) for x in times], "generate_calls": calls,
                     "nodes": nodes, "pairs": pairs, "prompt_tokens": used["prompt_tokens"],
                     "prefilled_positions": used["prefill_positions"],
                     "prefill_seconds": round(sum(prefill) / len(prefill), 1), "new_tokens": used["new_tokens"],
                     "pairs_per_min": round(60 * pairs / dt, 2), "nodes_per_min": round(60 * nodes / dt, 1)}
    t = Table(title=f"bfs on {len(negs)} negatives (branch 3, select 1, depth 2, hybrid judge, 3 votes)")
    columns = {"seconds": "seconds", "runs": "runs", "generate calls": "generate_calls", "prompt tokens": "prompt_tokens",
               "prefilled": "prefilled_positions", "prefill s": "prefill_seconds", "new tokens": "new_tokens",
               "nodes": "nodes", "pairs": "pairs", "pairs/min": "pairs_per_min", "nodes/min": "nodes_per_min"}
    t.add_column("mode", justify="right")
    for c in columns:
        t.add_column(c, justify="right")
    for name in ("batched", "sequential"):
        t.add_row(name, *("/".join(map(str, v)) if isinstance(v := fig[name][key], list) else str(v)
                          for key in columns.values()))
    console.print(t)
    b, s = fig["batched"], fig["sequential"]
    fig["speedup_nodes_per_min"] = round(b["nodes_per_min"] / s["nodes_per_min"], 2) if s["nodes_per_min"] else None
    fig["speedup_pairs_per_min"] = round(b["pairs_per_min"] / s["pairs_per_min"], 2) if s["pairs_per_min"] else None
    pairs = (f"{fig['speedup_pairs_per_min']}x pairs per minute" if fig["speedup_pairs_per_min"] is not None
             else "pairs per minute: no ratio (the sequential run solved no tree)")
    console.print(f"batched / sequential: {fig['speedup_nodes_per_min']}x nodes per minute; {pairs}")

    print(json.dumps(fig))


if __name__ == "__main__":
    main()
