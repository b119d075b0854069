"""The Ray executor's price and gain: the same sample-stage workload (procedural prompts, 2 sampled
answers each, 48 tokens) through the local executor and through Ray with 1 and 2 replicas of the
embedded model, rows (answers) per second. On a 2-core CPU two replicas share the cores that one
local engine uses, so expect little gain: the figure measures the executor's overhead. Prints a
table and, last, one JSON line.       python bench/scale.py [--prompts 24]
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from rich.console import Console
from rich.table import Table

from spar.machine import describe
from spar.constraints.procedural import build_prompts
from spar.llm import BackendOptions, Sampling, as_dicts, load_backend


def timed(backend, chats, s: Sampling) -> tuple[float, list]:
    backend.generate(chats[:2], s.but(max_new_tokens=4))  # warm-up
    t0 = time.perf_counter()
    out = backend.generate(chats, s)
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prompts", type=int, default=24)
    args = ap.parse_args()
    try:
        import ray
    except ImportError:
        print("scale: skipped, Ray is not installed (pip install 'spar-lm[ray]', or make test-ray)")
        print(json.dumps({"skipped": "ray not installed"}))
        return

    from spar.executor import RayBackend

    chats = [as_dicts(p.messages) for p in build_prompts(args.prompts, "heldout", seed=0, max_k=2)]
    s = Sampling(n=2, temperature=0.9, top_p=0.9, max_new_tokens=48, seed=1)
    opts = BackendOptions(batch_size=16)
    rows: dict[str, dict] = {}
    t0 = time.perf_counter()
    local = load_backend("embedded", opts)
    start = time.perf_counter() - t0
    wall, ref = timed(local, chats, s)
    rows["local"] = {"startup_s": round(start, 1), "wall_s": round(wall, 2), "rows_per_s": round(len(chats) * 2 / wall, 2)}
    del local
    ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    for n in (1, 2):
        t0 = time.perf_counter()
        rb = RayBackend("embedded", opts, replicas=n, cpus_per_replica=max(1, (torch.get_num_threads()) // n))
        ray.get([r.pid.remote() for r in rb.replicas])  # the replicas are up
        start = time.perf_counter() - t0
        wall, out = timed(rb, chats, s)
        rows[f"ray x{n}"] = {"startup_s": round(start, 1), "wall_s": round(wall, 2), "rows_per_s": round(len(chats) * 2 / wall, 2),
                             "same_rows_as_local": out == ref}
        rb.close()
    ray.shutdown()
    table = Table(title=f"{len(chats)} prompts x 2 sampled answers, 48 tokens, embedded model")
    for c in ("executor", "start-up s", "wall s", "answers/s", "same answers as local"):
        table.add_column(c, justify="right")
    for name, r in rows.items():
        table.add_row(name, str(r["startup_s"]), str(r["wall_s"]), str(r["rows_per_s"]), str(r.get("same_rows_as_local", "–")))
    Console(width=150).print(table)
    print(json.dumps({"machine": describe(), "prompts": len(chats), **rows,
                      "ray2_over_local": round(rows["ray x2"]["rows_per_s"] / rows["local"]["rows_per_s"], 2),
                      "ray1_over_local": round(rows["ray x1"]["rows_per_s"] / rows["local"]["rows_per_s"], 2)}))


if __name__ == "__main__":
    main()
