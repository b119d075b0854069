"""What a model of another size costs on this machine: spar's hf backend on a model with the
architecture of LLaMA3-8B (or of any config.json you give) and random bf16 weights. The texts are
meaningless; the time of a prefill and of a decode step is not, since neither depends on the
weights' values. No 8B checkpoint can be fetched here, so this is how the recipes' hours and memory
get a measured footing (src/spar/recipes/README.md).

Measures, with the embedded model's tokenizer feeding real procedural chats:
  resident memory of the weights; prefill tokens/s (a request for one new token);
  decode tokens/s at each batch size (16 new tokens minus 1, all rows generating).
With --train-length L it then trains instead of generating: one DPO step (+ the SFT term) of
recipes/llama3-8b/spar-1gpu.yaml's LoRA actor training (r 16 on every linear layer, gradient
checkpointing, reference log-probs computed first with the adapter off) on one pair whose prompt and
answers fill L tokens, through spar.train; it reports the step's time and the peak resident memory
(bf16 frozen weights, as on a GPU; fp32 adapters and their AdamW states). Minutes per 256 tokens on
two cores, so not part of the default run.
Prints a table and, last, one JSON line.    python bench/shape.py [--shape llama3-8b|PATH/config.json]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import sys
import threading
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from spar.constraints.procedural import build_prompts
from spar.llm import BackendOptions, Sampling, as_dicts
from spar.machine import describe

# Meta-Llama-3-8B-Instruct's config.json, the fields that set the cost.
SHAPES = {
    "llama3-8b": dict(model_type="llama", hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=8, vocab_size=128256,
                      max_position_embeddings=8192, rope_theta=500000.0, rms_norm_eps=1e-5,
                      tie_word_embeddings=False),
}


def shape_config(shape: str):
    from transformers import AutoConfig

    if shape in SHAPES:
        fields = dict(SHAPES[shape])
        return AutoConfig.for_model(fields.pop("model_type"), **fields)
    path = Path(shape)
    if not path.is_file():
        print(f"shape: {shape!r} is neither a known shape ({', '.join(SHAPES)}) nor a config.json", file=sys.stderr)
        raise SystemExit(2)
    return AutoConfig.from_pretrained(str(path.parent) if path.name == "config.json" else str(path))


def random_model(config, dtype: torch.dtype, device: str):
    """The architecture with uniform random weights, built without the slow per-module init
    (a normal init of 8B parameters takes minutes on two cores): allocate on the meta device, make
    the tensors real, fill them, and rebuild the buffers (rotary frequencies) that are computed."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="sdpa")
    model.to_empty(device=device)
    model.tie_weights()  # to_empty gives tied weights (SmolLM2's embeddings and head) separate tensors
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:  # norm scales
                p.fill_(1.0)
            else:
                p.uniform_(-0.02, 0.02)
        for module in model.modules():
            if hasattr(module, "inv_freq") and hasattr(module, "rope_init_fn"):
                inv_freq, scaling = module.rope_init_fn(module.config, torch.device(device))
                module.inv_freq = inv_freq
                module.original_inv_freq = inv_freq
                module.attention_scaling = scaling
    return model.eval()


def weight_bytes(config, dtype: torch.dtype) -> int:
    with torch.device("meta"):
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    return sum(p.numel() for p in model.parameters()) * torch.finfo(dtype).bits // 8


def available_gb(device: str) -> float | None:
    if device.startswith("cuda"):
        return torch.cuda.mem_get_info()[0] / 1e9
    try:
        with open("/proc/meminfo") as f:
            fields = dict(line.split(":", 1) for line in f)
        return int(fields["MemAvailable"].split()[0]) / 1e6
    except (OSError, KeyError, ValueError):
        return None


class Peak:
    """Peak memory while a block runs: on a CPU the process's resident memory, sampled every 20 ms
    from /proc (Linux); on a GPU the allocator's own peak."""

    def __init__(self, device: str):
        self.device = device

    def __enter__(self):
        if self.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        self.peak, self._stop = used_gb(self.device), threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        if not self.device.startswith("cuda"):
            self._thread.start()
        return self

    def _poll(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, used_gb(self.device))

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.peak = max(self.peak, used_gb(self.device), torch.cuda.max_memory_allocated() / 1e9
                        if self.device.startswith("cuda") else 0.0)


def used_gb(device: str) -> float:
    """Memory in use now: the GPU allocator's on a GPU, resident memory on a CPU."""
    if device.startswith("cuda"):
        return torch.cuda.memory_allocated() / 1e9
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e9


ANSWER = ("The keeper climbed the stairs at dusk, trimmed the wick, polished the lens and wrote down every "
          "ship that passed, its flag and its heading. ")


def measure_training(model, tok, length: int, device: str) -> dict:
    """One DPO step of the one-GPU recipe's actor training at ``length`` tokens a sequence."""
    from spar.config import load_config
    from spar.constraints.procedural import build_prompts as prompts
    from spar.train import train_dpo

    recipe = Path(__file__).resolve().parents[1] / "recipes" / "llama3-8b" / "spar-1gpu.yaml"
    s = load_config(recipe).train_actor.but(max_length=length, merge_lora=False, grad_accum=1, dtype="bf16",
                                            checkpoints=0)
    prompt = as_dicts(prompts(1, "heldout", seed=0, max_k=2)[0].messages)
    answer = ANSWER
    while len(tok(answer)["input_ids"]) < length:
        answer += ANSWER
    row = {"prompt": prompt, "chosen": [{"role": "assistant", "content": answer}],
           "rejected": [{"role": "assistant", "content": answer.replace("keeper", "sailor")}]}
    before = used_gb(device)
    with tempfile.TemporaryDirectory() as out, Peak(device) as mem:
        t0 = time.perf_counter()
        _, log = train_dpo("shape", [row], out, s, loaded=(model, tok), save=False)
        wall = time.perf_counter() - t0
    losses = [e["loss"] for e in log if "loss" in e]
    return {"max_length": length, "settings": {k: getattr(s, k) for k in ("lora_r", "lora_alpha", "gradient_checkpointing",
                                                                          "precompute_ref", "batch_size", "beta", "sft_weight")},
            "wall_s": round(wall, 1), "memory_before_gb": round(before, 2), "peak_memory_gb": round(mem.peak, 2), "loss": losses[-1] if losses else None}


def timed(backend, chats, s: Sampling) -> tuple[float, int, int]:
    before = (backend.usage.prompt_tokens, backend.usage.new_tokens)
    t0 = time.perf_counter()
    backend.generate(chats, s)
    return (time.perf_counter() - t0, backend.usage.prompt_tokens - before[0], backend.usage.new_tokens - before[1])


def decode_row(backend, chats, b: int, new_tokens: int) -> dict:
    """Prefill rate from a request for one new token; decode rate from the rest of a longer one."""
    pre_s, ptok, _ = timed(backend, chats[:b], Sampling(max_new_tokens=1))
    full_s, _, ntok = timed(backend, chats[:b], Sampling(max_new_tokens=new_tokens))
    steps_tokens = ntok - b  # the first token of each row comes from the prefill
    decode_s = max(full_s - pre_s, 1e-9)
    return {"batch": b, "prompt_tokens": ptok, "prefill_s": round(pre_s, 2), "prefill_tok_s": round(ptok / pre_s, 1),
            "new_tokens": ntok, "decode_s": round(decode_s, 2), "decode_tok_s": round(steps_tokens / decode_s, 2),
            "step_s": round(decode_s / max(1, new_tokens - 1), 3)}


MEMORY = {"cpu": "resident memory", "cuda": "GPU memory (allocated)"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", default="llama3-8b", help="a known shape (llama3-8b) or a model's config.json")
    ap.add_argument("--batches", default="1,8", help="comma-separated batch sizes for the decode rate")
    ap.add_argument("--new-tokens", type=int, default=16)
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda where there is one)")
    ap.add_argument("--train-length", type=int, default=0,
                    help="instead of generating, time one LoRA DPO step at this many tokens a sequence")
    args = ap.parse_args()
    from transformers import AutoTokenizer

    from spar.llm.embedded import embedded_model_path
    from spar.llm.hf import HFBackend, pick_device, pick_dtype

    device = pick_device(args.device)
    dtype = pick_dtype(None, device)
    config = shape_config(args.shape)
    need = weight_bytes(config, dtype) / 1e9 + 2
    free = available_gb(device)
    if free is not None and free < need:
        print(f"shape: skipped, {args.shape} needs ~{need:.0f} GB of {device} memory and {free:.0f} GB is available")
        print(json.dumps({"skipped": f"needs ~{need:.0f} GB, {free:.0f} GB available", "shape": args.shape}))
        return
    base = used_gb(device)
    t0 = time.perf_counter()
    model = random_model(config, dtype, device)
    build_s = time.perf_counter() - t0
    params = sum(p.numel() for p in model.parameters())
    weights_gb = sum(p.numel() * p.element_size() for p in model.parameters()) / 1e9
    tok = AutoTokenizer.from_pretrained(embedded_model_path())
    if args.train_length:
        r = measure_training(model, tok, args.train_length, device)
        Console(width=150).print(
            f"{args.shape}: {params / 1e9:.2f}B parameters ({weights_gb:.1f} GB of {str(dtype).split('.')[-1]} weights), "
            f"one LoRA DPO step at {r['max_length']} tokens a sequence (a pair: 2 sequences) through spar.train: "
            f"{r['wall_s']} s with the reference pass, peak {MEMORY[device[:4]]} {r['peak_memory_gb']} GB "
            f"({r['memory_before_gb']} GB before it)")
        print(json.dumps({"machine": describe(), "device": device, "shape": args.shape, "parameters": params, "dtype": str(dtype),
                          "weights_gb": round(weights_gb, 2), "build_s": round(build_s, 1), "train": r}))
        return
    batches = [int(b) for b in args.batches.split(",")]
    backend = HFBackend(args.shape, BackendOptions(batch_size=max(batches), device=device), loaded=(model, tok))
    chats = [as_dicts(p.messages) for p in build_prompts(max(batches), "heldout", seed=0, max_k=2)]
    backend.generate(chats[:1], Sampling(max_new_tokens=2))  # warm-up
    with Peak(device) as mem:
        rows = [decode_row(backend, chats, b, args.new_tokens) for b in batches]
    table = Table(title=f"{args.shape}: {params / 1e9:.2f}B parameters, random {str(dtype).split('.')[-1]} weights "
                        f"({weights_gb:.1f} GB), spar's hf backend")
    for c in ("batch", "prompt tokens", "prefill s", "prefill tok/s", "new tokens", "decode s", "decode tok/s", "s a step"):
        table.add_column(c, justify="right")
    for r in rows:
        table.add_row(*(str(r[k]) for k in ("batch", "prompt_tokens", "prefill_s", "prefill_tok_s", "new_tokens",
                                             "decode_s", "decode_tok_s", "step_s")))
    console = Console(width=150)
    console.print(table)
    console.print(f"built in {build_s:.0f} s; peak {MEMORY[device[:4]]} while generating {mem.peak:.1f} GB "
                  f"(before the model: {base:.1f} GB)")
    print(json.dumps({"machine": describe(), "device": device, "shape": args.shape, "parameters": params,
                      "dtype": str(dtype), "weights_gb": round(weights_gb, 2), "peak_memory_gb": round(mem.peak, 2),
                      "build_s": round(build_s, 1),
                      "kv_bytes_per_token": backend.kv_bytes_per_token(), "rows": rows}))


if __name__ == "__main__":
    main()
