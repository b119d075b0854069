#!/bin/bash
# LLMBar at 1, 3 and 5 votes (one sampling), the embedded model as the judge, the first 10 pairs of each subset
cd /work/main
export OMP_NUM_THREADS=1
nice -n 10 .venv/bin/spar eval llmbar --model embedded --data ../shared/data/llmbar/LLMBar --votes 1,3,5 --limit 10 \
  -o results/smollm2-135m/llmbar-votes/embedded.json > runs/llmbar.log 2>&1
echo "=== llmbar rc $? $(date)" >> runs/llmbar.log
