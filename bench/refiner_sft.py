"""Refiner SFT throughput on the embedded model: the same bootstrap examples with rewrite targets
(the whole answer) and with edit targets (operations on it), full fine-tuning and LoRA r16, so that
the size of a bootstrap is a measured choice. Each configuration runs in its own process.

Reads the committed bootstrap rows (results/smollm2-135m/pair-quality/bootstrap-train.jsonl and
results/smollm2-135m/refine-format/bootstrap-train-edits.jsonl: the same 244 examples).
Prints a table and, last, one JSON line.   python bench/refiner_sft.py [--steps 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1] / "results" / "smollm2-135m"
ROWS = {"rewrite": ROOT / "pair-quality" / "bootstrap-train.jsonl",
        "edits": ROOT / "refine-format" / "bootstrap-train-edits.jsonl"}
CONFIGS = {"rewrite, full": ("rewrite", {}), "edits, full": ("edits", {}),
           "rewrite, lora r16": ("rewrite", {"lora": True, "lora_r": 16}),
           "edits, lora r16": ("edits", {"lora": True, "lora_r": 16})}
BATCH = 2


def one(name: str, steps: int) -> dict:
    import tempfile

    from transformers import TrainerCallback

    import spar.train as T
    from spar.io import iter_json_lines
    from spar.llm.embedded import embedded_model_path

    fmt, extra = CONFIGS[name]
    rows = [r for _, r in iter_json_lines(ROWS[fmt])][: BATCH * steps]
    times: list[float] = []

    class StepTimer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            self.t = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            times.append(time.perf_counter() - self.t)

    T._progress_callback = lambda label: StepTimer()
    s = T.sft_defaults().but(max_steps=steps, batch_size=BATCH, grad_accum=1, max_length=768, warmup_ratio=0.0,
                             checkpoints=0, **extra)
    with tempfile.TemporaryDirectory() as d:
        T.train_sft(str(embedded_model_path()), rows, d, s)
    step = statistics.median(times[1:] or times)  # the first step pays for warm-up
    return {"step_s": round(step, 2), "examples_per_s": round(BATCH / step, 3), "step_times": [round(x, 2) for x in times]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.steps)))
        return
    results = {}
    for name in CONFIGS:
        out = subprocess.run([sys.executable, __file__, "--one", name, "--steps", str(args.steps)], capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"{name} failed:\n{out.stderr[-2000:]}")
        results[name] = json.loads(out.stdout.strip().splitlines()[-1])
    t = Table(title=f"refiner SFT on the embedded model, batch {BATCH}, 768 tokens at most, median of steps 2-{args.steps}")
    for c in ("configuration", "s/step", "examples/s", "1,000 examples x 2 epochs, min"):
        t.add_column(c, justify="right")
    for name, r in results.items():
        t.add_row(name, f"{r['step_s']:.2f}", f"{r['examples_per_s']:.3f}", f"{2000 / r['examples_per_s'] / 60:.0f}")
    Console().print(t)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
