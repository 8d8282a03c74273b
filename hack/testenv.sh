#!/usr/bin/env bash
# kubesaga local test platform: a real etcd + kube-apiserver (envtest-style, no kubelet) and a
# real RabbitMQ node, all on 127.0.0.1, all started and stopped by this script (by PID).
#
#   eval "$(hack/testenv.sh up)"   start (or reuse) the platform; stdout carries only `export` lines
#   hack/testenv.sh down           stop exactly the processes `up` started
#   hack/testenv.sh status         say what runs (exit 0: all ready, 1: partly, 3: nothing)
#   hack/testenv.sh build          build and cache kube-apiserver, etcd, helm and promtool (no start)
#   hack/testenv.sh prepare        only what `up` needs: kube-apiserver and etcd (no start)
#   hack/testenv.sh helm-path      print the path of the cached helm v3 binary (builds it if needed)
#   hack/testenv.sh promtool-path  print the path of the cached promtool (builds it if needed; the
#                                  chart's alerts are checked with `promtool check rules`)
#   hack/testenv.sh env            print the exports of a running platform (no start)
#   hack/testenv.sh restart-broker restart RabbitMQ of the running platform, keeping its data
#                                  (the whole node stops and starts); for broker-restart tests
#   hack/testenv.sh restart-apiserver  restart kube-apiserver in place (same port, certificates, etcd):
#                                  watches end, connections reset, requests fail until it is ready
#   hack/testenv.sh restart-etcd   restart etcd in place, keeping its data (the apiserver stays up
#                                  and answers 5xx / times out until etcd is back)
#   hack/testenv.sh restart-control-plane  both at once: apiserver and etcd down, then up again
#                                  with the same data (a control-plane node restarting)
#   hack/testenv.sh rabbitmqctl ARGS...  rabbitmqctl on the platform's node (users, permissions)
#
# Environment:
#   KUBEBUILDER_ASSETS      folder holding kube-apiserver and etcd (envtest convention); else they are
#                           built once from the Go module proxy and cached in KUBESAGA_BIN_DIR.
#   KUBESAGA_USE_EXISTING=1 start nothing; `up` re-exports the caller's KUBECONFIG and KUBESAGA_AMQP_URL.
#   KUBESAGA_TESTENV_DIR    state dir (default ~/.cache/kubesaga/testenv)
#   KUBESAGA_BIN_DIR        binary cache (default ~/.cache/kubesaga/bin)
#   KUBESAGA_TESTENV_{ETCD,APISERVER,AMQP,EPMD}_PORT   ports (defaults 22379, 26443, 29672, 24369: below
#                           the kernel's ephemeral range, so a restarted broker cannot find its port taken
#                           as the source port of some outgoing connection)
#   GO                      go binary (default: `go` on PATH, else /usr/local/go/bin/go)
#   KUBESAGA_TESTENV_STARTED_FILE  `up` writes 1 there if it started any process (the caller then
#                           owns the platform and should `down` it), 0 if it only reused.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODS="$ROOT/hack/testenv"
STATE="${KUBESAGA_TESTENV_DIR:-$HOME/.cache/kubesaga/testenv}"
BIN_DIR="${KUBESAGA_BIN_DIR:-$HOME/.cache/kubesaga/bin}"

ETCD_PORT="${KUBESAGA_TESTENV_ETCD_PORT:-22379}"
ETCD_PEER_PORT="$((ETCD_PORT + 1))"
APISERVER_PORT="${KUBESAGA_TESTENV_APISERVER_PORT:-26443}"
AMQP_PORT="${KUBESAGA_TESTENV_AMQP_PORT:-29672}"
RABBIT_DIST_PORT="$((AMQP_PORT + 1))"
EPMD_PORT="${KUBESAGA_TESTENV_EPMD_PORT:-24369}"

AMQP_USER=kubesaga
AMQP_PASS=kubesaga-test
AMQP_VHOST=kubesaga
RABBIT_NODENAME=kubesaga-testenv@localhost
RABBIT_LIB=/usr/lib/rabbitmq/bin

READY_TIMEOUT="${KUBESAGA_TESTENV_READY_TIMEOUT:-90}"

CERTS="$STATE/certs"
PIDS="$STATE/pids"
LOGS="$STATE/logs"
RS="$STATE/rabbitmq"
KUBECONFIG_PATH="$STATE/kubeconfig"
AMQP_URL="amqp://$AMQP_USER:$AMQP_PASS@127.0.0.1:$AMQP_PORT/$AMQP_VHOST"

LOG_PREFIX=testenv
NO_GO_HINT="  Or set KUBEBUILDER_ASSETS to a folder holding kube-apiserver and etcd
  (e.g. \`KUBEBUILDER_ASSETS=\$(setup-envtest use -p path)\`), or use a cluster and broker you already have:
  KUBESAGA_USE_EXISTING=1 KUBECONFIG=... KUBESAGA_AMQP_URL=amqp://user:pass@host:5672/vhost"
# shellcheck source=hack/lib/common.sh
source "$ROOT/hack/lib/common.sh"

KUBE_VERSION="$(mod_version "$MODS/kube-apiserver" k8s.io/kubernetes)"
ETCD_VERSION="$(mod_version "$MODS/etcd" go.etcd.io/etcd/server/v3)"
HELM_VERSION="$(mod_version "$MODS/helm" helm.sh/helm/v3)"
PROMTOOL_VERSION="$(mod_version "$MODS/promtool" github.com/prometheus/prometheus)"
[[ -n "$KUBE_VERSION" && -n "$ETCD_VERSION" && -n "$HELM_VERSION" && -n "$PROMTOOL_VERSION" ]] ||
    die "cannot read the pinned versions from $MODS/*/go.mod"

build_kube_apiserver() {
    local v="$KUBE_VERSION" minor
    minor="$(cut -d. -f2 <<<"$v")"
    local pkgv=k8s.io/component-base/version
    build_bin kube-apiserver "$MODS/kube-apiserver" . "$v" \
        "-s -w -X $pkgv.gitVersion=$v -X $pkgv.gitMajor=1 -X $pkgv.gitMinor=$minor -X $pkgv.gitTreeState=clean -X $pkgv.buildDate=1970-01-01T00:00:00Z"
}

build_etcd() {
    build_bin etcd "$MODS/etcd" . "$ETCD_VERSION" "-s -w"
}

build_helm() {
    local v="$HELM_VERSION"
    build_bin helm "$MODS/helm" helm.sh/helm/v3/cmd/helm "$v" \
        "-s -w -X helm.sh/helm/v3/internal/version.version=$v -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
}

# Prometheus v3 publishes its Go module as v0.3xx (v0.316.0 is v3.16.0).
build_promtool() {
    build_bin promtool "$MODS/promtool" github.com/prometheus/prometheus/cmd/promtool \
        "$PROMTOOL_VERSION" "-s -w"
}

resolve_k8s_bins() {
    if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
        APISERVER_BIN="$KUBEBUILDER_ASSETS/kube-apiserver"
        ETCD_BIN="$KUBEBUILDER_ASSETS/etcd"
        [[ -x "$APISERVER_BIN" && -x "$ETCD_BIN" ]] ||
            die "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS does not hold executable kube-apiserver and etcd"
        return 0
    fi
    build_etcd
    build_kube_apiserver
    APISERVER_BIN="$BIN_DIR/kube-apiserver-$KUBE_VERSION"
    ETCD_BIN="$BIN_DIR/etcd-$ETCD_VERSION"
}

ensure_tools() {
    local missing=()
    command -v openssl >/dev/null || missing+=(openssl)
    command -v curl >/dev/null || missing+=(curl)
    [[ -x "$RABBIT_LIB/rabbitmq-server" ]] || missing+=(rabbitmq-server)
    install_packages "${missing[@]}"
    [[ -x "$RABBIT_LIB/rabbitmq-server" ]] || die "rabbitmq-server is installed but $RABBIT_LIB/rabbitmq-server is missing"
}

# ----------------------------------------------------------------------------------- certs

ensure_certs() {
    [[ -f "$CERTS/.complete" ]] && return 0
    log "generating certificates in $CERTS"
    rm -rf "$CERTS"
    mkdir -p "$CERTS"
    (
        cd "$CERTS"
        umask 077
        make_ca kubesaga-testenv-ca
        sign apiserver /CN=kube-apiserver "$SERVING_EXT
subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,IP:10.0.0.1"
        sign client /O=system:masters/CN=kubesaga-testenv-admin "$CLIENT_EXT"
        make_sa_key
        touch .complete
    )
}

# ---------------------------------------------------------------------------- components

etcd_ready() { curl -fsS --max-time 1 "http://127.0.0.1:$ETCD_PORT/health" 2>/dev/null | grep -q '"health":"true"'; }

apiserver_ready() {
    [[ "$(curl -sS --max-time 2 --cacert "$CERTS/ca.crt" --cert "$CERTS/client.crt" \
        --key "$CERTS/client.key" "https://127.0.0.1:$APISERVER_PORT/readyz" 2>/dev/null)" == ok ]]
}

# AMQP handshake: after the 8-byte protocol header the broker answers with a method frame (type 1,
# Connection.Start). The listener opens only once the node has booted (vhost and user included).
amqp_ready() {
    local b
    b="$(
        exec 2>/dev/null
        exec 3<>"/dev/tcp/127.0.0.1/$AMQP_PORT" || exit 1
        printf 'AMQP\x00\x00\x09\x01' >&3
        timeout 2 head -c 1 <&3 | od -An -tu1 | tr -d ' \n'
    )" || return 1
    [[ "$b" == 1 ]]
}

epmd_ready() { port_busy "$EPMD_PORT"; }

start_epmd() {
    alive epmd && return 0
    local epmd_bin
    epmd_bin="$(command -v epmd || find /usr/lib/erlang -path '*/erts-*/bin/epmd' -print -quit)"
    [[ -n "$epmd_bin" ]] || die "epmd not found (it comes with erlang-base, a dependency of rabbitmq-server)"
    ensure_port_free "$EPMD_PORT" epmd
    log "starting epmd on 127.0.0.1:$EPMD_PORT"
    start_proc epmd "$LOGS/epmd.log" "$epmd_bin" -address 127.0.0.1 -port "$EPMD_PORT"
}

# Environment for the RabbitMQ node and its CLI tools: everything under the state dir.
rabbit_env() {
    export HOME="$RS/home" # .erlang.cookie lives here, shared by the node and the CLI tools
    export RABBITMQ_CONF_ENV_FILE="$RS/rabbitmq-env.conf"
    export RABBITMQ_NODENAME="$RABBIT_NODENAME" RABBITMQ_USE_LONGNAME=false
    export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT="$AMQP_PORT"
    export RABBITMQ_DIST_PORT="$RABBIT_DIST_PORT"
    export RABBITMQ_MNESIA_BASE="$RS/mnesia" RABBITMQ_LOG_BASE="$RS/log"
    export RABBITMQ_CONFIG_FILE="$RS/rabbitmq.conf"
    export RABBITMQ_ADVANCED_CONFIG_FILE="$RS/advanced.config"
    export RABBITMQ_ENABLED_PLUGINS_FILE="$RS/enabled_plugins"
    export RABBITMQ_PID_FILE="$RS/rabbit.pid"
    export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
    export ERL_EPMD_PORT="$EPMD_PORT" ERL_EPMD_ADDRESS=127.0.0.1
}

# start_rabbit [keep]: a fresh node, or with `keep` the same node and data (restart-broker).
start_rabbit() {
    alive rabbitmq && return 0
    stop_pid rabbitmq-wrapper 5
    ensure_port_free "$AMQP_PORT" "RabbitMQ AMQP"
    ensure_port_free "$RABBIT_DIST_PORT" "RabbitMQ distribution"
    if [[ "${1:-}" == keep ]]; then
        log "starting RabbitMQ node $RABBIT_NODENAME on 127.0.0.1:$AMQP_PORT (data kept)"
        rm -f "$RS/rabbit.pid"
    else
        log "starting RabbitMQ node $RABBIT_NODENAME on 127.0.0.1:$AMQP_PORT (fresh data)"
        rm -rf "$RS/mnesia" "$RS/log" "$RS/rabbit.pid"
    fi
    mkdir -p "$RS/home" "$RS/mnesia" "$RS/log"
    if [[ ! -s "$RS/home/.erlang.cookie" ]]; then
        (umask 077 && od -An -N20 -tx1 /dev/urandom | tr -d ' \n' >"$RS/home/.erlang.cookie")
        chmod 400 "$RS/home/.erlang.cookie"
    fi
    : >"$RS/rabbitmq-env.conf"
    echo '[].' >"$RS/enabled_plugins"
    cat >"$RS/rabbitmq.conf" <<EOF
# Generated by hack/testenv.sh: a throwaway test broker on 127.0.0.1 only.
default_vhost = $AMQP_VHOST
default_user = $AMQP_USER
default_pass = $AMQP_PASS
default_user_tags.administrator = true
default_permissions.configure = .*
default_permissions.read = .*
default_permissions.write = .*
log.console = false
log.file.level = info
EOF
    (
        rabbit_env
        cd "$RS"
        start_proc rabbitmq-wrapper "$LOGS/rabbitmq-wrapper.log" "$RABBIT_LIB/rabbitmq-server"
    )
    STARTED+=(rabbitmq-wrapper)
}

record_rabbit_beam() {
    local pid
    alive rabbitmq && return 0
    [[ -s "$RS/rabbit.pid" ]] || return 1
    pid="$(tr -dc '0-9' <"$RS/rabbit.pid")"
    [[ -n "$pid" && -d "/proc/$pid" ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "beam.*$RS" || return 1
    pid_write rabbitmq "$pid"
}

# start_etcd [keep]: fresh data unless the apiserver still runs on it, or `keep` (the restarts).
start_etcd() {
    alive etcd && return 0
    ensure_port_free "$ETCD_PORT" "etcd client"
    ensure_port_free "$ETCD_PEER_PORT" "etcd peer"
    if [[ "${1:-}" != keep ]] && ! alive kube-apiserver; then rm -rf "$STATE/etcd"; fi
    mkdir -p "$STATE/etcd"
    log "starting etcd $("$ETCD_BIN" --version 2>/dev/null | head -n1 | awk '{print $3}') on 127.0.0.1:$ETCD_PORT"
    start_proc etcd "$LOGS/etcd.log" "$ETCD_BIN" \
        --name=kubesaga-testenv --data-dir="$STATE/etcd" \
        --listen-client-urls="http://127.0.0.1:$ETCD_PORT" \
        --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
        --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-cluster="kubesaga-testenv=http://127.0.0.1:$ETCD_PEER_PORT" \
        --unsafe-no-fsync --log-level=warn
}

start_apiserver() {
    alive kube-apiserver && return 0
    ensure_port_free "$APISERVER_PORT" kube-apiserver
    mkdir -p "$STATE/apiserver-certs"
    log "starting kube-apiserver on https://127.0.0.1:$APISERVER_PORT"
    start_proc kube-apiserver "$LOGS/kube-apiserver.log" "$APISERVER_BIN" \
        --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
        --cert-dir="$STATE/apiserver-certs" \
        --tls-cert-file="$CERTS/apiserver.crt" --tls-private-key-file="$CERTS/apiserver.key" \
        --client-ca-file="$CERTS/ca.crt" \
        --secure-port="$APISERVER_PORT" --bind-address=127.0.0.1 --advertise-address=127.0.0.1 \
        --service-account-issuer=https://kubernetes.default.svc.cluster.local \
        --service-account-key-file="$CERTS/sa.pub" \
        --service-account-signing-key-file="$CERTS/sa.key" \
        --service-cluster-ip-range=10.0.0.0/24 \
        --authorization-mode=RBAC --allow-privileged=true \
        --disable-admission-plugins=ServiceAccount
}

# wait_ready NAME CHECK-FUNCTION PROCESS-NAME...: poll CHECK every 0.1 s until it passes; fail fast
# (with the log's tail) if a process we started has died, fail after READY_TIMEOUT seconds.
wait_ready() {
    local what="$1" check="$2" p deadline
    shift 2
    deadline=$(($(date +%s) + READY_TIMEOUT))
    until "$check"; do
        for p in "$@"; do
            if ! alive "$p"; then
                tail -n 25 "$LOGS/$p.log" >&2 2>/dev/null || true
                [[ "$p" == rabbitmq* ]] && tail -n 25 "$RS/log/$RABBIT_NODENAME.log" >&2 2>/dev/null
                die "$p exited before $what became ready (logs: $LOGS)"
            fi
        done
        (($(date +%s) < deadline)) || die "$what not ready after ${READY_TIMEOUT}s (logs: $LOGS)"
        sleep 0.1
    done
}

print_exports() {
    printf 'export KUBECONFIG=%q\n' "$1"
    printf 'export KUBESAGA_AMQP_URL=%q\n' "$2"
}

# On a failed `up`, stop what this invocation started (and nothing that was already running).
undo_failed_up() {
    local rc=$? name
    ((rc != 0)) || return 0
    ((${#STARTED[@]} > 0)) || return 0
    log "up failed; stopping what it started: ${STARTED[*]}"
    for name in kube-apiserver etcd rabbitmq-wrapper epmd; do
        [[ " ${STARTED[*]} " == *" $name "* ]] || continue
        case "$name" in
            rabbitmq-wrapper) stop_rabbit ;;
            kube-apiserver) if alive etcd; then stop_pid "$name" 20; else stop_pid "$name" 3; fi ;;
            *) stop_pid "$name" 10 ;;
        esac
    done
    return "$rc"
}

# --------------------------------------------------------------------------------- commands

cmd_up() {
    if [[ "${KUBESAGA_USE_EXISTING:-}" == 1 ]]; then
        [[ -n "${KUBECONFIG:-}" ]] || die "KUBESAGA_USE_EXISTING=1 needs KUBECONFIG (a kubeconfig of your cluster)"
        [[ -n "${KUBESAGA_AMQP_URL:-}" ]] || die "KUBESAGA_USE_EXISTING=1 needs KUBESAGA_AMQP_URL (amqp://user:pass@host:port/vhost)"
        log "KUBESAGA_USE_EXISTING=1: starting nothing, using KUBECONFIG and KUBESAGA_AMQP_URL as given"
        print_exports "$KUBECONFIG" "$KUBESAGA_AMQP_URL"
        return 0
    fi
    local t0 epmd_was_alive=1
    t0=$(now_ms)
    trap undo_failed_up EXIT
    mkdir -p "$STATE" "$PIDS" "$LOGS" "$RS"
    exec 9>"$STATE/.lock"
    flock -w 300 9 || die "another hack/testenv.sh holds $STATE/.lock"
    ensure_tools
    resolve_k8s_bins
    ensure_certs
    write_kubeconfig "$KUBECONFIG_PATH" kubesaga-testenv "https://127.0.0.1:$APISERVER_PORT" \
        "$CERTS/ca.crt" "$CERTS/client.crt" "$CERTS/client.key"

    # The RabbitMQ node is registered with our epmd: if epmd is gone, restart the node too.
    alive epmd || epmd_was_alive=0
    if ((epmd_was_alive == 0)) && { alive rabbitmq || alive rabbitmq-wrapper; }; then
        log "epmd is gone; restarting the RabbitMQ node"
        stop_rabbit
    fi
    start_epmd
    start_etcd
    wait_ready epmd epmd_ready epmd
    start_rabbit
    start_apiserver
    wait_ready etcd etcd_ready etcd
    wait_ready kube-apiserver apiserver_ready kube-apiserver etcd
    if alive rabbitmq; then
        wait_ready RabbitMQ amqp_ready rabbitmq
    else
        wait_ready RabbitMQ amqp_ready rabbitmq-wrapper epmd
        record_rabbit_beam || die "RabbitMQ is up but wrote no pid file at $RS/rabbit.pid"
    fi
    log "ready in $(($(now_ms) - t0)) ms: kube-apiserver https://127.0.0.1:$APISERVER_PORT, etcd 127.0.0.1:$ETCD_PORT, RabbitMQ 127.0.0.1:$AMQP_PORT (vhost $AMQP_VHOST)"
    print_exports "$KUBECONFIG_PATH" "$AMQP_URL"
    # 1 when this call started any process: whoever ran it owns the platform and should `down` it.
    if [[ -n "${KUBESAGA_TESTENV_STARTED_FILE:-}" ]]; then
        echo "$(((${#STARTED[@]} > 0) ? 1 : 0))" >"$KUBESAGA_TESTENV_STARTED_FILE"
    fi
}

stop_rabbit() {
    local pid
    # If `up` failed before it recorded the node's beam pid, take it from the node's pid file now
    # (only while our wrapper runs, so the file belongs to this run).
    if alive rabbitmq-wrapper; then record_rabbit_beam || true; fi
    if pid="$(pid_of rabbitmq)" && epmd_ready; then
        log "stopping RabbitMQ node $RABBIT_NODENAME (rabbitmqctl stop)"
        (
            rabbit_env
            cd "$RS"
            timeout 30 "$RABBIT_LIB/rabbitmqctl" -q stop "$RS/rabbit.pid"
        ) >"$LOGS/rabbitmqctl-stop.log" 2>&1 || log "rabbitmqctl stop failed (see $LOGS/rabbitmqctl-stop.log); signalling pid $pid"
    fi
    stop_pid rabbitmq 20
    stop_pid rabbitmq-wrapper 5
    [[ -n "${pid:-}" ]] && log "RabbitMQ node $RABBIT_NODENAME (pid $pid) is down"
    return 0
}

cmd_down() {
    if [[ ! -d "$PIDS" ]]; then
        log "nothing to stop (no $PIDS)"
        return 0
    fi
    mkdir -p "$LOGS"
    exec 9>"$STATE/.lock"
    flock -w 300 9 || die "another hack/testenv.sh holds $STATE/.lock"
    # RabbitMQ stops alongside the apiserver and then etcd (the apiserver's graceful shutdown
    # needs etcd); epmd goes last, after the node has left it. Each by its own PID.
    local rabbit
    stop_rabbit &
    rabbit=$!
    # Without etcd the apiserver's graceful shutdown hangs; do not wait long for it then.
    if alive etcd; then stop_pid kube-apiserver 20; else stop_pid kube-apiserver 3; fi
    stop_pid etcd 10
    wait "$rabbit"
    stop_pid epmd 5
    log "down"
}

cmd_status() {
    local n=0 up=0 name pid state
    for name in etcd kube-apiserver epmd rabbitmq; do
        n=$((n + 1))
        if pid="$(pid_of "$name")"; then
            case "$name" in
                etcd) etcd_ready && state=ready || state=starting ;;
                kube-apiserver) apiserver_ready && state=ready || state=starting ;;
                epmd) epmd_ready && state=ready || state=starting ;;
                rabbitmq) amqp_ready && state=ready || state=starting ;;
            esac
            [[ "$state" == ready ]] && up=$((up + 1))
            printf '%-15s pid %-8s %s\n' "$name" "$pid" "$state"
        else
            printf '%-15s %s\n' "$name" "not running"
        fi
    done
    if ((up == n)); then
        printf 'KUBECONFIG=%s\nKUBESAGA_AMQP_URL=%s\n' "$KUBECONFIG_PATH" "$AMQP_URL"
        return 0
    fi
    for name in etcd kube-apiserver epmd rabbitmq rabbitmq-wrapper; do
        alive "$name" && return 1
    done
    return 3
}

cmd_env() {
    cmd_status >/dev/null || die "the platform is not (fully) running; start it with: eval \"\$(hack/testenv.sh up)\""
    print_exports "$KUBECONFIG_PATH" "$AMQP_URL"
}

# Restart the broker node, keeping its data: clients lose their connections, durable queues and
# persistent messages survive (unlike `down` + `up`, which starts RabbitMQ with fresh data).
cmd_restart_broker() {
    pid_of rabbitmq >/dev/null || die "no RabbitMQ node of this platform runs; start it with: eval \"\$(hack/testenv.sh up)\""
    mkdir -p "$LOGS"
    exec 9>"$STATE/.lock"
    flock -w 300 9 || die "another hack/testenv.sh holds $STATE/.lock"
    local t0
    t0=$(now_ms)
    # A whole-node restart, as a real broker restart is: connections drop, durable queues and
    # persistent messages survive. (rabbitmqctl stop_app/start_app in place proved fragile: a
    # start_app that fails half way leaves mnesia running and the node unusable.)
    stop_rabbit
    start_rabbit keep
    wait_ready RabbitMQ amqp_ready rabbitmq-wrapper epmd
    record_rabbit_beam || die "RabbitMQ is up but wrote no pid file at $RS/rabbit.pid"
    log "restart-broker: RabbitMQ is back in $(($(now_ms) - t0)) ms"
}

# The control-plane restarts: each process stops (SIGTERM, by its PID) and starts again on the same
# port with the same certificates and etcd data, so clients see what an apiserver upgrade or a lost
# control-plane node does to them: reset connections, ended watches (410 Gone when the watch cache
# was rebuilt), 5xx or timeouts while it is down, then the same objects and resourceVersions.
restart_control_plane() {
    local what="$1" t0
    pid_of kube-apiserver >/dev/null && pid_of etcd >/dev/null ||
        die "no kube-apiserver and etcd of this platform run; start them with: eval \"\$(hack/testenv.sh up)\""
    mkdir -p "$LOGS"
    exec 9>"$STATE/.lock"
    flock -w 300 9 || die "another hack/testenv.sh holds $STATE/.lock"
    resolve_k8s_bins
    t0=$(now_ms)
    # A stopping apiserver drains for a while when etcd is up; that is the graceful restart.
    [[ "$what" == etcd ]] || stop_pid kube-apiserver 20
    [[ "$what" == apiserver ]] || stop_pid etcd 10
    log "restart-$what: stopped in $(($(now_ms) - t0)) ms"
    [[ "$what" == apiserver ]] || start_etcd keep
    [[ "$what" == apiserver ]] || wait_ready etcd etcd_ready etcd
    [[ "$what" == etcd ]] || start_apiserver
    wait_ready kube-apiserver apiserver_ready kube-apiserver etcd
    log "restart-$what: back in $(($(now_ms) - t0)) ms"
}

# rabbitmqctl of this platform's node: its cookie, node name and ports come from rabbit_env.
cmd_rabbitmqctl() {
    pid_of rabbitmq >/dev/null || die "no RabbitMQ node of this platform runs; start it with: eval \"\$(hack/testenv.sh up)\""
    rabbit_env
    cd "$RS"
    exec "$RABBIT_LIB/rabbitmqctl" "$@"
}

cmd_build() {
    if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
        log "KUBEBUILDER_ASSETS is set: using kube-apiserver and etcd from $KUBEBUILDER_ASSETS"
        resolve_k8s_bins
    else
        build_etcd
        build_kube_apiserver
    fi
    build_helm
    build_promtool
    log "binaries: $BIN_DIR (kube-apiserver $KUBE_VERSION, etcd $ETCD_VERSION, helm $HELM_VERSION, promtool $PROMTOOL_VERSION)"
}

# What `up` needs, without starting anything: kube-apiserver and etcd (KUBEBUILDER_ASSETS or cache,
# built if missing). Quick and silent once cached; the pytest session calls it before any test runs
# so that a first build is not charged to one test's timeout.
cmd_prepare() {
    [[ "${KUBESAGA_USE_EXISTING:-}" == 1 ]] && return 0
    resolve_k8s_bins
}

cmd_helm_path() {
    build_helm
    printf '%s\n' "$BIN_DIR/helm-$HELM_VERSION"
}

cmd_promtool_path() {
    build_promtool
    printf '%s\n' "$BIN_DIR/promtool-$PROMTOOL_VERSION"
}

case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    env) cmd_env ;;
    restart-broker) cmd_restart_broker ;;
    restart-apiserver) restart_control_plane apiserver ;;
    restart-etcd) restart_control_plane etcd ;;
    restart-control-plane) restart_control_plane control-plane ;;
    rabbitmqctl) shift; cmd_rabbitmqctl "$@" ;;
    build) cmd_build ;;
    prepare) cmd_prepare ;;
    helm-path) cmd_helm_path ;;
    promtool-path) cmd_promtool_path ;;
    *)
        awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "${BASH_SOURCE[0]}" >&2
        exit 2
        ;;
esac
