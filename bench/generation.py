"""Generation speed of the embedded model: raw `model.generate` vs spar's hf backend.

Prints a table and, last, one JSON line of the figures. Runs in about 3 minutes on a 2-core CPU.
    python bench/generation.py [--new-tokens 48] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from rich.console import Console
from rich.table import Table

from spar.machine import describe
from spar.llm import BackendOptions, Sampling, load_backend

TOPICS = ["the ocean", "a busy train station", "learning to cook", "a rainy afternoon", "an old library",
          "mountain hiking", "a city at night", "planting a garden"]


def prompts(k: int) -> list[list[dict[str, str]]]:
    # Long-form requests, so answers run to the token cap and both sides generate the same amount.
    return [[{"role": "user", "content": f"Write a long, detailed story about {TOPICS[i % len(TOPICS)]} (part {i})."}]
            for i in range(k)]


def raw_generate(backend, chats, batch_size: int, new_tokens: int, **sample) -> tuple[float, int]:
    """What spar does, minus spar: the same batches straight into model.generate (greedy, or
    transformers' own sampling when given temperature and top_p)."""
    how = dict(do_sample=True, top_k=0, **sample) if sample else dict(do_sample=False, temperature=None, top_p=None,
                                                                     top_k=None)
    tok, model = backend.tokenizer, backend.model
    encoded = sorted((backend.encode(c) for c in chats), key=len)
    t0, ntok = time.perf_counter(), 0
    for s in range(0, len(encoded), batch_size):
        batch = encoded[s:s + batch_size]
        width = max(map(len, batch))
        ids = torch.tensor([[tok.pad_token_id] * (width - len(x)) + x for x in batch])
        mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in batch])
        with torch.inference_mode():
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens, **how,
                                 pad_token_id=tok.pad_token_id, eos_token_id=backend._eos)
        ntok += int((out[:, width:] != tok.pad_token_id).sum())
    return time.perf_counter() - t0, ntok


def spar_generate(backend, chats, new_tokens: int, **kw) -> tuple[float, int]:
    used = [0]
    t0 = time.perf_counter()
    backend.generate(chats, Sampling(max_new_tokens=new_tokens, **kw), on_batch=lambda _n, t: used.__setitem__(0, used[0] + t))
    return time.perf_counter() - t0, used[0]


def medians(repeats: int, *runs) -> list[float]:
    """Tokens/s of each run, median over repeats; the runs take turns, since this machine's speed
    drifts (+-30% at batch 1)."""
    rates: list[list[float]] = [[] for _ in runs]
    for _ in range(repeats):
        for rate, run in zip(rates, runs):
            seconds, ntok = run()
            rate.append(ntok / seconds)
    return [statistics.median(r) for r in rates]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--new-tokens", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=3, help="runs of each side per batch size; medians are reported")
    args = ap.parse_args()
    torch.manual_seed(0)
    backend = load_backend("embedded", BackendOptions(batch_size=1))
    spar_generate(backend, prompts(1), 8)  # warm-up
    rows, figures = [], {"machine": describe(), "torch": torch.__version__,
                         "new_tokens": args.new_tokens}
    for bs, count in [(1, 2), (8, 8), (32, 32)]:
        backend.options.batch_size = bs
        chats = prompts(count)
        raw_tps, spar_tps = medians(args.repeats, lambda: raw_generate(backend, chats, bs, args.new_tokens),
                                    lambda: spar_generate(backend, chats, args.new_tokens))
        overhead = 100 * (raw_tps - spar_tps) / raw_tps
        rows.append((f"batch {bs}", f"{raw_tps:.1f}", f"{spar_tps:.1f}", f"{overhead:+.1f}%"))
        figures[f"batch{bs}"] = {"raw_tok_s": round(raw_tps, 2), "spar_tok_s": round(spar_tps, 2), "repeats": args.repeats,
                                 "overhead_pct": round(overhead, 1)}
    table = Table(title="embedded model: tokens/s, raw model.generate vs spar hf backend")
    for c in ("batch", "raw tok/s", "spar tok/s", "overhead"):
        table.add_column(c)
    for r in rows:
        table.add_row(*r)
    console = Console()
    console.print(table)

    # What sampling costs each side at batch 32: transformers sorts the whole vocabulary of every row
    # at every step, spar's NucleusSampler the top 256 tokens (same distribution).
    chats, hot = prompts(32), dict(temperature=0.9, top_p=0.9)
    raw_s, spar_s = medians(args.repeats, lambda: raw_generate(backend, chats, 32, args.new_tokens, **hot),
                            lambda: spar_generate(backend, chats, args.new_tokens, **hot, seed=0))
    greedy = figures["batch32"]
    t3 = Table(title="batch 32, sampled (T=0.9, top-p 0.9) vs greedy, tokens/s")
    for c in ("sampler", "greedy tok/s", "sampled tok/s", "sampled / greedy"):
        t3.add_column(c)
    t3.add_row("transformers (raw generate)", f"{greedy['raw_tok_s']:.1f}", f"{raw_s:.1f}", f"{raw_s / greedy['raw_tok_s']:.2f}")
    t3.add_row("spar", f"{greedy['spar_tok_s']:.1f}", f"{spar_s:.1f}", f"{spar_s / greedy['spar_tok_s']:.2f}")
    console.print(t3)
    figures["sampled_batch32"] = {"raw_tok_s": round(raw_s, 2), "spar_tok_s": round(spar_s, 2),
                                  "raw_vs_greedy": round(raw_s / greedy["raw_tok_s"], 2),
                                  "spar_vs_greedy": round(spar_s / greedy["spar_tok_s"], 2)}

    backend.options.batch_size = 8
    chat = prompts(1)
    kw = dict(temperature=0.9, top_p=0.9, seed=1)
    t_one, _ = spar_generate(backend, chat, args.new_tokens, **kw)
    t0 = time.perf_counter()
    backend.generate(chat, Sampling(n=5, max_new_tokens=args.new_tokens, **kw))
    t_n5 = time.perf_counter() - t0
    t0 = time.perf_counter()
    for k in range(5):
        backend.generate(chat, Sampling(max_new_tokens=args.new_tokens, temperature=0.9, top_p=0.9, seed=k))
    t_sep = time.perf_counter() - t0
    t2 = Table(title="5 samples of one prompt")
    for c in ("one completion", "n=5 in one request", "5 separate requests", "n=5 / one"):
        t2.add_column(c)
    t2.add_row(f"{t_one:.2f} s", f"{t_n5:.2f} s", f"{t_sep:.2f} s", f"{t_n5 / t_one:.2f}x")
    console.print(t2)
    figures["n5"] = {"one_s": round(t_one, 2), "n5_one_request_s": round(t_n5, 2), "five_requests_s": round(t_sep, 2),
                     "ratio_vs_one": round(t_n5 / t_one, 2)}
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
