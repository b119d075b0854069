#!/usr/bin/env bash
# The figures that are slow on a 2-core CPU, on one CUDA GPU (hf backend, bf16). Each step resumes
# where it stopped; run them in order:  experiments/gpu.sh spar|bench|search|refine  (or all)
#   spar    SPaR, recipes/smollm2-135m/full.yaml, one iteration, IFEval (541) before and after on this GPU
#   bench   bench/peers.py (the hf engine) and bench/judge.py: what five votes cost in units of one
#   search  IFEval with and without BFS at inference time: the embedded model, then the trained
#           actor with the trained refiner as its judge
#   refine  refinement accuracy on the iteration's failed answers: the embedded refiner vs the trained one
# Writes under $OUT (default results/smollm2-135m/gpu); the run directory is $RUN (default runs/gpu-full).
set -euo pipefail
cd "$(dirname "$0")/.."
S=${SPAR:-spar}
OUT=${OUT:-results/smollm2-135m/gpu}
RUN=${RUN:-runs/gpu-full}
IFEVAL=${IFEVAL:-../shared/data/ifeval/input_data.jsonl}
mkdir -p "$OUT"
step=${1:-all}

if [[ $step == spar || $step == all ]]; then
  $S iterate --config recipes/smollm2-135m/full.yaml --iterations 1 --run-dir "$RUN" \
    --set eval.ifeval_data="$IFEVAL" --set eval.before=true
fi
if [[ $step == bench || $step == all ]]; then
  python bench/peers.py --engines hf | tee "$OUT/bench-peers.txt"
  python bench/judge.py | tee "$OUT/bench-judge.txt"
fi
if [[ $step == search || $step == all ]]; then
  $S eval ifeval --model embedded --data "$IFEVAL" --search bfs --max-new-tokens 256 --batch-size 64 \
    -o "$OUT/ifeval-embedded-bfs.json"
  $S eval ifeval --model "$RUN/iter_1/actor/model" --refiner "$RUN/iter_1/refiner/model" --data "$IFEVAL" --search bfs \
    --max-new-tokens 256 --batch-size 64 -o "$OUT/ifeval-actor1-bfs.json"
fi
if [[ $step == refine || $step == all ]]; then
  $S eval refine --model embedded --failed "$RUN/iter_1/negatives.jsonl" --judge-mode verifier \
    --max-new-tokens 256 -o "$OUT/refine-embedded.json"
  $S eval refine --model "$RUN/iter_1/refiner/model" --failed "$RUN/iter_1/negatives.jsonl" --judge-mode verifier \
    --max-new-tokens 256 -o "$OUT/refine-refiner1.json"
fi
