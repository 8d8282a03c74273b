# Shared by hack/testenv.sh and hack/cluster.sh (sourced, not run): logging, processes started
# and stopped by recorded PID + start time, and building pinned Go binaries into the cache.
# The caller sets LOG_PREFIX, STATE (state dir), PIDS (pid files), BIN_DIR (binary cache).
# shellcheck shell=bash

log() { printf '%s: %s\n' "$LOG_PREFIX" "$*" >&2; }
die() {
    printf '%s: error: %s\n' "$LOG_PREFIX" "$*" >&2
    exit 1
}
now_ms() { date +%s%3N; }

# ---------------------------------------------------------------- processes (PID + start time)

# The start time (field 22 of /proc/PID/stat) guards against a recycled PID; a zombie (state Z,
# exited but not yet reaped by init) counts as gone.
proc_start() { sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk '$1 != "Z" {print $20}'; }

pid_write() { # name pid
    mkdir -p "$PIDS"
    printf '%s %s\n' "$2" "$(proc_start "$2")" >"$PIDS/$1.pid"
}

pid_of() { # name -> prints pid if the recorded process still runs
    local f="$PIDS/$1.pid" pid start
    [[ -f "$f" ]] || return 1
    read -r pid start <"$f" || return 1
    [[ -n "${pid:-}" && -n "${start:-}" ]] || return 1
    [[ "$(proc_start "$pid")" == "$start" ]] || return 1
    printf '%s\n' "$pid"
}

alive() { pid_of "$1" >/dev/null; }

stop_pid() { # name [grace-seconds]: TERM, wait, then KILL; only the recorded process
    local name="$1" grace="${2:-15}" pid i
    if pid="$(pid_of "$name")"; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < grace * 10; i++)); do
            alive "$name" || break
            sleep 0.1
        done
        if alive "$name"; then
            log "$name (pid $pid) ignored SIGTERM for ${grace}s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            for ((i = 0; i < 50; i++)); do
                alive "$name" || break
                sleep 0.1
            done
        fi
        log "stopped $name (pid $pid)"
    fi
    rm -f "$PIDS/$name.pid"
}

# start NAME LOGFILE CMD... : detached (own session), no stdio inherited, PID recorded.
STARTED=() # what this invocation started (names), so a failed `up` can undo exactly that

start_proc() {
    local name="$1" logfile="$2"
    shift 2
    STARTED+=("$name")
    mkdir -p "$(dirname "$logfile")"
    # Not a process-group leader here, so setsid(1) calls setsid() itself and $! is the program.
    # fd 9 (the state-dir lock) is closed so the daemons do not hold the lock.
    setsid "$@" </dev/null >"$logfile" 2>&1 9>&- &
    pid_write "$name" "$!"
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

ensure_port_free() { # port what
    if port_busy "$1"; then
        die "port $1 (for $2) on 127.0.0.1 is taken by a process this script did not start; stop it or pick another port (KUBESAGA_TESTENV_*_PORT)"
    fi
}

# ------------------------------------------------------------------------------------ PKI
# Run in the certificate dir with umask 077: a CA, certificates it signs, a service-account key.

SERVING_EXT=$'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth'
CLIENT_EXT=$'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth'

make_ca() { # CN -> ca.key, ca.crt
    openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 -keyout ca.key -out ca.crt \
        -subj "/CN=$1" -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null
}

sign() { # NAME SUBJECT EXTENSIONS -> NAME.key, NAME.crt signed by ca.*
    openssl req -newkey rsa:2048 -nodes -sha256 -keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
    printf '%s\n' "$3" >"$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -sha256 \
        -extfile "$1.ext" -out "$1.crt" 2>/dev/null
    rm -f "$1.csr" "$1.ext" ca.srl
}

make_sa_key() { # -> sa.key, sa.pub (service-account token signing)
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key 2>/dev/null
    openssl pkey -in sa.key -pubout -out sa.pub 2>/dev/null
}

# ----------------------------------------------------------------------------- kubeconfig

# write_kubeconfig FILE NAME SERVER CA CERT KEY: a kubeconfig (mode 600) for one cluster and one
# client certificate, written atomically; NAME names its cluster and context.
write_kubeconfig() {
    local file="$1" name="$2" server="$3" ca="$4" cert="$5" key="$6" user
    user="$name-$(basename "$cert" .crt)"
    (
        umask 077
        cat >"$file.tmp.$$" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: $name
  cluster:
    server: $server
    certificate-authority-data: $(base64 -w0 "$ca")
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 "$cert")
    client-key-data: $(base64 -w0 "$key")
contexts:
- name: $name
  context:
    cluster: $name
    user: $user
    namespace: default
current-context: $name
EOF
    )
    mv -f "$file.tmp.$$" "$file"
}

# ------------------------------------------------------------------------------- packages

# install_packages PKG...: Debian/Ubuntu packages that are missing, with apt-get when root, else
# one message naming the command to run.
install_packages() {
    (($# == 0)) && return 0
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
        log "installing $* with apt-get"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >&2
        apt-get install -y -qq --no-install-recommends "$@" >&2
    else
        die "missing $*: install with \`sudo apt-get install -y $*\` (Debian/Ubuntu)"
    fi
}

# -------------------------------------------------------------------------------- binaries

need_go() {
    local g="${GO:-}"
    if [[ -z "$g" ]]; then
        g="$(command -v go || true)"
        [[ -n "$g" ]] || { [[ -x /usr/local/go/bin/go ]] && g=/usr/local/go/bin/go; }
    fi
    if [[ -z "$g" || ! -x "$g" ]]; then
        printf '%s: error: Go is not installed, and %s is not cached yet.\n' "$LOG_PREFIX" "${1:-a binary}" >&2
        printf '  Install Go >= 1.24 (https://go.dev/doc/install): the binaries are then built once from the\n  Go module proxy and cached in %s.\n' "$BIN_DIR" >&2
        [[ -n "${NO_GO_HINT:-}" ]] && printf '%s\n' "$NO_GO_HINT" >&2
        exit 1
    fi
    GO="$g"
}

mod_version() { # module-dir module-path -> version from the wrapper's go.mod
    awk -v m="$2" '$1 == "require" { $1 = "" ; $0 = $0 }
        $1 == m && $2 ~ /^v/ { print $2; exit }' "$1/go.mod"
}

# build NAME MODDIR PKG VERSION LDFLAGS: go build in the wrapper module, with a heartbeat on stderr.
build_bin() {
    local name="$1" dir="$2" pkg="$3" version="$4" ldflags="$5"
    local out="$BIN_DIR/$name-$version"
    [[ -x "$out" ]] && return 0
    need_go "$name $version"
    mkdir -p "$BIN_DIR" "$STATE/logs"
    local blog="$STATE/logs/build-$name-$version.log" tmp="$out.tmp.$$" start rc=0 pid
    log "building $name $version with $("$GO" env GOVERSION) (one time; cached as $out; log: $blog)"
    [[ "$name" == kube-apiserver ]] && log "  kube-apiserver takes ~3-5 min and ~2 GB of RAM on 2 cores"
    start=$(date +%s)
    (
        cd "$dir"
        exec env GOFLAGS=-mod=mod CGO_ENABLED=0 "$GO" build -v -p "${KUBESAGA_BUILD_JOBS:-2}" \
            -trimpath -ldflags="$ldflags" -o "$tmp" "$pkg"
    ) >"$blog" 2>&1 &
    pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        for ((i = 0; i < 150; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "  still building $name $version: $(($(date +%s) - start))s, $(grep -cv '^go: ' "$blog" || true) packages compiled"
        fi
    done
    wait "$pid" || rc=$?
    if ((rc != 0)); then
        rm -f "$tmp"
        tail -n 30 "$blog" >&2 || true
        die "building $name $version failed (exit $rc); full log: $blog"
    fi
    mv -f "$tmp" "$out"
    log "built $name $version in $(($(date +%s) - start))s -> $out"
}

