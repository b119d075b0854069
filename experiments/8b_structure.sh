#!/usr/bin/env bash
# The 8B recipe's structure on this CPU: recipes/llama3-8b/spar.yaml with the embedded model and
# small counts, generation on a local Ray cluster (2 replicas) and every training stage under
# `accelerate launch` (2 processes, DDP over gloo). The checkers judge (the 135M model's own votes
# carry no verdict) and the guard is off, so that this small run has a pair to train on. ~4 min.
set -euo pipefail
cd "$(dirname "$0")/.."
S=${SPAR:-.venv/bin/spar}
RUN=${RUN:-runs/8b-structure}
OUT=${OUT:-results/smollm2-135m/8b-structure}
$S iterate --config recipes/llama3-8b/spar.yaml --run-dir "$RUN" --iterations 1 \
  --set model=embedded --set dtype=fp32 --set batch_size=8 \
  --set prompts.count=8 --set prompts.heldout=4 --set sample.k=3 --set sample.max_new_tokens=48 \
  --set judge.mode=verifier --set judge.votes=2 --set judge.max_new_tokens=24 \
  --set bootstrap.refiner=offline --set bootstrap.prompts=4 --set bootstrap.k=2 --set bootstrap.train.max_length=768 \
  --set search.budget=9 --set search.guard=false --set search.max_new_tokens=48 \
  --set train_actor.max_length=768 --set train_refiner.max_length=1024 \
  --set train_actor.grad_accum=1 --set train_refiner.grad_accum=1 --set eval.max_new_tokens=24 \
  --set launcher.num_processes=2 --set launcher.config_file=null \
  --set executor.kind=ray --set executor.replicas=2 --set executor.gpus_per_replica=0 --set executor.cpus_per_replica=1
mkdir -p "$OUT"
cp "$RUN/config.yaml" "$RUN/manifest.json" "$OUT/"
for f in stats.json dpo.jsonl rft.jsonl trees.jsonl; do cp "$RUN/iter_1/$f" "$OUT/"; done
cp "$RUN/iter_1/actor/train_log.json" "$OUT/actor_train_log.json"
cp "$RUN/iter_0/refiner/train_log.json" "$OUT/bootstrap_refiner_train_log.json"
echo "wrote $OUT"
