#!/usr/bin/env bash
# Does a refiner repair more when its checklist says what the answer has ("found 2 paragraphs
# separated by ***; 3 asked")? (issue 27; spar.constraints.findings). The shipped refiner's recipe
# (experiments/refiner_bootstrap.sh: the same 512 answers, breaks, held-out kinds and prompts, LoRA
# r 16, lr 2e-4, 1 epoch, 1152 tokens, bf16 autocast) with `--findings` in its data, then:
#   - the 140 held-out breaks of the pair-quality study, and this build's structural breaks, repaired
#     with findings in the prompt (`spar bootstrap eval --findings`: the same files, their checklists
#     rewritten as read);
#   - the shipped refiner on the same two files with findings in the prompt (was it the prompt or
#     the training?); its figures without findings are in results/README.md.
# Needs the answers of experiments/refiner_bootstrap.sh ($RUN/answers.jsonl). Writes into $OUT
# (default results/smollm2-135m/refiner-findings); every step resumes; about 2 h 30 min on a 2-core CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
S=${SPAR:-.venv/bin/spar}
PQ=results/smollm2-135m/pair-quality
BASE=results/smollm2-135m/refiner-bootstrap-structural
OUT=${OUT:-results/smollm2-135m/refiner-findings}
RUN=${RUN:-runs/refiner-bootstrap}
mkdir -p "$OUT" "$RUN"
[ -s "$RUN/answers.jsonl" ] || { echo "no $RUN/answers.jsonl: run experiments/refiner_bootstrap.sh first" >&2; exit 2; }
$S bootstrap refiner -i "$RUN/answers.jsonl" -o "$OUT/train.jsonl" --eval-out "$RUN/heldout-findings.jsonl" \
  --heldout-kinds punctuation:no_comma,detectable_format:title,keywords:forbidden_words --per-answer 4 --extra 4 \
  --findings
[ -d "$RUN/refiner-findings/model" ] || $S train sft --data "$OUT/train.jsonl" --out "$RUN/refiner-findings" \
  --set learning_rate=2e-4 --set epochs=1 --set max_length=1152 --set lora=true --set lora_r=16 \
  --set lora_alpha=32 --set dtype=bf16
cp "$RUN/refiner-findings/train_log.json" "$OUT/train-log.json"
for who in findings shipped; do
  model=$([ $who = findings ] && echo "$RUN/refiner-findings/model" || echo embedded-refiner)
  $S bootstrap eval --model "$model" -i "$PQ/bootstrap-heldout.jsonl" -o "$OUT/heldout-repairs-$who.jsonl" \
    --batch-size 32 --min-similarity 0.5 --findings
  $S bootstrap eval --model "$model" -i "$BASE/heldout-structural.jsonl" -o "$OUT/structural-repairs-$who.jsonl" \
    --batch-size 32 --min-similarity 0.5 --findings
done
true
