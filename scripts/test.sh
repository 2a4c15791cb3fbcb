#!/usr/bin/env bash
# Runs the whole test suite: unit, integration (real SQLite, real MongoDB via FiftyOne), notebooks, and
# real-browser tests (JupyterLab + FiftyOne App in Debian Chromium). Fails on zero tests collected (exit 5).
set -uo pipefail
cd "$(dirname "$0")/.."
export FIFTYONE_DO_NOT_TRACK=true
.venv/bin/python -m pytest "$@"
rc=$?
if [ $rc -eq 5 ]; then echo "no tests were collected: failing" >&2; exit 1; fi
exit $rc
