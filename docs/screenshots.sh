#!/usr/bin/env bash
# Run the console's browser tests and copy the pictures the docs show from their run:
# the sagas list, a saga's timeline and the overview (into docs/screenshots/).
set -euo pipefail
cd "$(dirname "$0")/.."
shots=$(mktemp -d)
trap 'rm -rf "$shots"' EXIT
SAGA_TEST_CONSOLE_ARTIFACTS="$shots" .venv/bin/pytest -q -p no:cacheprovider tests/e2e/test_console.py
for name in sagas saga-replayed overview; do
  cp "$shots/$name.png" "docs/screenshots/$name.png"
done
echo "screenshots copied to docs/screenshots/"
