#!/bin/bash
# SPaR full.yaml, one iteration (code e819594, pinned), eval.before=false: the starting model's scores are results/smollm2-135m/methods/spar-iter0
cd /work/main
export OMP_NUM_THREADS=2 MKL_NUM_THREADS=2
PYTHONPATH=/work/spar-e819594/src .venv/bin/python -m spar iterate --config recipes/smollm2-135m/full.yaml --iterations 1 --run-dir runs/full2 --set eval.before=false \
  --set eval.ifeval_data=../shared/data/ifeval/input_data.jsonl >> runs/full2.log 2>&1
echo "=== full rc $? $(date)" >> runs/full2.log
