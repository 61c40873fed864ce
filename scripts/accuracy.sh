#!/usr/bin/env bash
# The GLUE accuracy table (results/ACCURACY.md) from real runs: for each task, fine-tune a MiniLM teacher
# (RTE: one from MiniLM and one from the MRPC teacher, the dev-best kept), distil the MPCFormer and SecFormer
# students with the same budget, evaluate teacher / PUMA / MPCFormer / SecFormer on the whole dev split in
# plaintext and on an evenly spaced dev subset under SPU ABY3.
# The recipe is sized for a 2-core machine: measured CoLA 44 min, SST-2 66 min, STS-B 45 min, MRPC 73 min,
# RTE 82 min (WORKSPACE.md). Every step is skipped when its output exists, and an interrupted training step resumes
# from its last save, so a rerun on the same machine picks up where the last one stopped.
# Usage: scripts/accuracy.sh [TASK ...]   (default: CoLA SST-2 STS-B MRPC RTE)
set -euo pipefail
cd "$(dirname "$0")/.."
S="${SECFORMER:-.venv/bin/secformer}"
PY="${PYTHON:-.venv/bin/python}"
RUNS="${RUNS:-runs}"          # checkpoints (not committed)
OUT="${OUT:-results/accuracy}" # JSON per step (committed)
SPU_SEC="${SPU_SEC:-50}"       # SPU examples for SecFormer (the final preset); SST-2: twice as many
SPU_OTHER="${SPU_OTHER:-2}"    # SPU examples for PUMA and MPCFormer
mkdir -p "$RUNS" "$OUT"

teacher_args() {  # full train sets; epochs and learning rate per task (chosen on the dev split: WORKSPACE.md)
  case "$1" in
    CoLA) echo "--epochs 6 --lr 1e-4" ;;
    SST-2) echo "--epochs 1 --lr 5e-5" ;;
    STS-B) echo "--epochs 3 --lr 5e-5" ;;
    *) echo "--epochs 5 --lr 5e-5" ;;  # MRPC, RTE
  esac
}

teacher_bases() {  # the teacher's starting points: one run from each, the best on the dev split is kept
  case "$1" in
    RTE) echo "MiniLM MRPC" ;;  # also from the MRPC teacher (intermediate-task transfer; RTE has 2,490 train pairs)
    *) echo "MiniLM" ;;
  esac
}

student_args() {  # both students get the same budget: training examples and the two stages' epochs
  case "$1" in
    SST-2) echo "--max-train 8000 --stage1-epochs 2 --stage2-epochs 1" ;;  # a full SST-2 epoch is ~30 min per student
    *) echo "--stage1-epochs 2 --stage2-epochs 1" ;;  # the full train set
  esac
}

spu_examples() {  # spu_examples TASK METHOD (MiniLM under ABY3, 16 examples per run, 2 cores: ~6 s per example at 32 tokens)
  case "$2" in
    secformer) if [[ "$1" == SST-2 ]]; then echo $(( 2 * SPU_SEC )); else echo "$SPU_SEC"; fi ;;
    *) echo "$SPU_OTHER" ;;
  esac
}

spu_batch() {  # SPU examples per program: 16 x 128 tokens was killed for memory on 24 GiB (MRPC, 2026-11-30)
  case "$1" in
    MRPC|RTE) echo 8 ;;
    *) echo 16 ;;
  esac
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
    bases=($(teacher_bases "$t"))
    if [[ ${#bases[@]} -eq 1 ]]; then
      step "$RUNS/$t-teacher/secformer.json" $S finetune --task "$t" --out "$RUNS/$t-teacher" $(teacher_args "$t") \
        --json "$OUT/train/$t-teacher.json"
      step "$OUT/$t-teacher.json" $S eval --task "$t" --model "$RUNS/$t-teacher" --approx plaintext --json "$OUT/$t-teacher.json"
    else  # candidates in sweep/; the task's teacher (checkpoint, eval and training JSON) links to the dev-best one
      mkdir -p "$OUT/sweep" "$OUT/train/sweep"
      for b in "${bases[@]}"; do
        if [[ "$b" != MiniLM && ! -e "$RUNS/$b-teacher/secformer.json" ]]; then
          echo "accuracy.sh: $t's teacher also starts from the $b teacher: run $b first (scripts/accuracy.sh $b $t)" >&2; exit 2
        fi
      done
      candidates=()
      for b in "${bases[@]}"; do
        name="$t-teacher-from-$b"
        candidates+=("$OUT/sweep/$name.json")
        step "$RUNS/$name/secformer.json" $S finetune --task "$t" --out "$RUNS/$name" \
          $([[ "$b" == MiniLM ]] || echo "--model $RUNS/$b-teacher") $(teacher_args "$t") --json "$OUT/train/sweep/$name.json"
        step "$OUT/sweep/$name.json" $S eval --task "$t" --model "$RUNS/$name" --approx plaintext --json "$OUT/sweep/$name.json"
      done
      best=$("$PY" -c 'import json, sys
runs = {p: json.load(open(p)) for p in sys.argv[1:]}
print(max(runs, key=lambda p: runs[p]["metrics"][runs[p]["main_metric"]]))' "${candidates[@]}")
      best=$(basename "${best%.json}")  # the first on a tie
      echo "== $t teacher: $best, the best on the dev split (from: ${bases[*]})"
      ln -sfn "$best" "$RUNS/$t-teacher"
      ln -sfn "sweep/$best.json" "$OUT/$t-teacher.json"
      ln -sfn "sweep/$best.json" "$OUT/train/$t-teacher.json"
    fi
    for student in mpcformer secformer; do
      step "$RUNS/$t-$student/secformer.json" $S distill --task "$t" --teacher "$RUNS/$t-teacher" --student "$student" \
        --out "$RUNS/$t-$student" $(student_args "$t") --stage1-lr 1e-4 --stage2-lr 5e-5 --json "$OUT/train/$t-$student.json"
    done
    step "$OUT/$t-puma.json" $S eval --task "$t" --model "$RUNS/$t-teacher" --approx puma --spu-examples "$(spu_examples "$t" puma)" --spu-batch "$(spu_batch "$t")" --json "$OUT/$t-puma.json"
    step "$OUT/$t-mpcformer.json" $S eval --task "$t" --model "$RUNS/$t-mpcformer" --approx mpcformer --spu-examples "$(spu_examples "$t" mpcformer)" --spu-batch "$(spu_batch "$t")" --json "$OUT/$t-mpcformer.json"
    step "$OUT/$t-secformer.json" $S eval --task "$t" --model "$RUNS/$t-secformer" --approx secformer --spu-examples "$(spu_examples "$t" secformer)" --spu-batch "$(spu_batch "$t")" --json "$OUT/$t-secformer.json"
done
$S accuracy-report --runs "$OUT" --out results/ACCURACY.md
