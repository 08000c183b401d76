#!/usr/bin/env bash
# Every test: pytest (native) and Playwright (headless Chromium), then one plain
# summary line "N passed, N failed" for both suites together.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

bash scripts/setup.sh --browser || exit 1
bash scripts/build-web.sh || exit 1
mkdir -p test-results

echo "[test] pytest"
.venv/bin/python -m pytest -q -p no:cacheprovider --junitxml=test-results/pytest.xml "$@"
PYTEST_RC=$?

echo "[test] playwright"
rm -f test-results/e2e.json
npx --no-install playwright test
E2E_RC=$?

read -r PASSED FAILED < <(.venv/bin/python scripts/count_results.py test-results/pytest.xml test-results/e2e.json)
echo "$PASSED passed, $FAILED failed"
if [ "$PYTEST_RC" -ne 0 ] || [ "$E2E_RC" -ne 0 ] || [ "$FAILED" -ne 0 ] || [ "$PASSED" -eq 0 ]; then
  exit 1
fi
