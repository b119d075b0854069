#!/bin/bash
# AutoIF, one iteration, qwen-coder as the teacher with split requests (code f004dbe to verify, 4c0cbc9 from back_translate on), one thread, below SPaR's priority
cd /work/main
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONPATH=/work/spar-4c0cbc9/src
nice -n 15 .venv/bin/python -m spar iterate --config recipes/smollm2-135m/autoif.yaml --iterations 1 --run-dir runs/cmp-autoif3 \
  --set autoif.teacher=qwen-coder --set autoif.requests=split --set autoif.function_samples=6 --set autoif.case_samples=5 \
  --set autoif.max_instructions=24 --set autoif.max_new_tokens=256 \
  --set eval.ifeval_data=../shared/data/ifeval/input_data.jsonl --set eval.before=false >> runs/autoif3.log 2>&1
echo "=== autoif3 rc $? $(date)" >> runs/autoif3.log
