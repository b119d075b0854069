#!/usr/bin/env bash
# Pair quality on the embedded model (issue "Pairs that teach the right thing"): the same negatives
# searched without and with the guard, with the base and with a bootstrapped refiner, and the
# bootstrapped refiner's repairs of held-out breaks. The guard's similarity threshold is pinned to
# 0.5, what these figures were measured with (the default became 0.7 after reading them). Writes into $OUT (default
# results/smollm2-135m/pair-quality). About 2.5 hours on a 2-core CPU; every step resumes.
set -euo pipefail
cd "$(dirname "$0")/.."
S=${SPAR:-.venv/bin/spar}
OUT=${OUT:-results/smollm2-135m/pair-quality}
RUN=${RUN:-runs/pair-quality}
mkdir -p "$OUT"
SEARCH=(--strategy bfs --branch 3 --select 2 --depth 3 --budget 15 --votes 1 --mode verifier --max-new-tokens 192
        --batch-size 32 --seed 1001)
G=(--min-similarity 0.5)

# 1. negatives and samples: full.yaml's first iteration up to the negatives (64 prompts x 4 answers)
$S iterate --config recipes/smollm2-135m/full.yaml --run-dir "$RUN" --until negatives
cp "$RUN/iter_1/negatives.jsonl" "$RUN/iter_1/judgments.jsonl" "$OUT/"
head -32 "$OUT/negatives.jsonl" > "$OUT/negatives-32.jsonl"

# 2. the base refiner without the guard, on all 64 negatives
$S search --model embedded -i "$OUT/negatives.jsonl" -o "$OUT/trees-base-noguard.jsonl" "${SEARCH[@]}" --no-guard

# 3. bootstrap data from the same samples (three kinds and 20% of the prompts held out), SFT
$S bootstrap refiner -i "$RUN/iter_1/samples.jsonl" -o "$OUT/bootstrap-train.jsonl" --eval-out "$OUT/bootstrap-heldout.jsonl" \
  --heldout-kinds punctuation:no_comma,detectable_format:title,keywords:forbidden_words
[ -d "$RUN/refiner-boot/model" ] || $S train sft --data "$OUT/bootstrap-train.jsonl" --out "$RUN/refiner-boot" \
  --set learning_rate=2e-5 --set epochs=2 --set max_length=768
cp "$RUN/refiner-boot/train_log.json" "$OUT/bootstrap-train-log.json"

# 4. one greedy repair of each held-out break, base and bootstrapped refiner
for m in base boot; do
  model=embedded; [ $m = boot ] && model=$RUN/refiner-boot/model
  $S bootstrap eval --model "$model" -i "$OUT/bootstrap-heldout.jsonl" -o "$OUT/heldout-repairs-$m.jsonl" --batch-size 32 "${G[@]}"
done

# 5. guarded search on the first 32 negatives, base and bootstrapped refiner
for m in base boot; do
  model=embedded; [ $m = boot ] && model=$RUN/refiner-boot/model
  $S search --model "$model" -i "$OUT/negatives-32.jsonl" -o "$OUT/trees-$m-guard-32.jsonl" "${SEARCH[@]}" --guard "${G[@]}"
done

# 6. the figures: the no-guard trees as they are and with the guard applied to their pairs, the guarded trees
J=(--judgments "$OUT/judgments.jsonl" "${G[@]}")
$S tree stats "$OUT/trees-base-noguard.jsonl" --prompts "$OUT/negatives.jsonl" "${J[@]}" --no-guard > "$OUT/stats-base-noguard.json"
$S tree stats "$OUT/trees-base-noguard.jsonl" --prompts "$OUT/negatives.jsonl" "${J[@]}" > "$OUT/stats-base-noguard-pairs-guarded.json"
for m in base boot; do
  $S tree stats "$OUT/trees-$m-guard-32.jsonl" --prompts "$OUT/negatives.jsonl" "${J[@]}" > "$OUT/stats-$m-guard-32.json"
done
# the no-guard trees of the same 32 negatives
python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
ids = {json.loads(l)["prompt"]["id"] for l in open(f"{out}/negatives-32.jsonl")}
with open(f"{out}/trees-base-noguard-first32.jsonl", "w") as f:
    f.writelines(l for l in open(f"{out}/trees-base-noguard.jsonl") if json.loads(l)["prompt_id"] in ids)
PY
$S tree stats "$OUT/trees-base-noguard-first32.jsonl" --prompts "$OUT/negatives.jsonl" "${J[@]}" --no-guard > "$OUT/stats-base-noguard-first32.json"
rm "$OUT/trees-base-noguard-first32.jsonl"
