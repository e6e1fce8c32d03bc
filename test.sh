#!/usr/bin/env bash
# The test command: lint, types, import contracts, then unit, golden and end-to-end tests.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")"
PY=.venv/bin
echo "==> ruff"; $PY/ruff check src tests samples bench
echo "==> mypy"; $PY/mypy
echo "==> import-linter"; $PY/lint-imports --no-cache
echo "==> pytest"; $PY/python -m pytest -q -p no:cacheprovider "$@"
