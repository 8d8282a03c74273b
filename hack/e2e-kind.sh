#!/usr/bin/env bash
# End to end on kind, for machines with Docker, kind, kubectl and helm (it cannot run where no
# container engine does): build the image and the examples' image FROM it, load both into a kind
# cluster (created if missing), install RabbitMQ and the chart with the example workers, run
# `helm test`, then every example saga and check its final phase (the
# examples.kubesaga.io/expected-phase annotation). Exits non-zero if any saga ends elsewhere.
#   CLUSTER=kubesaga-e2e NAMESPACE=kubesaga IMAGE=kubesaga:e2e TIMEOUT=180s hack/e2e-kind.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CLUSTER=${CLUSTER:-kubesaga-e2e}
NAMESPACE=${NAMESPACE:-kubesaga}
IMAGE=${IMAGE:-kubesaga:e2e}
EXAMPLES_IMAGE=kubesaga-examples:${IMAGE##*:}
TIMEOUT=${TIMEOUT:-180s}

for tool in docker kind kubectl helm; do
    command -v "$tool" >/dev/null || { echo "e2e: $tool is required" >&2; exit 2; }
done

echo "e2e: building $IMAGE" >&2
docker build -t "$IMAGE" .
docker build -f examples/Dockerfile --build-arg KUBESAGA_IMAGE="$IMAGE" -t "$EXAMPLES_IMAGE" .

if ! kind get clusters | grep -qx "$CLUSTER"; then
    kind create cluster --name "$CLUSTER" --wait 120s
fi
kubectl config use-context "kind-$CLUSTER" >/dev/null
kind load docker-image "$IMAGE" "$EXAMPLES_IMAGE" --name "$CLUSTER"

kubectl create namespace "$NAMESPACE" --dry-run=client -o yaml | kubectl apply -f -
kubectl -n "$NAMESPACE" apply -f hack/e2e/rabbitmq.yaml
kubectl -n "$NAMESPACE" rollout status deployment/rabbitmq --timeout="$TIMEOUT"

helm upgrade --install kubesaga helm/kubesaga --namespace "$NAMESPACE" \
    -f helm/kubesaga/ci/workers-values.yaml \
    --set image.repository="${IMAGE%:*}" --set image.tag="${IMAGE##*:}" \
    --set workerDefaults.image.tag="${IMAGE##*:}" \
    --set image.pullPolicy=Never --wait --timeout "$TIMEOUT"
helm test kubesaga --namespace "$NAMESPACE" --logs --timeout "$TIMEOUT"

failed=0
for file in examples/*/saga.yaml; do
    example=$(basename "$(dirname "$file")")
    name=$(kubectl create --dry-run=client -f "$file" -o jsonpath='{.metadata.name}')
    want=$(kubectl create --dry-run=client -f "$file" \
        -o jsonpath='{.metadata.annotations.examples\.kubesaga\.io/expected-phase}')
    kubectl -n "$NAMESPACE" delete saga "$name" --ignore-not-found --wait
    kubectl -n "$NAMESPACE" apply -f "$file"
    if kubectl -n "$NAMESPACE" wait "saga/$name" --for=jsonpath='{.status.phase}'="$want" \
        --timeout="$TIMEOUT"; then
        echo "e2e: $example: $name is $want" >&2
    else
        got=$(kubectl -n "$NAMESPACE" get saga "$name" -o jsonpath='{.status.phase}')
        echo "e2e: $example: $name is ${got:-<no phase>}, expected $want" >&2
        failed=1
    fi
done
kubectl -n "$NAMESPACE" get sagas
exit "$failed"
