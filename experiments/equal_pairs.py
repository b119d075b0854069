"""SPaR against Self-Rewarding at an equal number of pairs. SPaR's one-iteration run kept as many
refined pairs as its trees solved; the same number of Self-Rewarding's pairs (drawn at random) train
the same starting model with the same DPO settings (the recipe's train_actor section), then the same
evaluation: IFEval (eval.ifeval_data, all 541) and the held-out prompts, greedy. The result is a run
folder that `spar compare` reads (iteration 0 copied from the starting model's scores). Resumes: a
trained model and finished answers are kept.

    python experiments/equal_pairs.py [--ifeval PATH] [--out results/smollm2-135m/methods/self_rewarding-Npairs]
"""

from __future__ import annotations

import argparse
import random
import shutil
from pathlib import Path

from spar import stages as S
from spar.config import load_config
from spar.io import write_text
from spar.llm import BackendOptions, load_backend

M = Path("results/smollm2-135m/methods")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spar", type=Path, default=M / "spar", help="SPaR run: its iter_1/dpo.jsonl sets the count")
    ap.add_argument("--other", type=Path, default=M / "self_rewarding", help="the run whose pairs are subsampled")
    ap.add_argument("--start", type=Path, default=M / "spar-iter0", help="the starting model's iteration-0 scores")
    ap.add_argument("--recipe", default="recipes/smollm2-135m/full.yaml")
    ap.add_argument("--ifeval", default="../shared/data/ifeval/input_data.jsonl")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--work", type=Path, default=Path("runs/equal-pairs"), help="where the trained model goes")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    n = len((a.spar / "iter_1" / "dpo.jsonl").read_text().splitlines())
    rows = (a.other / "iter_1" / "dpo.jsonl").read_text().splitlines()
    if n > len(rows):
        raise SystemExit(f"{a.other}: {len(rows)} pairs, fewer than SPaR's {n}")
    out = a.out or M / f"{a.other.name}-{n}pairs"
    keep = sorted(random.Random(a.seed).sample(range(len(rows)), n))
    (out / "iter_1" / "eval").mkdir(parents=True, exist_ok=True)
    write_text(out / "iter_1" / "dpo.jsonl", "".join(rows[i] + "\n" for i in keep))
    if not (out / "iter_0").exists():
        shutil.copytree(a.start / "iter_0", out / "iter_0")
    shutil.copy(a.other / "config.yaml", out / "config.yaml")
    cfg = load_config(a.recipe, {"eval.ifeval_data": a.ifeval})
    print(f"{n} of {len(rows)} pairs of {a.other} (seed {a.seed}): lines {[i + 1 for i in keep]}")
    model = a.work / "actor" / "model"
    if not model.is_dir():
        S.run_train("dpo", cfg.model, out / "iter_1" / "dpo.jsonl", a.work / "actor", cfg.train_actor, cfg.seed)
    backend = load_backend(str(model), BackendOptions(batch_size=cfg.batch_size))
    for name, src, limit in S.eval_jobs(cfg.eval, a.spar / "heldout.jsonl"):
        r = S.run_eval(backend, cfg.eval, name, src, limit, out / "iter_1" / "eval",
                       {"model": str(model), "iteration": 1, "method": f"{a.other.name}, {n} pairs"})
        print(f"{name}: prompt strict {r['prompt_strict']}")


if __name__ == "__main__":
    main()
