#!/usr/bin/env bash
# The interfering-factors study with power (issue 28): letters, ending and story, refined against
# interfering pairs, 5 seeds x 200 DPO steps (LoRA r 16, + 0.1 x SFT on chosen), 256 training pairs
# and 16 held-out prompts per task, 4 sampled answers per held-out prompt every 50 steps, each task's
# learning rate from a 30-step pilot at 3e-5, 1e-4 and 3e-4. Resumable: rerun to continue (a run cut
# short is redone). About 40 min per task per arm-seed pair on a 2-core CPU for letters, more for the
# longer answers of ending and story. Writes $OUT (default results/smollm2-135m/interfering-power).
set -euo pipefail
cd "$(dirname "$0")/.."
S=${SPAR:-.venv/bin/spar}
OUT=${OUT:-results/smollm2-135m/interfering-power}
$S experiment interfering --out "$OUT" --tasks letters,ending,story
