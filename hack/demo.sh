#!/usr/bin/env bash
# The main job (the README's first command): install kubesaga if needed, then `kubesaga demo`:
# a local kube-apiserver + etcd + RabbitMQ, the CRD, the operator and the example workers as
# local processes, the example sagas run to their final phase with live progress and a summary.
# `hack/demo.sh --cluster` runs them as pods instead: the chart installed with Helm on the one-node
# cluster of hack/cluster.sh (root; started or reused). Arguments go to `kubesaga demo` (e.g. --keep
# to leave everything running, -e 01 for one example).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! python3 -c 'import kubesaga' 2>/dev/null; then
    echo "demo: installing kubesaga (pip install -e .)" >&2
    python3 -m pip install --quiet --disable-pip-version-check -e .
fi
exec python3 -m kubesaga demo "$@"
