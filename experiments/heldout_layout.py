"""How much of a held-out score is the batch layout. The same weights, the same 50 held-out prompts
and greedy decoding gave prompt strict 20.0 in the learning-rate sweep's base evaluation (batches of
16) and 18.0 in the methods' iteration 0 (batches of 32), with 25 of 50 answers different. This
evaluates the embedded model at both batch sizes, in bf16 (the default on a CPU with native bf16)
and in fp32, and counts the answers that differ between layouts and from the two stored runs.
Resumes (finished answers are kept).

    python experiments/heldout_layout.py [--out results/smollm2-135m/heldout-layout]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from spar.io import read_jsonl, write_text
from spar.llm import BackendOptions, load_backend
from spar.settings import EvalSettings
from spar.stages import run_eval
from spar.types import Completion

R = Path("results/smollm2-135m")
STORED = {"lr-sweep base (batch 16)": R / "lr-sweep/base/heldout.responses.jsonl",
          "methods iteration 0 (batch 32)": R / "methods/spar-iter0/iter_0/eval/heldout.responses.jsonl"}


def answers(path: Path) -> dict[str, str]:
    return {r.id: r.completions[0] for r in read_jsonl(path, Completion)}


def differ(a: dict[str, str], b: dict[str, str]) -> int:
    return sum(a[i] != b[i] for i in a if i in b)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--heldout", type=Path, default=R / "lr-sweep/heldout.jsonl")
    ap.add_argument("--out", type=Path, default=R / "heldout-layout")
    ap.add_argument("--max-new-tokens", type=int, default=256)
    a = ap.parse_args()
    runs: dict[str, dict] = {}
    for dtype in ("bf16", "fp32"):
        for batch in (16, 32):
            name = f"{dtype}-batch{batch}"
            d = a.out / name
            if (d / "heldout.json").exists():
                score = json.loads((d / "heldout.json").read_text())
            else:
                backend = load_backend("embedded", BackendOptions(batch_size=batch, dtype=dtype))
                score = run_eval(backend, EvalSettings(max_new_tokens=a.max_new_tokens), "heldout", a.heldout, None, d,
                                 {"model": "embedded", "dtype": dtype, "batch_size": batch})
            runs[name] = {"prompt_strict": score["prompt_strict"], "inst_strict": score["inst_strict"],
                          "answers": answers(d / "heldout.responses.jsonl")}
    stored = {k: answers(p) for k, p in STORED.items() if p.exists()}
    names = list(runs)
    table = {"runs": {n: {k: v for k, v in r.items() if k != "answers"} for n, r in runs.items()},
             "differ_between_runs": {f"{x} vs {y}": differ(runs[x]["answers"], runs[y]["answers"])
                                     for i, x in enumerate(names) for y in names[i + 1:]},
             "differ_from_stored": {f"{n} vs {k}": differ(runs[n]["answers"], s) for n in names for k, s in stored.items()},
             "stored_differ": differ(*stored.values()) if len(stored) == 2 else None, "prompts": len(runs[names[0]]["answers"])}
    write_text(a.out / "summary.json", json.dumps(table, indent=1) + "\n")
    print(f"{'run':<14} {'P(S)':>6} {'I(S)':>6}")
    for n, r in table["runs"].items():
        print(f"{n:<14} {r['prompt_strict']:>6} {r['inst_strict']:>6}")
    for k, v in {**table["differ_between_runs"], **table["differ_from_stored"]}.items():
        print(f"{v:>3} of {table['prompts']} answers differ: {k}")
    print(json.dumps({k: v for k, v in table.items() if k != "runs"}))


if __name__ == "__main__":
    main()
