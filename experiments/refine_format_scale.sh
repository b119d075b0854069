#!/usr/bin/env bash
# Edit operations against full rewrites at the shipped refiner's scale (issue 27): the bootstrap data
# of experiments/refiner_bootstrap.sh (the same 512 answers, up to 4 breaks per answer and 4 extra
# constraints, whole fixes, the same three kinds and 20% of the prompts held out) with its targets
# written as edit operations (`--refine-format edits`), the same LoRA SFT as the shipped rewrite
# refiner (r 16, alpha 32, lr 2e-4, 1 epoch, batch 2, 1152 tokens, bf16 autocast), then one greedy
# repair of the same 140 held-out breaks and of the same structural breaks as the rewrite refiner,
# with `--refine-format edits`. Run refiner_bootstrap.sh first (same RUN and OUT: it holds the answers
# and the structural held-out file); every step resumes; about 1.5 hours on a 2-core CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
S=${SPAR:-.venv/bin/spar}
PQ=results/smollm2-135m/pair-quality
OUT=${OUT:-results/smollm2-135m/refiner-bootstrap-structural}
RUN=${RUN:-runs/refiner-bootstrap}
[ -s "$RUN/answers.jsonl" ] || { echo "no $RUN/answers.jsonl: run experiments/refiner_bootstrap.sh first" >&2; exit 2; }
$S bootstrap refiner -i "$RUN/answers.jsonl" -o "$OUT/train-edits.jsonl" --eval-out "$RUN/heldout-edits.jsonl" \
  --heldout-kinds punctuation:no_comma,detectable_format:title,keywords:forbidden_words --per-answer 4 --extra 4 \
  --refine-format edits
cmp "$RUN/heldout-edits.jsonl" "$RUN/heldout-new.jsonl"  # the same breaks held out as for the rewrite refiner
[ -d "$RUN/refiner-edits/model" ] || $S train sft --data "$OUT/train-edits.jsonl" --out "$RUN/refiner-edits" \
  --set learning_rate=2e-4 --set epochs=1 --set max_length=1152 --set lora=true --set lora_r=16 \
  --set lora_alpha=32 --set dtype=bf16
cp "$RUN/refiner-edits/train_log.json" "$OUT/train-log-edits.json"
$S bootstrap eval --model "$RUN/refiner-edits/model" -i "$PQ/bootstrap-heldout.jsonl" -o "$OUT/heldout-repairs-edits.jsonl" \
  --batch-size 32 --min-similarity 0.5 --refine-format edits
$S bootstrap eval --model "$RUN/refiner-edits/model" -i "$OUT/heldout-structural.jsonl" -o "$OUT/structural-repairs-edits.jsonl" \
  --batch-size 32 --min-similarity 0.5 --refine-format edits
