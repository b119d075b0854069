#!/usr/bin/env bash
# A preference stage for the bootstrapped refiner (issue 27, "teach the edit, not the copy"): DPO of
# the SFT refiner of experiments/refiner_bootstrap.sh on refiner preference pairs from the same
# bootstrap data (`spar bootstrap refiner --pairs-out`: chosen = the restoring edit, rejected = the
# answer handed back unchanged), a LoRA adapter stacked on the SFT adapter (r 16, alpha 32, lr 5e-5,
# beta 0.1, the SFT term on chosen at 0.1, one epoch over $PAIRS pairs drawn at random, seed 27,
# 1152 tokens, bf16 autocast); then the same two repair measurements as the SFT refiner (the 140
# held-out breaks of the pair-quality study, and the structural breaks of the held-out prompts).
# Run refiner_bootstrap.sh first (with the same RUN and OUT); every step resumes.
set -euo pipefail
cd "$(dirname "$0")/.."
S=${SPAR:-.venv/bin/spar}
PQ=results/smollm2-135m/pair-quality
OUT=${OUT:-results/smollm2-135m/refiner-bootstrap-structural}
RUN=${RUN:-runs/refiner-bootstrap}
PAIRS=${PAIRS:-128}
# REJECTED=copy (the default; files *-$PAIRS) or mixed / echo (files *-$REJECTED-$PAIRS): what the
# rejected reply is (spar bootstrap refiner --pairs-rejected)
REJECTED=${REJECTED:-copy}
TAG=$([ "$REJECTED" = copy ] && echo "$PAIRS" || echo "$REJECTED-$PAIRS")
[ -d "$RUN/refiner/model" ] || { echo "no SFT refiner in $RUN/refiner/model: run experiments/refiner_bootstrap.sh first" >&2; exit 2; }
$S bootstrap refiner -i "$RUN/answers.jsonl" -o "$RUN/train-again.jsonl" --pairs-out "$RUN/pairs-$REJECTED.jsonl" \
  --pairs-rejected "$REJECTED" \
  --heldout-kinds punctuation:no_comma,detectable_format:title,keywords:forbidden_words --per-answer 4 --extra 4
cmp "$RUN/train-again.jsonl" "$OUT/train.jsonl"  # the pairs are built from the very examples the SFT saw
python3 -c "import random, sys; rows = open(sys.argv[1]).readlines(); random.Random(27).shuffle(rows); sys.stdout.writelines(rows[:int(sys.argv[2])])" \
  "$RUN/pairs-$REJECTED.jsonl" "$PAIRS" > "$OUT/preference-pairs-$TAG.jsonl"
[ -d "$RUN/refiner-dpo-$TAG/model" ] || $S train dpo --model "$RUN/refiner/model" --data "$OUT/preference-pairs-$TAG.jsonl" \
  --out "$RUN/refiner-dpo-$TAG" --lora --set learning_rate=5e-5 --set epochs=1 --set max_length=1152 --set lora_r=16 \
  --set lora_alpha=32 --set dtype=bf16 --set beta=0.1 --set sft_weight=0.1 --seed 27
cp "$RUN/refiner-dpo-$TAG/train_log.json" "$OUT/train-log-dpo-$TAG.json"
$S bootstrap eval --model "$RUN/refiner-dpo-$TAG/model" -i "$PQ/bootstrap-heldout.jsonl" \
  -o "$OUT/heldout-repairs-dpo-$TAG.jsonl" --batch-size 32 --min-similarity 0.5
$S bootstrap eval --model "$RUN/refiner-dpo-$TAG/model" -i "$OUT/heldout-structural.jsonl" \
  -o "$OUT/structural-repairs-dpo-$TAG.jsonl" --batch-size 32 --min-similarity 0.5
