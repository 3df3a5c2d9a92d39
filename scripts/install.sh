#!/usr/bin/env bash
# Create a virtual environment (default .venv) and install ebmflow with every first-party
# plugin under plugins/ (each its own distribution), editable, plus the optional extras.
#
#   bash scripts/install.sh           # ebmflow + plugins + plotting and digits extras
#   bash scripts/install.sh --test    # ... + the test dependencies and the docs tools
#
# Environment: PYTHON (default python3), VENV (default .venv).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
extras="plot,digits"
case "${1:-}" in
  --test) extras="$extras,test,docs" ;;  # the tests build the docs (tests/test_docs.py)
  "") ;;
  *) echo "usage: bash scripts/install.sh [--test]" >&2; exit 2 ;;
esac
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
# Pinned first: the CPU build on local disk. A loose "torch" can pull a multi-GB CUDA build.
"${pip[@]}" install torch==2.13.0
args=(-e ".[$extras]")
plugins=()
for plugin in plugins/*/; do
  [ -f "$plugin/pyproject.toml" ] || continue
  # with --test, a plugin's own test extra too, where it declares one
  if [[ $extras == *test* ]] && grep -q '^test = ' "$plugin/pyproject.toml"; then
    args+=(-e "${plugin%/}[test]")
  else
    args+=(-e "$plugin")
  fi
  plugins+=("$(basename "$plugin")")
done
"${pip[@]}" install "${args[@]}"
echo "installed ebmflow[$extras] and ${#plugins[@]} plugin(s) ${plugins[*]} into $VENV" >&2
