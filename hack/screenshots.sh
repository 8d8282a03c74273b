#!/usr/bin/env bash
# Regenerate the UI screenshots of the README and docs/ui.md (docs/images/ui-*.png): the example
# sagas run by `kubesaga demo` on the local platform, then `kubesaga ui` photographed by headless
# Chromium (hack/screenshots.py). Reuses a running platform, else starts one and stops it after.
# Needs chromium (apt-get install chromium) and the dev extras (playwright).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

started_file="$(mktemp)"
trap 'rm -f "$started_file"' EXIT
eval "$(KUBESAGA_TESTENV_STARTED_FILE="$started_file" hack/testenv.sh up)"
if [[ "$(cat "$started_file")" == 1 ]]; then
    trap 'hack/testenv.sh down >&2 || true; rm -f "$started_file"' EXIT
fi
namespace=kubesaga-screenshots
# Only this run's sagas in the pictures; the demo leaves its sagas when it ends (not its processes).
python3 hack/screenshots.py --namespace "$namespace" --clear
KUBESAGA_USE_EXISTING=1 python3 -m kubesaga demo --namespace "$namespace" >&2
python3 hack/screenshots.py --namespace "$namespace" --output docs/images
