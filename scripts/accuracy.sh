#!/usr/bin/env bash
# The GLUE accuracy table (results/ACCURACY.md) from real runs: for each task, fine-tune a MiniLM teacher,
# distil the MPCFormer and SecFormer students, evaluate teacher / PUMA / MPCFormer / SecFormer on the full
# dev split in plaintext and on an evenly spaced dev subset under SPU ABY3. A budget recipe sized for a
# 2-core machine (about 2 hours; see WORKSPACE.md); every step is skipped when its output exists, so a rerun resumes.
# Usage: scripts/accuracy.sh [TASK ...]   (default: CoLA SST-2 STS-B MRPC RTE)
set -euo pipefail
cd "$(dirname "$0")/.."
S="${SECFORMER:-.venv/bin/secformer}"
RUNS="${RUNS:-runs}"          # checkpoints (not committed)
OUT="${OUT:-results/accuracy}" # JSON per step (committed)
SPU_SEC="${SPU_SEC:-8}"        # SPU examples for SecFormer (MRPC, RTE: 3/4 of it)
SPU_OTHER="${SPU_OTHER:-4}"    # SPU examples for PUMA and MPCFormer (MRPC, RTE: 3/4 of it)
mkdir -p "$RUNS" "$OUT"

teacher_args() {  # epochs and train subset per task; lr 5e-5 (the top of MPCFormer's grid: MiniLM is small)
  case "$1" in
    SST-2) echo "--epochs 2 --max-train 8000 --lr 5e-5" ;;
    CoLA) echo "--epochs 3 --lr 5e-5" ;;
    *) echo "--epochs 2 --lr 5e-5" ;;
  esac
}

student_train() {  # students train on a seeded subset; pair tasks with long inputs get a smaller one
  case "$1" in
    MRPC|RTE) echo 1000 ;;
    *) echo 2000 ;;
  esac
}

spu_examples() {  # spu_examples TASK METHOD: fewer for the long-input tasks (128 tokens: ~35 s per example)
  local n
  case "$2" in secformer) n="$SPU_SEC" ;; *) n="$SPU_OTHER" ;; esac
  case "$1" in MRPC|RTE) echo $(( (n * 3 + 3) / 4 )) ;; *) echo "$n" ;; esac
}

step() {  # step OUTPUT_FILE COMMAND...: run unless OUTPUT_FILE exists
  local done="$1"; shift
  if [[ -e "$done" ]]; then echo "== skip (done): $*"; return; fi
  echo "== $(date -u +%H:%M:%S) $*"
  "$@"
}

tasks=("$@")
[[ ${#tasks[@]} -gt 0 ]] || tasks=(CoLA SST-2 STS-B MRPC RTE)
for t in "${tasks[@]}"; do
    step "$RUNS/$t-teacher/secformer.json" $S finetune --task "$t" --out "$RUNS/$t-teacher" $(teacher_args "$t") \
      --json "$OUT/train/$t-teacher.json"
    for student in mpcformer secformer; do
      step "$RUNS/$t-$student/secformer.json" $S distill --task "$t" --teacher "$RUNS/$t-teacher" --student "$student" \
        --out "$RUNS/$t-$student" --max-train "$(student_train "$t")" --stage1-epochs 2 --stage1-lr 1e-4 --stage2-lr 5e-5 --json "$OUT/train/$t-$student.json"
    done
    step "$OUT/$t-teacher.json" $S eval --task "$t" --model "$RUNS/$t-teacher" --approx plaintext --json "$OUT/$t-teacher.json"
    step "$OUT/$t-puma.json" $S eval --task "$t" --model "$RUNS/$t-teacher" --approx puma --spu-examples "$(spu_examples "$t" puma)" --json "$OUT/$t-puma.json"
    step "$OUT/$t-mpcformer.json" $S eval --task "$t" --model "$RUNS/$t-mpcformer" --approx mpcformer --spu-examples "$(spu_examples "$t" mpcformer)" --json "$OUT/$t-mpcformer.json"
    step "$OUT/$t-secformer.json" $S eval --task "$t" --model "$RUNS/$t-secformer" --approx secformer --spu-examples "$(spu_examples "$t" secformer)" --json "$OUT/$t-secformer.json"
done
$S accuracy-report --runs "$OUT" --out results/ACCURACY.md
