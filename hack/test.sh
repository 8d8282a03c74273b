#!/usr/bin/env bash
# The project's test command (the README's second command; .ci/run calls it too):
# lint, types, layer contracts, then every test tier. Starts the platform when the integration
# tier needs it (tests/conftest.py runs hack/testenv.sh up) and stops what it started.
# Arguments are passed to pytest, e.g. `hack/test.sh -m unit` for the tests needing nothing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! python3 -c 'import kubesaga, pytest, mypy' 2>/dev/null; then
    echo "test: installing the package with its dev extras (pip install -e '.[dev]')" >&2
    python3 -m pip install --quiet --disable-pip-version-check -e '.[dev]'
fi

paths=(operator tests)
[[ -d bench ]] && [[ -n "$(find bench -name '*.py' -print -quit)" ]] && paths+=(bench)
[[ -n "$(find hack -name '*.py' -print -quit)" ]] && paths+=(hack) # the node's host-state tool

echo "test: ruff check ${paths[*]} examples" >&2
python3 -m ruff check "${paths[@]}" examples
echo "test: mypy --strict ${paths[*]}" >&2
python3 -m mypy --strict "${paths[@]}"
# Each example folder holds a handlers.py (folders with dashes are not packages): one run each;
# so does each example module at the top (the web app of docs/python.md).
for handlers in examples/*/handlers.py examples/*.py; do
    echo "test: mypy --strict $handlers" >&2
    python3 -m mypy --strict "$handlers"
done
echo "test: import contracts (lint-imports)" >&2
lint-imports --config pyproject.toml

echo "test: pytest" >&2
set +e
python3 -m pytest "$@"
rc=$?
set -e
if [[ $rc -eq 5 ]]; then
    echo "test: pytest collected no tests; that is a failure here" >&2
    exit 1
fi
exit $rc
