#!/usr/bin/env bash
# kubesaga's one-node Kubernetes cluster with real pods, on this machine, without any registry:
# containerd + runc + a CNI bridge, etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
# kube-proxy and kubelet v1.34 (built from the Go module proxy and cached), CoreDNS as cluster DNS,
# RabbitMQ as a pod behind a Service, and the kubesaga images built from the Dockerfiles.
#
#   eval "$(hack/cluster.sh up)"   start (or reuse) the cluster; stdout carries only `export` lines:
#                                  KUBECONFIG, KUBESAGA_CLUSTER_AMQP_URL (the broker's in-cluster URL,
#                                  for `helm install --set amqp.url=...`) and PATH (kubectl, helm)
#   hack/cluster.sh down           stop everything `up` started and undo its changes to the host
#                                  (sysctls, iptables, mounts, cgroups, links), checked against a
#                                  record taken before `up`
#   hack/cluster.sh status         what runs (exit 0: all ready, 1: partly, 3: nothing)
#   hack/cluster.sh build          build and cache the binaries and images (no start)
#   hack/cluster.sh images         rebuild the kubesaga images and import them (after code changes)
#   hack/cluster.sh env            print the exports of a running cluster
#
# Needs root on Linux (Debian/Ubuntu: containerd, runc, containernetworking-plugins, iptables,
# buildah and mmdebstrap are installed with apt when missing), Go for the first build, and about
# 4 GB of memory. Nothing is written under /etc or /var/lib: containerd, the kubelet and the CNI
# plugins keep their state in KUBESAGA_CLUSTER_DIR.
#
# Environment:
#   KUBESAGA_CLUSTER_DIR       state dir (default ~/.cache/kubesaga/cluster)
#   KUBESAGA_BIN_DIR           binary cache shared with hack/testenv.sh (default ~/.cache/kubesaga/bin)
#   KUBESAGA_CLUSTER_ETCD_PORT, KUBESAGA_CLUSTER_APISERVER_PORT   (defaults 23379, 27443); the other
#                              ports are fixed: kubelet 20250 and 20248, controller-manager 20257,
#                              scheduler 20259, kube-proxy 20249 and 20256
#   KUBESAGA_CLUSTER_SUBNET    the node's pod network, a /16 (default 10.244): bridge kubesaga0 with
#                              the node at .0.1; Services in 10.96.0.0/16, DNS at 10.96.0.10
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODS="$ROOT/hack/testenv"
STATE="${KUBESAGA_CLUSTER_DIR:-$HOME/.cache/kubesaga/cluster}"
BIN_DIR="${KUBESAGA_BIN_DIR:-$HOME/.cache/kubesaga/bin}"
PIDS="$STATE/pids"
LOGS="$STATE/logs"
CERTS="$STATE/certs"
RUN_DIR=/run/kubesaga-cluster
CONTAINERD_SOCK="$RUN_DIR/containerd/containerd.sock"
HOST_RECORD="$STATE/host-before-up.json"

ETCD_PORT="${KUBESAGA_CLUSTER_ETCD_PORT:-23379}"
APISERVER_PORT="${KUBESAGA_CLUSTER_APISERVER_PORT:-27443}"
SUBNET="${KUBESAGA_CLUSTER_SUBNET:-10.244}"
POD_CIDR="$SUBNET.0.0/16"
NODE_IP="$SUBNET.0.1"
BRIDGE=kubesaga0
SERVICE_CIDR=10.96.0.0/16
API_SERVICE_IP=10.96.0.1
DNS_IP=10.96.0.10
NODE_NAME=kubesaga-node
READY_TIMEOUT="${KUBESAGA_CLUSTER_READY_TIMEOUT:-180}"

LOG_PREFIX=cluster
# shellcheck source=hack/lib/common.sh
source "$ROOT/hack/lib/common.sh"

KUBE_VERSION="$(mod_version "$MODS/node" k8s.io/kubernetes)"
ETCD_VERSION="$(mod_version "$MODS/etcd" go.etcd.io/etcd/server/v3)"
HELM_VERSION="$(mod_version "$MODS/helm" helm.sh/helm/v3)"
CRICTL_VERSION="$(mod_version "$MODS/crictl" sigs.k8s.io/cri-tools)"
[[ -n "$KUBE_VERSION" && -n "$ETCD_VERSION" && -n "$HELM_VERSION" && -n "$CRICTL_VERSION" ]] ||
    die "cannot read the pinned versions from $MODS/*/go.mod"
AMQP_URL_IN_CLUSTER="amqp://kubesaga:kubesaga-cluster@rabbitmq.rabbitmq:5672/kubesaga"
KUBECONFIG_PATH="$STATE/kubeconfig"
NODE_BINS=(kubelet kube-proxy kube-scheduler kube-controller-manager kubectl)
COMPONENTS=(containerd etcd kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubelet)

# ------------------------------------------------------------------------------- prerequisites

ensure_host() {
    [[ "$(uname -s)" == Linux ]] || die "the one-node cluster needs Linux"
    [[ "$(id -u)" == 0 ]] || die "the one-node cluster needs root (containerd, iptables, mounts, cgroups); run it with sudo"
    local missing=() p
    command -v containerd >/dev/null || missing+=(containerd)
    command -v runc >/dev/null || missing+=(runc)
    [[ -x /usr/lib/cni/bridge ]] || missing+=(containernetworking-plugins)
    command -v iptables >/dev/null || missing+=(iptables)
    command -v nft >/dev/null || missing+=(nftables) # `down` removes the iptables-nft tables `up` created
    command -v buildah >/dev/null || missing+=(buildah)
    command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
    for p in openssl curl conntrack; do command -v "$p" >/dev/null || missing+=("$p"); done
    install_packages "${missing[@]}"
}

ensure_cgroups() {
    [[ -d /sys/fs/cgroup/memory || -f /sys/fs/cgroup/cgroup.controllers ]] ||
        die "no cgroup filesystem at /sys/fs/cgroup; the kubelet needs cgroups (v1 or v2)"
}

# ---------------------------------------------------------------------------------- binaries

build_node_bins() {
    local v="$KUBE_VERSION" minor b pkgv=k8s.io/component-base/version
    minor="$(cut -d. -f2 <<<"$v")"
    for b in "${NODE_BINS[@]}"; do
        [[ "$b" == kubelet ]] && [[ ! -x "$BIN_DIR/kubelet-$v" ]] &&
            log "  kubelet takes ~8 min on 2 cores the first time; the others ~1 min each after it"
        build_bin "$b" "$MODS/node" "k8s.io/kubernetes/cmd/$b" "$v" \
            "-s -w -X $pkgv.gitVersion=$v -X $pkgv.gitMajor=1 -X $pkgv.gitMinor=$minor -X $pkgv.gitTreeState=clean -X $pkgv.buildDate=1970-01-01T00:00:00Z"
    done
    build_bin crictl "$MODS/crictl" sigs.k8s.io/cri-tools/cmd/crictl "$CRICTL_VERSION" \
        "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION"
    "$ROOT/hack/testenv.sh" build >&2 # etcd, kube-apiserver and helm, shared with the platform
    mkdir -p "$STATE/bin"
    for b in kubectl crictl; do ln -sfn "$BIN_DIR/$b-$([[ $b == crictl ]] && echo "$CRICTL_VERSION" || echo "$v")" "$STATE/bin/$b"; done
    ln -sfn "$BIN_DIR/helm-$HELM_VERSION" "$STATE/bin/helm"
}

bin() { # name -> cached path
    case "$1" in
        etcd) echo "$BIN_DIR/etcd-$ETCD_VERSION" ;;
        kube-apiserver) echo "$BIN_DIR/kube-apiserver-$KUBE_VERSION" ;;
        crictl) echo "$BIN_DIR/crictl-$CRICTL_VERSION" ;;
        *) echo "$BIN_DIR/$1-$KUBE_VERSION" ;;
    esac
}

# ------------------------------------------------------------------------------ certificates

ensure_certs() {
    [[ -f "$CERTS/.complete-$NODE_IP" ]] && return 0
    log "generating certificates in $CERTS"
    rm -rf "$CERTS"
    mkdir -p "$CERTS"
    (
        cd "$CERTS"
        umask 077
        make_ca kubesaga-cluster-ca
        sign apiserver /CN=kube-apiserver "$SERVING_EXT
subjectAltName=IP:$NODE_IP,IP:$API_SERVICE_IP,IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
        sign admin /O=system:masters/CN=kubesaga-cluster-admin "$CLIENT_EXT"
        sign kubelet "/O=system:nodes/CN=system:node:$NODE_NAME" "$CLIENT_EXT"
        make_sa_key
        touch ".complete-$NODE_IP"
    )
}

# kubeconfig FILE USER: a kubeconfig with the user's client certificate.
kubeconfig() {
    write_kubeconfig "$1" kubesaga-cluster "https://$NODE_IP:$APISERVER_PORT" "$CERTS/ca.crt" \
        "$CERTS/$2.crt" "$CERTS/$2.key"
}

# ------------------------------------------------------------------------------- components

wait_for() { # what check-command process...
    local what="$1" check="$2" p deadline
    shift 2
    deadline=$(($(date +%s) + READY_TIMEOUT))
    until $check; do
        for p in "$@"; do
            if ! alive "$p"; then
                tail -n 30 "$LOGS/$p.log" >&2 2>/dev/null || true
                die "$p exited before $what became ready (logs: $LOGS)"
            fi
        done
        (($(date +%s) < deadline)) || die "$what not ready after ${READY_TIMEOUT}s (logs: $LOGS)"
        sleep 0.2
    done
}

ensure_bridge() {
    ip link show "$BRIDGE" >/dev/null 2>&1 && return 0
    # Created before the apiserver, which listens on the node's bridge address.
    ip link add "$BRIDGE" type bridge
    ip addr add "$NODE_IP/16" dev "$BRIDGE"
    ip link set "$BRIDGE" up
}

start_containerd() {
    alive containerd && return 0
    mkdir -p "$STATE/containerd" "$STATE/cni/net.d" "$RUN_DIR"
    # The distribution's defaults with our own root, state and socket (a containerd the host may
    # run is left alone), our CNI config dir and the local pause image. restrict_oom_score_adj: a
    # VM without CAP_SYS_RESOURCE cannot give the sandbox oom_score_adj -998 (runc fails with
    # "can't get final child's PID from pipe: EOF").
    containerd config default |
        sed -e "s#^root = .*#root = \"$STATE/containerd/root\"#" \
            -e "s#^state = .*#state = \"$RUN_DIR/containerd\"#" \
            -e "/^\[grpc\]/,/^\[/ s#^  address = .*#  address = \"$CONTAINERD_SOCK\"#" \
            -e "s#sandbox_image = .*#sandbox_image = \"$("$ROOT/hack/images.sh" ref pause)\"#" \
            -e "s#bin_dir = \"/opt/cni/bin\"#bin_dir = \"/usr/lib/cni\"#" \
            -e "s#conf_dir = \"/etc/cni/net.d\"#conf_dir = \"$STATE/cni/net.d\"#" \
            -e "s#restrict_oom_score_adj = false#restrict_oom_score_adj = true#" \
            -e "s#path = \"/opt/containerd\"#path = \"$STATE/containerd/opt\"#" \
            >"$STATE/containerd/config.toml"
    grep -q "address = \"$CONTAINERD_SOCK\"" "$STATE/containerd/config.toml" ||
        die "could not set containerd's socket in $STATE/containerd/config.toml (containerd $(containerd --version))"
    cat >"$STATE/cni/net.d/10-kubesaga.conflist" <<EOF
{"cniVersion": "1.0.0", "name": "kubesaga", "plugins": [
  {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": true, "hairpinMode": true,
   "ipam": {"type": "host-local", "dataDir": "$STATE/cni/ipam",
            "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$NODE_IP"}]], "routes": [{"dst": "0.0.0.0/0"}]}}]}
EOF
    log "starting containerd $(containerd --version | awk '{print $3}') ($CONTAINERD_SOCK)"
    start_proc containerd "$LOGS/containerd.log" containerd --config "$STATE/containerd/config.toml"
    wait_for containerd containerd_ready containerd
}

containerd_ready() { ctr --address "$CONTAINERD_SOCK" version >/dev/null 2>&1; }

start_etcd() {
    alive etcd && return 0
    port_busy "$ETCD_PORT" && die "port $ETCD_PORT (etcd) is taken; set KUBESAGA_CLUSTER_ETCD_PORT"
    rm -rf "$STATE/etcd"
    log "starting etcd on 127.0.0.1:$ETCD_PORT"
    start_proc etcd "$LOGS/etcd.log" "$(bin etcd)" --name=kubesaga-cluster --data-dir="$STATE/etcd" \
        --listen-client-urls="http://127.0.0.1:$ETCD_PORT" --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
        --listen-peer-urls="http://127.0.0.1:$((ETCD_PORT + 1))" \
        --initial-advertise-peer-urls="http://127.0.0.1:$((ETCD_PORT + 1))" \
        --initial-cluster="kubesaga-cluster=http://127.0.0.1:$((ETCD_PORT + 1))" \
        --unsafe-no-fsync --log-level=warn
}

apiserver_ready() {
    [[ "$(curl -sS --max-time 2 --cacert "$CERTS/ca.crt" --cert "$CERTS/admin.crt" --key "$CERTS/admin.key" \
        "https://$NODE_IP:$APISERVER_PORT/readyz" 2>/dev/null)" == ok ]]
}

start_apiserver() {
    alive kube-apiserver && return 0
    log "starting kube-apiserver on https://$NODE_IP:$APISERVER_PORT"
    start_proc kube-apiserver "$LOGS/kube-apiserver.log" "$(bin kube-apiserver)" \
        --etcd-servers="http://127.0.0.1:$ETCD_PORT" --cert-dir="$STATE/apiserver" \
        --tls-cert-file="$CERTS/apiserver.crt" --tls-private-key-file="$CERTS/apiserver.key" \
        --client-ca-file="$CERTS/ca.crt" --secure-port="$APISERVER_PORT" \
        --bind-address="$NODE_IP" --advertise-address="$NODE_IP" \
        --service-account-issuer=https://kubernetes.default.svc.cluster.local \
        --service-account-key-file="$CERTS/sa.pub" --service-account-signing-key-file="$CERTS/sa.key" \
        --service-cluster-ip-range="$SERVICE_CIDR" --authorization-mode=Node,RBAC \
        --enable-admission-plugins=NodeRestriction --allow-privileged=false \
        --kubelet-client-certificate="$CERTS/admin.crt" --kubelet-client-key="$CERTS/admin.key" \
        --kubelet-preferred-address-types=InternalIP
}

start_controllers() {
    local common=(--kubeconfig="$STATE/admin.kubeconfig" --authentication-kubeconfig="$STATE/admin.kubeconfig"
        --authorization-kubeconfig="$STATE/admin.kubeconfig" --bind-address=127.0.0.1 --leader-elect=false)
    alive kube-controller-manager || start_proc kube-controller-manager "$LOGS/kube-controller-manager.log" \
        "$(bin kube-controller-manager)" "${common[@]}" --secure-port=20257 \
        --service-account-private-key-file="$CERTS/sa.key" --root-ca-file="$CERTS/ca.crt" \
        --cluster-signing-cert-file="$CERTS/ca.crt" --cluster-signing-key-file="$CERTS/ca.key" \
        --service-cluster-ip-range="$SERVICE_CIDR" --use-service-account-credentials=true
    alive kube-scheduler || start_proc kube-scheduler "$LOGS/kube-scheduler.log" \
        "$(bin kube-scheduler)" "${common[@]}" --secure-port=20259
    # The conntrack and localhost-nodeport flags keep kube-proxy from changing host sysctls.
    alive kube-proxy || start_proc kube-proxy "$LOGS/kube-proxy.log" "$(bin kube-proxy)" \
        --kubeconfig="$STATE/admin.kubeconfig" --hostname-override="$NODE_NAME" --proxy-mode=iptables \
        --cluster-cidr="$POD_CIDR" --metrics-bind-address=127.0.0.1:20249 \
        --healthz-bind-address=127.0.0.1:20256 --oom-score-adj=0 --conntrack-max-per-core=0 \
        --conntrack-tcp-timeout-established=0 --conntrack-tcp-timeout-close-wait=0 \
        --iptables-localhost-nodeports=false
}

kubelet_ready() { curl -fsS --max-time 2 http://127.0.0.1:20248/healthz >/dev/null 2>&1; }

start_kubelet() {
    alive kubelet && return 0
    mkdir -p "$STATE/kubelet" "$STATE/pod-logs"
    cat >"$STATE/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
failCgroupV1: false
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
address: $NODE_IP
port: 20250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 20248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $CERTS/ca.crt}
authorization: {mode: AlwaysAllow}
clusterDNS: [$DNS_IP]
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
podLogsDir: $STATE/pod-logs
failSwapOn: false
oomScoreAdj: 0
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%"}
imageGCHighThresholdPercent: 99
imageGCLowThresholdPercent: 98
EOF
    log "starting kubelet (node $NODE_NAME at $NODE_IP)"
    start_proc kubelet "$LOGS/kubelet.log" "$(bin kubelet)" --config="$STATE/kubelet.yaml" \
        --kubeconfig="$STATE/kubelet.kubeconfig" --root-dir="$STATE/kubelet" --cert-dir="$STATE/kubelet/pki" \
        --hostname-override="$NODE_NAME" --node-ip="$NODE_IP"
}

kc() { "$(bin kubectl)" --kubeconfig="$KUBECONFIG_PATH" "$@"; }

# render FILE: a manifest with its @PLACEHOLDERS@ filled in.
render() {
    sed -e "s#@COREDNS_IMAGE@#$("$ROOT/hack/images.sh" ref coredns)#" \
        -e "s#@RABBITMQ_IMAGE@#$("$ROOT/hack/images.sh" ref rabbitmq)#" \
        -e "s#@RABBITMQ_USER@#$(rabbit_user)#" \
        -e "s#@DNS_IP@#$DNS_IP#" "$1"
}

rabbit_user() {
    buildah --storage-driver overlay inspect --type image --format '{{.OCIv1.Config.User}}' \
        "$("$ROOT/hack/images.sh" ref rabbitmq)" | cut -d: -f1
}

deploy_addons() {
    log "deploying CoreDNS (kube-system) and RabbitMQ (namespace rabbitmq)"
    render "$ROOT/hack/cluster/coredns.yaml" | kc apply -f - >/dev/null
    render "$ROOT/hack/cluster/rabbitmq.yaml" | kc apply -f - >/dev/null
    kc -n kube-system rollout status deployment/coredns --timeout="${READY_TIMEOUT}s" >&2
    kc -n rabbitmq rollout status deployment/rabbitmq --timeout="${READY_TIMEOUT}s" >&2
}

print_exports() {
    printf 'export KUBECONFIG=%q\n' "$KUBECONFIG_PATH"
    printf 'export KUBESAGA_CLUSTER_AMQP_URL=%q\n' "$AMQP_URL_IN_CLUSTER"
    printf 'export PATH=%q:"$PATH"\n' "$STATE/bin"
}

undo_failed_up() {
    local rc=$?
    ((rc != 0)) || return 0
    ((${#STARTED[@]} > 0)) || return 0
    log "up failed (logs: $LOGS); stopping what it started: ${STARTED[*]}"
    cmd_down_locked || true
    return "$rc"
}

cmd_up() {
    local t0
    t0=$(now_ms)
    ensure_host
    ensure_cgroups
    mkdir -p "$STATE" "$PIDS" "$LOGS"
    exec 9>"$STATE/.lock"
    flock -w 600 9 || die "another hack/cluster.sh holds $STATE/.lock"
    build_node_bins
    local all=1 c
    for c in "${COMPONENTS[@]}"; do alive "$c" || all=0; done
    if ((all)) && apiserver_ready && kubelet_ready; then
        log "already running; reusing it ($(($(now_ms) - t0)) ms)"
        print_exports
        return 0
    fi
    trap undo_failed_up EXIT
    # The host as it is before this cluster touches it; `down` restores it and checks it against this.
    if ! alive containerd && ! alive kubelet; then
        python3 "$ROOT/hack/cluster/host_state.py" save "$HOST_RECORD"
        # Host dirs the kubelet and containerd's CNI library insist on (log links, CNI cache, the
        # kubelet's hard-coded device-plugins dir):
        # `down` removes them again if this `up` is what created them.
        : >"$STATE/created-dirs"
        for d in /var/log/containers /var/lib/cni /var/lib/kubelet; do
            [[ -e "$d" ]] || echo "$d" >>"$STATE/created-dirs"
        done
        rm -rf "$STATE/pod-logs"
    fi
    ensure_certs
    kubeconfig "$KUBECONFIG_PATH" admin
    cp "$KUBECONFIG_PATH" "$STATE/admin.kubeconfig"
    kubeconfig "$STATE/kubelet.kubeconfig" kubelet
    ensure_bridge
    start_containerd
    CONTAINERD_ADDRESS="$CONTAINERD_SOCK" "$ROOT/hack/images.sh" import >&2
    start_etcd
    start_apiserver
    wait_for kube-apiserver apiserver_ready kube-apiserver etcd
    start_controllers
    start_kubelet
    wait_for kubelet kubelet_ready kubelet
    # The kubelet answers /healthz before it has registered its Node: wait for the object first
    # (`kubectl wait` on a missing object fails at once), then for Ready.
    kc wait --for=create "node/$NODE_NAME" --timeout="${READY_TIMEOUT}s" >/dev/null
    kc wait --for=condition=Ready "node/$NODE_NAME" --timeout="${READY_TIMEOUT}s" >/dev/null
    deploy_addons
    trap - EXIT
    log "ready in $(($(now_ms) - t0)) ms: node $NODE_NAME, API https://$NODE_IP:$APISERVER_PORT, DNS $DNS_IP, RabbitMQ $AMQP_URL_IN_CLUSTER"
    print_exports
}

cmd_images() {
    alive containerd || die "the cluster is not running; start it with: eval \"\$(hack/cluster.sh up)\""
    CONTAINERD_ADDRESS="$CONTAINERD_SOCK" "$ROOT/hack/images.sh" import kubesaga examples >&2
}

# Stop the pods first, while containerd runs, so that their networks are torn down by the CNI
# plugins (veths, IPAM, masquerade rules) and their mounts and cgroups are released.
remove_pods() {
    alive containerd || return 0
    local crictl
    crictl="$(bin crictl)"
    [[ -x "$crictl" ]] || return 0
    timeout 120 "$crictl" --runtime-endpoint "unix://$CONTAINERD_SOCK" --timeout 60s rmp --all --force >/dev/null 2>&1 ||
        log "crictl rmp failed; the host restore below cleans up what is left"
}

cmd_down_locked() {
    local name
    # Nothing may recreate pods while they are being removed.
    for name in kube-controller-manager kube-scheduler kubelet; do stop_pid "$name" 20; done
    remove_pods
    stop_pid kube-proxy 10
    [[ -x "$(bin kube-proxy)" ]] && "$(bin kube-proxy)" --cleanup >/dev/null 2>&1 || true
    if alive etcd; then stop_pid kube-apiserver 20; else stop_pid kube-apiserver 3; fi
    stop_pid etcd 10
    stop_pid containerd 20
    # Shims outlive containerd by design; after `rmp` none should be left, but make sure.
    pkill -f "containerd-shim-runc-v2 -namespace k8s.io -id .* -address $CONTAINERD_SOCK" 2>/dev/null || true
    rm -rf "$RUN_DIR" "$STATE/cni/ipam"
    find /var/log/containers -maxdepth 1 -type l -lname "$STATE/*" -delete 2>/dev/null || true
    if [[ -f "$STATE/created-dirs" ]]; then
        while read -r d; do rm -rf --one-file-system "${d:?}"; done <"$STATE/created-dirs"
        rm -f "$STATE/created-dirs"
    fi
    if [[ -f "$HOST_RECORD" ]]; then
        local left
        if left="$(python3 "$ROOT/hack/cluster/host_state.py" restore "$HOST_RECORD")"; then
            rm -f "$HOST_RECORD"
        else
            log "the host differs from before \`up\` in ways down could not undo:"
            printf '  %s\n' "$left" >&2
            return 1
        fi
    else
        ip link delete "$BRIDGE" 2>/dev/null || true
    fi
    log "down"
}

cmd_down() {
    [[ -d "$PIDS" ]] || { log "nothing to stop (no $PIDS)"; return 0; }
    [[ "$(id -u)" == 0 ]] || die "hack/cluster.sh down needs root"
    exec 9>"$STATE/.lock"
    flock -w 600 9 || die "another hack/cluster.sh holds $STATE/.lock"
    cmd_down_locked
}

cmd_status() {
    local n=0 up=0 name pid state
    for name in "${COMPONENTS[@]}"; do
        n=$((n + 1))
        if pid="$(pid_of "$name")"; then
            state=running
            case "$name" in
                containerd) containerd_ready || state=starting ;;
                kube-apiserver) apiserver_ready || state=starting ;;
                kubelet) kubelet_ready || state=starting ;;
            esac
            [[ "$state" == running ]] && up=$((up + 1))
            printf '%-24s pid %-8s %s\n' "$name" "$pid" "$state"
        else
            printf '%-24s %s\n' "$name" "not running"
        fi
    done
    ((up == n)) && return 0
    ((up > 0)) && return 1
    return 3
}

cmd_env() {
    cmd_status >/dev/null || die "the cluster is not (fully) running; start it with: eval \"\$(hack/cluster.sh up)\""
    print_exports
}

case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    env) cmd_env ;;
    images) cmd_images ;;
    build)
        ensure_host
        mkdir -p "$STATE" "$LOGS"
        build_node_bins
        "$ROOT/hack/images.sh" build >&2
        ;;
    *)
        awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "${BASH_SOURCE[0]}" >&2
        exit 2
        ;;
esac
