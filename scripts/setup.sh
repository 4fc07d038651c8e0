#!/usr/bin/env bash
# Idempotent environment setup: creates .venv, installs the pinned stack and the pure-Python part of
# Detectron2 (sal-detectron2==0.7.2 = upstream detectron2 a59f0563), then runs an import smoke check.
# Re-running is a no-op when pyproject.toml and this script are unchanged (stamp file).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
VENV=.venv
STAMP=$VENV/.setup-stamp
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)

if [[ -f $STAMP && "$(cat "$STAMP")" == "$want" ]]; then
  echo "setup: .venv is up to date (nothing to do)"
  exit 0
fi

# A first install unpacks ~6 GB (torch, triton and torch's CUDA libraries) into .venv; refuse up front
# rather than fail half-way through pip with "No space left on device".
need_gb=7
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  free_gb=$(( $(df -Pk . | awk 'NR == 2 {print $4}') / 1024 / 1024 ))
  if (( free_gb < need_gb )); then
    echo "setup: error: installing the pinned stack into $PWD/$VENV needs ~$need_gb GB free on its disk," \
      "which has $free_gb GB available. Free space there (old clones; runs' outputs: \`make clean-output\`)" \
      "and re-run \`make setup\`." >&2
    exit 1
  fi
fi

[[ -x $VENV/bin/python ]] || "$PY" -m venv "$VENV"
PIP="$VENV/bin/python -m pip --disable-pip-version-check -q"
$PIP install -U "pip>=24" wheel
# compat mode: a .pth file puts the repo root on sys.path, so new packages need no re-install
$PIP install -e ".[dev]" --config-settings editable_mode=compat

if ! "$VENV/bin/python" -c "import detectron2.modeling" 2>/dev/null; then
  site=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
  # The wheel is tagged cp310 only because of its compiled _C, which we never import.
  $PIP install --no-deps --only-binary=:all: --python-version 3.10 --implementation cp \
    --target "$site" --upgrade sal-detectron2==0.7.2
  # The wheel ships a top-level `tools` package (detectron2's scripts) and a cp310 _C.so; neither is used.
  rm -f "$site"/detectron2/_C*.so
else
  echo "setup: keeping the detectron2 already importable in .venv"
fi

"$VENV/bin/python" - <<'PY'
import importlib.metadata
import detectron2, torch, torchvision, fvcore, pycocotools, cityscapesscripts, pandas, numpy
from detectron2.modeling import build_model  # noqa: F401  (import smoke check)
from detectron2.evaluation import COCOEvaluator, PascalVOCDetectionEvaluator, SemSegEvaluator  # noqa: F401
for dist in ("torch", "torchvision", "numpy", "pandas", "fvcore", "pycocotools", "cityscapesscripts", "wandb"):
    print(f"setup: {dist:17s} {importlib.metadata.version(dist)}")
print(f"setup: {'detectron2':17s} {detectron2.__version__} ({detectron2.__file__})")
print(f"setup: cuda available: {torch.cuda.is_available()}")
PY
echo "$want" > "$STAMP"
echo "setup: done"
