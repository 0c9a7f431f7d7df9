#!/usr/bin/env bash
# Creates .venv with the Python clients the tests and examples use (from PyPI), once.
# Re-run after tests/python/requirements.txt changes; it reinstalls only then.
set -euo pipefail
cd "$(dirname "$0")/.."
requirements=tests/python/requirements.txt
stamp=.venv/.requirements
if [ -x .venv/bin/python ] && [ -f "$stamp" ] && cmp -s "$requirements" "$stamp"; then
  exit 0
fi
python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check -r "$requirements"
cp "$requirements" "$stamp"
