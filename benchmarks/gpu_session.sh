#!/usr/bin/env bash
# The GPU check in one go, for a session that is lent a GPU machine (see benchmarks/README.md).
#
# The device machine has CUDA torch in its `python3` (torch 2.11, Python 3.12) but no network and
# none of medwss's own dependencies that it lacks (MONAI, pydantic, nibabel, pydicom, OpenSlide,
# imagecodecs). They travel as wheels, fetched here first; nothing else is installed there, and
# the repository runs from its copy (PYTHONPATH), not installed.
#
#   1. here, once:   bash benchmarks/gpu_session.sh fetch
#                    (wheels, same versions as .venv, into build/gpu_wheels: ignored, ~40 MB)
#   2. device run:   command "bash benchmarks/gpu_session.sh", carry ["build/gpu_wheels"], timeout_s 600
#                    (about 8 minutes; writes gpu_check_cuda.json/.md and gpu_session.log to $OUT)
#   3. here:         copy gpu_check_cuda.json/.md from the run's files_at into benchmarks/results/
#
# Options after the mode go to gpu_check.py (e.g. `run --kinds seg_unet coin_gan --no-cpu`).
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=build/gpu_wheels
PACKAGES=(monai pydantic pydantic-core annotated-types typing-inspection typing-extensions nibabel pydicom
          openslide-python openslide-bin imagecodecs)
mode=${1:-run}
[[ $# -gt 0 ]] && shift

if [[ $mode == fetch ]]; then
  PY=${PY:-.venv/bin/python}
  mkdir -p "$WHEELS"
  pins=$("$PY" - "${PACKAGES[@]}" <<'EOF'
import sys
from importlib import metadata
print(" ".join(f"{n}=={metadata.version(n)}" for n in sys.argv[1:]))
EOF
)
  # shellcheck disable=SC2086
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$WHEELS" $pins
  du -sh "$WHEELS"
  echo "wheels in $WHEELS; now run 'bash benchmarks/gpu_session.sh' on the device machine with carry [\"$WHEELS\"]"
  exit 0
fi
[[ $mode == run ]] || { echo "usage: $0 [fetch|run] [gpu_check options]" >&2; exit 2; }

PY=${PY:-python3}
OUT_DIR=${OUT:-benchmarks/results}
mkdir -p "$OUT_DIR"
LOG=$OUT_DIR/gpu_session.log
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
if ! "$PY" -c "import monai, pydantic, nibabel, pydicom, openslide, imagecodecs" 2>/dev/null; then
  ls "$WHEELS"/*.whl >/dev/null 2>&1 || { echo "missing packages and no wheels in $WHEELS (run 'fetch' here first)" >&2; exit 3; }
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl
  export PYTHONPATH=$PWD:/tmp/site${PYTHONPATH#"$PWD"}
fi
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  "$PY" -c "import torch, monai; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'monai', monai.__version__)"
  timeout 560 "$PY" benchmarks/gpu_check.py --device cuda --out "$OUT_DIR" "$@"
} 2>&1 | tee "$LOG"
echo "results: $OUT_DIR/gpu_check_*.json and .md (log: $LOG)"
