"""Tree search on the embedded model: the same negatives searched batched (all trees advance
together) vs --sequential (one request per node and one per vote, as the reference implementation
does): pairs and tree nodes (refinements, each judged or found in the tree's judgment cache) per
minute. bench/strategies.py compares the strategies.

Prints a table and, last, one JSON line.   python bench/search.py [--negatives 6]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch
from rich.console import Console
from rich.table import Table

from spar.constraints.procedural import build_prompts
from spar.llm import BackendOptions, Sampling, load_backend
from spar.roles.judge import JudgeConfig, judge
from spar.search.driver import RefineSampling, Searcher
from spar.search.strategies import SearchConfig
from spar.selfplay.negatives import NegativeConfig, pick_negatives
from spar.types import JudgedSample


def negatives(backend, count: int, seed: int = 0):
    prompts = build_prompts(count * 2, "heldout", seed=seed, max_k=2)
    outs = backend.generate([p.messages for p in prompts], Sampling(n=2, temperature=0.9, top_p=0.9, max_new_tokens=64, seed=seed))
    flat = [(p, k, t) for p, o in zip(prompts, outs) for k, t in enumerate(o)]
    js = judge(None, [p for p, _, _ in flat], [t for _, _, t in flat], JudgeConfig(mode="verifier"))
    judged = [JudgedSample(id=p.id, index=k, response=t, judgment=j) for (p, k, t), j in zip(flat, js)]
    return pick_negatives(prompts, judged, NegativeConfig())[:count]


class Counting:
    """Counts the prompt tokens of the requests (once per request, whatever n) and the tokens the
    backend generates, so the table shows where the time goes."""

    def __init__(self, backend):
        self.backend, self.prompt_tokens, self.new_tokens = backend, 0, 0

    def generate(self, requests, sampling, on_batch=None):
        self.prompt_tokens += sum(len(self.backend.encode(r)) for r in requests)

        def count(rows: int, ntok: int) -> None:
            self.new_tokens += ntok
            if on_batch:
                on_batch(rows, ntok)

        return self.backend.generate(requests, sampling, on_batch=count)

    def __getattr__(self, name):
        return getattr(self.backend, name)


def timed_search(backend, negs, jcfg, scfg, rs, sequential):
    counted = Counting(backend)
    s = Searcher(counted, jcfg, scfg, rs, sequential=sequential)
    before = backend.prefill_positions
    t0 = time.perf_counter()
    trees = s.run(negs)
    dt = time.perf_counter() - t0
    return trees, dt, s.calls, (counted.prompt_tokens, backend.prefill_positions - before, counted.new_tokens)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--negatives", type=int, default=6)
    args = ap.parse_args()
    backend = load_backend("embedded", BackendOptions(batch_size=32))
    negs = negatives(backend, args.negatives)
    console = Console(width=140)  # the table stays whole when piped to a file
    fig: dict = {"machine": f"{platform.machine()} {torch.get_num_threads()} threads", "negatives": len(negs)}

    # 1. batched vs sequential, hybrid judge with 3 votes (labels from the checkers, votes still generated)
    jcfg = JudgeConfig(votes=3, mode="hybrid", max_new_tokens=32)
    scfg = SearchConfig(strategy="bfs", branch=3, select=1, depth=2, budget=6)
    rs = RefineSampling(max_new_tokens=48, seed=0)
    rows = []
    for name, seq in (("batched", False), ("sequential", True)):
        trees, dt, calls, (ptok, prefilled, ntok) = timed_search(backend, negs, jcfg, scfg, rs, seq)
        nodes = sum(len(t.nodes) - 1 for t in trees)
        pairs = sum(t.solved for t in trees)
        rows.append((name, dt, calls, nodes, pairs, ptok, prefilled, ntok))
        fig[name] = {"seconds": round(dt, 1), "generate_calls": calls, "nodes": nodes, "pairs": pairs,
                     "prompt_tokens": ptok, "prefilled_positions": prefilled, "new_tokens": ntok,
                     "pairs_per_min": round(60 * pairs / dt, 2), "nodes_per_min": round(60 * nodes / dt, 1)}
    t = Table(title=f"bfs on {len(negs)} negatives (branch 3, select 1, depth 2, hybrid judge, 3 votes)")
    for c in ("mode", "seconds", "generate calls", "prompt tokens", "prefilled", "new tokens", "nodes", "pairs", "pairs/min",
              "nodes/min"):
        t.add_column(c, justify="right")
    for name, dt, calls, nodes, pairs, ptok, prefilled, ntok in rows:
        t.add_row(name, f"{dt:.1f}", str(calls), str(ptok), str(prefilled), str(ntok), str(nodes), str(pairs), f"{60 * pairs / dt:.2f}",
                  f"{60 * nodes / dt:.1f}")
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
