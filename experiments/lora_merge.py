"""Does a LoRA update survive being merged into bf16 weights? `recipes/llama3-8b/spar-1gpu.yaml`
trains LoRA on bf16 weights (the GPU default) and merges the adapter so that the next iteration
serves a plain model; a merged weight is rounded to bf16, and an update smaller than half a bf16
step of the weight it lands on rounds away entirely. This trains the recipe's actor settings (LoRA r
16, its learning rate) on the embedded model loaded in bf16, then compares, on the pairs it trained
on, the DPO margin (log-prob of chosen minus rejected, summed over the answer) of: the base, the
base with the adapter on (what training saw), the merge in bf16 (what `merge_lora` saves), the merge
in fp16 (vLLM's "auto" dtype for an fp32 checkpoint) and the merge in fp32. Also the share of the
weight update each rounding keeps. One run per learning rate.

    python experiments/lora_merge.py [--lr 5e-6,1e-4] [--out results/smollm2-135m/lora-merge]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from spar.config import load_config
from spar.io import write_text

PAIRS = Path("results/smollm2-135m/methods/self_rewarding/iter_1/dpo.jsonl")


@torch.no_grad()
def margins(model, tok, rows) -> list[float]:
    out = []
    for r in rows:
        prompt = tok.apply_chat_template(r["prompt"], add_generation_prompt=True, tokenize=True)
        prompt = list(prompt["input_ids"] if hasattr(prompt, "keys") else prompt)
        scores = []
        for side in ("chosen", "rejected"):
            full = tok.apply_chat_template(r["prompt"] + r[side], tokenize=True)
            full = list(full["input_ids"] if hasattr(full, "keys") else full)
            ids = torch.tensor([full])
            logp = torch.log_softmax(model(ids).logits[0, :-1].float(), -1)
            target = ids[0, 1:]
            picked = logp.gather(-1, target[:, None])[:, 0]
            scores.append(picked[len(prompt) - 1:].sum().item())
        out.append(scores[0] - scores[1])
    return out


def run(lr: float, rows: list[dict], recipe: str) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from spar.llm.embedded import embedded_model_path
    from spar.train import lora_updates, merge_rounding, train_dpo

    path = str(embedded_model_path())
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16)
    s = load_config(recipe).train_actor.but(learning_rate=lr, grad_accum=1, epochs=2, max_length=1024,
                                            merge_lora=False, dtype="bf16", checkpoints=0)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        _, log = train_dpo(path, rows, out, s, save=False, loaded=(model, tok))
    train_s = time.perf_counter() - t0
    model.eval()
    layers, updates = zip(*lora_updates(model))
    res = {"learning_rate": lr, "steps": max((e.get("step", 0) for e in log), default=0), "train_s": round(train_s, 1),
           "settings": {k: getattr(s, k) for k in ("lora_r", "lora_alpha", "epochs", "batch_size", "grad_accum",
                                                   "warmup_ratio", "beta", "sft_weight")},
           "update_norm": round(sum(d.pow(2).sum().item() for d in updates) ** 0.5, 5),
           "rounding": {"bf16": merge_rounding(model, torch.bfloat16), "fp16": merge_rounding(model, torch.float16)}}
    m = {"adapter_bf16": margins(model, tok, rows)}  # what training saw
    for x in layers:
        x.enable_adapters(False)
    originals = [x.base_layer.weight.detach().clone() for x in layers]
    # Each precision against its own base: the forward's rounding differs between precisions by more
    # than a small update moves the margin, so a gain is a difference within one precision.
    for dtype, name in ((torch.bfloat16, "bf16"), (torch.float32, "fp32"), (torch.float16, "fp16")):
        model.to(dtype)
        for x, w in zip(layers, originals):
            x.base_layer.weight.data = w.to(dtype)
        m[f"base_{name}"] = margins(model, tok, rows)
        for x, w, d in zip(layers, originals, updates):
            x.base_layer.weight.data = (w.float() + d).to(dtype)
        m[f"merged_{name}"] = margins(model, tok, rows)
    mean = {k: sum(v) / len(v) for k, v in m.items()}
    gain = {"adapter_bf16": mean["adapter_bf16"] - mean["base_bf16"],
            **{f"merged_{p}": mean[f"merged_{p}"] - mean[f"base_{p}"] for p in ("bf16", "fp32", "fp16")}}
    res["mean_margin"] = {k: round(v, 4) for k, v in mean.items()}
    res["gain_over_base"] = {k: round(v, 4) for k, v in gain.items()}
    # The fp32 merge is the update itself (no rounding of weights): the reference for the others.
    res["gain_kept"] = {k: (round(v / gain["merged_fp32"], 3) if gain["merged_fp32"] else None) for k, v in gain.items()}
    res["per_pair_margins"] = m
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lr", default="5e-6,1e-4", help="comma-separated LoRA learning rates (the recipe's is 5e-6)")
    ap.add_argument("--pairs", type=Path, default=PAIRS)
    ap.add_argument("--recipe", default="recipes/llama3-8b/spar-1gpu.yaml")
    ap.add_argument("--out", type=Path, default=Path("results/smollm2-135m/lora-merge"))
    a = ap.parse_args()
    rows = [json.loads(line) for line in a.pairs.read_text().splitlines() if line.strip()]
    out = {"pairs": str(a.pairs), "n_pairs": len(rows), "recipe": a.recipe, "runs": []}
    for lr in (float(x) for x in a.lr.split(",")):
        r = run(lr, rows, a.recipe)
        out["runs"].append(r)
        print(f"lr {lr:g}: {r['steps']} steps, update norm {r['update_norm']}, bf16 keeps "
              f"{1 - r['rounding']['bf16']['share_rounded_away']:.1%} of entries "
              f"(relative error {r['rounding']['bf16']['relative_error']}); margin gain kept: {r['gain_kept']}", flush=True)
    from spar.machine import describe

    out["machine"] = describe()
    a.out.mkdir(parents=True, exist_ok=True)
    write_text(a.out / "result.json", json.dumps(out, indent=1))
    print(json.dumps({k: v for k, v in out.items() if k != "runs"} |
                     {"runs": [{k: v for k, v in r.items() if k != "per_pair_margins"} for r in out["runs"]]}))


if __name__ == "__main__":
    main()
