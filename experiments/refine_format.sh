#!/usr/bin/env bash
# The refiner's reply as edit operations against the whole rewritten answer (issue 27): the same
# bootstrap data as results/smollm2-135m/pair-quality (the same 256 answers, three kinds and 20% of
# the prompts held out, seed 0), its targets written as edits (spar bootstrap refiner
# --refine-format edits), the same SFT (lr 2e-5, 2 epochs, batch 2, 768 tokens), then one greedy
# repair of each of the same 140 held-out breaks (spar bootstrap eval --refine-format edits; guard
# at 0.5, as the rewrite refiner was measured). With REWRITE=1 the rewrite refiner is trained and
# measured again beside it on this machine. Writes into $OUT (default results/smollm2-135m/refine-format);
# about 45 minutes per format on a 2-core CPU; every step resumes.
set -euo pipefail
cd "$(dirname "$0")/.."
S=${SPAR:-.venv/bin/spar}
PQ=results/smollm2-135m/pair-quality
OUT=${OUT:-results/smollm2-135m/refine-format}
RUN=${RUN:-runs/refine-format}
mkdir -p "$OUT" "$RUN"
FORMATS=(edits)
[ "${REWRITE:-0}" = 1 ] && FORMATS+=(rewrite)
for f in "${FORMATS[@]}"; do
  $S bootstrap refiner -i "$PQ/samples.jsonl" -o "$OUT/bootstrap-train-$f.jsonl" --eval-out "$OUT/bootstrap-heldout-$f.jsonl" \
    --heldout-kinds punctuation:no_comma,detectable_format:title,keywords:forbidden_words --refine-format "$f"
  cmp "$OUT/bootstrap-heldout-$f.jsonl" "$PQ/bootstrap-heldout.jsonl"  # the same held-out breaks as the rewrite run
  [ -d "$RUN/refiner-$f/model" ] || $S train sft --data "$OUT/bootstrap-train-$f.jsonl" --out "$RUN/refiner-$f" \
    --set learning_rate=2e-5 --set epochs=2 --set max_length=768
  cp "$RUN/refiner-$f/train_log.json" "$OUT/train-log-$f.json"
  $S bootstrap eval --model "$RUN/refiner-$f/model" -i "$PQ/bootstrap-heldout.jsonl" -o "$OUT/heldout-repairs-$f.jsonl" \
    --batch-size 32 --min-similarity 0.5 --refine-format "$f"
done
