#!/usr/bin/env bash
# The cluster tier on kind, for machines with Docker, kind, kubectl and helm (it cannot run where no
# container engine does; our build machines use hack/cluster.sh's node instead). Builds the two
# images with Docker from the same Dockerfiles as hack/images.sh, loads them into a kind cluster
# (created if missing), starts RabbitMQ as hack/cluster.sh does (namespace rabbitmq, same URL),
# then runs the same tests as the node tier — `pytest tests/cluster` with KUBESAGA_USE_EXISTING=1:
# the chart with the examples' workers (helm/kubesaga/ci/workers-values.yaml), every example to its
# expected phase, operator pod deletion, worker scaling, helm upgrade, helm test, helm uninstall.
#   CLUSTER=kubesaga-e2e TIMEOUT=180s hack/e2e-kind.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CLUSTER=${CLUSTER:-kubesaga-e2e}
TIMEOUT=${TIMEOUT:-180s}
VERSION="$(awk -F'"' '/^appVersion:/ {print $2}' helm/kubesaga/Chart.yaml)"

for tool in docker kind kubectl helm python3; do
    command -v "$tool" >/dev/null || { echo "e2e: $tool is required" >&2; exit 2; }
done

echo "e2e: building kubesaga:$VERSION and kubesaga-examples:$VERSION" >&2
docker build -t "kubesaga:$VERSION" .
docker build -t "kubesaga-examples:$VERSION" --build-arg "KUBESAGA_IMAGE=kubesaga:$VERSION" \
    -f examples/Dockerfile .

if ! kind get clusters | grep -qx "$CLUSTER"; then
    kind create cluster --name "$CLUSTER" --wait 120s
fi
KUBECONFIG="$(mktemp)"
export KUBECONFIG
trap 'rm -f "$KUBECONFIG"' EXIT
kind get kubeconfig --name "$CLUSTER" >"$KUBECONFIG"
kind load docker-image "kubesaga:$VERSION" "kubesaga-examples:$VERSION" --name "$CLUSTER"

kubectl apply -f hack/e2e/rabbitmq.yaml
kubectl -n rabbitmq rollout status deployment/rabbitmq --timeout="$TIMEOUT"

export KUBESAGA_USE_EXISTING=1
export KUBESAGA_CLUSTER_AMQP_URL=amqp://kubesaga:kubesaga-cluster@rabbitmq.rabbitmq:5672/kubesaga
exec python3 -m pytest tests/cluster -p no:cacheprovider "$@"
