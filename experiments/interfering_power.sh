#!/usr/bin/env bash
# The interfering-factors study with power (issue 28): letters, ending and story, refined against
# interfering pairs, 5 seeds x 200 DPO steps (LoRA r 16, + 0.1 x SFT on chosen), 256 training pairs
# and 16 held-out prompts per task, 4 sampled answers per held-out prompt every 50 steps, each task's
# learning rate from a 30-step pilot at 3e-5, 1e-4 and 3e-4. Resumable: rerun to continue (a run cut
# short is redone). Letters on a 2-core CPU: ~7 min per 200-step run alone (precomputing the
# reference over 256 pairs, 4 sampled evaluations), 10 runs and a 6-run pilot, about 1 h 45 min;
# ending and story have longer answers and take longer. Writes $OUT (default
# results/smollm2-135m/interfering-power).
set -euo pipefail
cd "$(dirname "$0")/.."
S=${SPAR:-.venv/bin/spar}
OUT=${OUT:-results/smollm2-135m/interfering-power}
$S experiment interfering --out "$OUT" --tasks letters,ending,story
