"""DPO step time on the embedded model: full vs LoRA, with and without precomputed reference
log-probs (each configuration in its own process, so peak memory is its own).

Prints a table and, last, one JSON line.   python bench/train.py [--steps 8]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

from rich.console import Console
from rich.table import Table

CONFIGS = {
    "full": {},
    "full + precomputed ref": {"precompute_ref": True},
    "lora r16": {"lora": True, "lora_r": 16, "learning_rate": 1e-5},
    "lora r16 + precomputed ref": {"lora": True, "lora_r": 16, "learning_rate": 1e-5, "precompute_ref": True},
}

ANSWER = ("Autumn light falls softly over the quiet hills while the river carries red and golden leaves "
          "toward the old stone bridge where children wait to watch them pass. ")


def rows(n: int) -> list[dict]:
    out = []
    for i in range(n):
        chosen = (ANSWER * 4)[: 600 + i]  # ~130 tokens, like the measurements in the issue
        out.append({"prompt": [{"role": "user", "content": f"Describe an autumn walk (variant {i}) without commas."}],
                    "chosen": [{"role": "assistant", "content": chosen}],
                    "rejected": [{"role": "assistant", "content": chosen.replace(" while", ", while").replace(" where", ", where")}]})
    return out


def one(name: str, steps: int) -> dict:
    import tempfile

    from transformers import TrainerCallback

    import spar.train as T
    from spar.llm.embedded import embedded_model_path

    times: list[float] = []

    class StepTimer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            self.t = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            times.append(time.perf_counter() - self.t)

    orig = T._progress_callback
    T._progress_callback = lambda label: StepTimer()
    s = T.TrainSettings(max_steps=steps, batch_size=2, max_length=512, warmup_ratio=0.0, checkpoints=0, **CONFIGS[name])
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        T.train_dpo(str(embedded_model_path()), rows(2 * steps), d, s)
    total = time.perf_counter() - t0
    T._progress_callback = orig
    steady = times[1:] or times  # the first step pays for warm-up
    # the median: single steps on this shared 2-core machine vary by +-30%
    return {"step_s": round(statistics.median(steady), 2), "step_times": [round(x, 2) for x in times],
            "total_s": round(total, 1), "steps": len(times),
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=8)
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
    t = Table(title=f"DPO on the embedded model, batch 2, ~130-token answers, median of steps 2-{args.steps}")
    for c in ("configuration", "s/step", "vs full", "whole run s", "peak RSS GB"):
        t.add_column(c, justify="right")
    base = results["full"]["step_s"]
    for name, r in results.items():
        t.add_row(name, f"{r['step_s']:.2f}", f"{r['step_s'] / base:.2f}x", f"{r['total_s']:.1f}", f"{r['peak_rss_gb']:.2f}")
    Console().print(t)
    results["precompute_ratio_full"] = round(results["full + precomputed ref"]["step_s"] / base, 2)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
