#!/usr/bin/env bash
# SPaR and its baselines, one iteration each, on the embedded model (issue "Methods on one loop"):
# the same 64 procedural prompts, sampling, checker judge (judge.mode verifier), DPO settings and
# guard; IFEval (all 541) and the 50 held-out prompts before and after. The starting model's
# scores come from the SPaR run (the same model, greedy, the same data: the baselines skip their own
# with eval.before=false). Then how often the 135M model's own five-point judge replies carry a
# score. Copies what each figure rests on into $OUT (default results/smollm2-135m/methods).
# Several hours on a 2-core CPU (SPaR's bootstrap and search are most of it); every step resumes.
set -euo pipefail
cd "$(dirname "$0")/.."
S=${SPAR:-.venv/bin/spar}
OUT=${OUT:-results/smollm2-135m/methods}
IFEVAL=${IFEVAL:-../shared/data/ifeval/input_data.jsonl}
EV=(--set eval.ifeval_data="$IFEVAL")

$S iterate --config recipes/smollm2-135m/full.yaml --iterations 1 --run-dir runs/full "${EV[@]}"
for m in self_rewarding self meta_rewarding; do
  $S iterate --config recipes/smollm2-135m/$m.yaml --iterations 1 --run-dir runs/cmp-$m "${EV[@]}" --set eval.before=false
done
# the model's own five-point judge on 8 prompts x 4 answers (3 samples each, 256 tokens)
$S iterate --config recipes/smollm2-135m/self_rewarding.yaml --run-dir runs/sr-llm-judge --set judge.mode=llm \
  --set prompts.count=8 --set eval.heldout=false --until reward

collect() {  # run dir, name
  local d="$OUT/$2"
  mkdir -p "$d/iter_1/eval"
  cp "$1/config.yaml" "$1/manifest.json" "$d/"
  [ -f "$1/report.html" ] && cp "$1/report.html" "$d/"
  for f in stats.json dpo.jsonl sft.jsonl rft.jsonl rewards.jsonl meta.jsonl negatives.jsonl; do
    [ -f "$1/iter_1/$f" ] && cp "$1/iter_1/$f" "$d/iter_1/"
  done
  cp "$1"/iter_1/eval/*.json "$1"/iter_1/eval/*.jsonl "$d/iter_1/eval/"
  if [ -d "$1/iter_0/eval" ]; then mkdir -p "$d/iter_0/eval"; cp "$1"/iter_0/eval/* "$d/iter_0/eval/"; fi
}
collect runs/full spar
for m in self_rewarding self meta_rewarding; do collect runs/cmp-$m $m; done
mkdir -p "$OUT/llm-judge" && cp runs/sr-llm-judge/iter_1/rewards.jsonl runs/sr-llm-judge/config.yaml "$OUT/llm-judge/"
echo "wrote $OUT"
