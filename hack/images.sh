#!/usr/bin/env bash
# Container images for kubesaga, built daemonlessly (buildah, no Docker engine, no registry) and
# optionally imported into containerd for hack/cluster.sh's node.
#
#   hack/images.sh build [IMAGE...]    build into buildah's store (default: every image)
#   hack/images.sh import [IMAGE...]   build if needed, then import into containerd (namespace k8s.io);
#                                      default: the images the node runs (all but base)
#   hack/images.sh list                the images and their references
#
# Images:
#   kubesaga   the project's image from ./Dockerfile (operator + worker; the package only)
#   examples   the examples' handler image from examples/Dockerfile, FROM the kubesaga image
#              (the pattern for your own handler images)
#   base       the Python base image of the two above: Debian bookworm's python3 from mmdebstrap
#              (the Dockerfile's default base, python:3.12-slim-bookworm, needs a registry)
#   rabbitmq   Debian's rabbitmq-server, for the node's broker pod
#   coredns    CoreDNS built from the Go module proxy, the node's cluster DNS
#   pause      the pods' infrastructure container (a static Go binary of ours)
#
# Environment:
#   KUBESAGA_PYTHON_IMAGE   build the kubesaga image FROM this image instead of the local `base`
#                           (e.g. python:3.12-slim-bookworm where a registry is reachable)
#   CONTAINERD_ADDRESS      containerd socket for `import` (default /run/containerd/containerd.sock)
#   KUBESAGA_IMAGES_DIR     cache of the Debian root filesystems (default ~/.cache/kubesaga/images)
#   KUBESAGA_BIN_DIR        Go binary cache (default ~/.cache/kubesaga/bin)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${KUBESAGA_IMAGES_DIR:-$HOME/.cache/kubesaga/images}"
BIN_DIR="${KUBESAGA_BIN_DIR:-$HOME/.cache/kubesaga/bin}"
CONTAINERD_ADDRESS="${CONTAINERD_ADDRESS:-/run/containerd/containerd.sock}"
LOG_PREFIX=images
# shellcheck source=hack/lib/common.sh
source "$ROOT/hack/lib/common.sh"

VERSION="$(awk -F'"' '/^appVersion:/ {print $2}' "$ROOT/helm/kubesaga/Chart.yaml")"
[[ -n "$VERSION" ]] || die "cannot read appVersion from helm/kubesaga/Chart.yaml"
COREDNS_VERSION="$(mod_version "$ROOT/hack/testenv/coredns" github.com/coredns/coredns)"
[[ -n "$COREDNS_VERSION" ]] || die "cannot read the CoreDNS version from hack/testenv/coredns/go.mod"
SUITE=bookworm

# References as containerd and the kubelet spell them: the chart's default image `kubesaga:<appVersion>`
# is docker.io/library/kubesaga:<appVersion> once normalised, so a plain `helm install` finds it.
declare -A REF=(
    [kubesaga]="docker.io/library/kubesaga:$VERSION"
    [examples]="docker.io/library/kubesaga-examples:$VERSION"
    [base]="localhost/kubesaga-python:3.11-$SUITE"
    [rabbitmq]="localhost/rabbitmq:$SUITE"
    [coredns]="localhost/coredns:${COREDNS_VERSION#v}"
    [pause]="localhost/pause:3.10"
)
ALL=(pause coredns rabbitmq base kubesaga examples)
NODE=(pause coredns rabbitmq kubesaga examples) # what the node runs (base is only built upon)

BUILDAH=(buildah --storage-driver overlay)

ensure_tools() {
    local missing=()
    command -v buildah >/dev/null || missing+=(buildah)
    command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
    install_packages "${missing[@]}"
}

[[ "$(id -u)" == 0 ]] || die "building images with buildah and mmdebstrap here needs root"

have_image() { "${BUILDAH[@]}" inspect --type image "$1" >/dev/null 2>&1; }
image_id() { "${BUILDAH[@]}" inspect --type image --format '{{.FromImageID}}' "$1"; }

# rootfs NAME PACKAGES: a Debian minbase root filesystem tarball, cached (about 1-2 min each).
rootfs() {
    local name="$1" packages="$2" out="$STATE/$1-rootfs.tar" tmp="$STATE/$1-rootfs.partial.tar" t0
    [[ -f "$out" && -s "$out" ]] && return 0
    mkdir -p "$STATE"
    t0=$(date +%s)
    log "mmdebstrap $SUITE minbase + $packages (one time; cached as $out)"
    # No mirror argument: the host's apt sources (whatever mirror or proxy this machine uses).
    rm -rf "$tmp" "$out"
    mmdebstrap --quiet --format=tar --variant=minbase --include="$packages" \
        --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        "$SUITE" "$tmp" >&2
    mv -f "$tmp" "$out"
    log "root filesystem $name in $(($(date +%s) - t0))s"
}

# from_rootfs REF TARBALL CONFIG-ARGS...: an image whose single layer is the tarball.
from_rootfs() {
    local ref="$1" tar="$2" c
    shift 2
    c="$("${BUILDAH[@]}" from --pull=never scratch)"
    "${BUILDAH[@]}" add --quiet "$c" "$tar" / >/dev/null
    "${BUILDAH[@]}" config --os linux --arch amd64 \
        --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --env LANG=C.UTF-8 "$@" "$c"
    "${BUILDAH[@]}" commit --quiet --rm "$c" "$ref" >/dev/null
}

build_base() {
    have_image "${REF[base]}" && return 0
    rootfs python python3,python3-venv,python3-pip,python-is-python3,ca-certificates
    from_rootfs "${REF[base]}" "$STATE/python-rootfs.tar" --cmd '["/usr/bin/python3"]'
}

build_rabbitmq() {
    have_image "${REF[rabbitmq]}" && return 0
    rootfs rabbitmq rabbitmq-server,ca-certificates
    # The package's own user (a system UID assigned by its postinst) runs the node.
    local uid
    uid="$(tar -xOf "$STATE/rabbitmq-rootfs.tar" ./etc/passwd | awk -F: '$1 == "rabbitmq" {print $3 ":" $4}')"
    [[ -n "$uid" ]] || die "the rabbitmq root filesystem has no rabbitmq user"
    from_rootfs "${REF[rabbitmq]}" "$STATE/rabbitmq-rootfs.tar" --user "$uid" \
        --env HOME=/var/lib/rabbitmq --label "io.kubesaga.rabbitmq-user=$uid" \
        --entrypoint '["/usr/lib/rabbitmq/bin/rabbitmq-server"]' --port 5672
}

# from_binary REF BINARY ENTRYPOINT-JSON USER: FROM scratch, one static binary.
from_binary() {
    local c
    c="$("${BUILDAH[@]}" from --pull=never scratch)"
    "${BUILDAH[@]}" copy --quiet "$c" "$2" "/$(basename "$2")" >/dev/null
    "${BUILDAH[@]}" config --os linux --arch amd64 --entrypoint "$3" --user "$4" "$c"
    "${BUILDAH[@]}" commit --quiet --rm "$c" "$1" >/dev/null
}

build_pause() {
    have_image "${REF[pause]}" && return 0
    need_go pause
    local dir
    dir="$(mktemp -d)"
    (cd "$ROOT/hack/testenv/pause" && CGO_ENABLED=0 "$GO" build -trimpath -ldflags='-s -w' -o "$dir/pause" .)
    from_binary "${REF[pause]}" "$dir/pause" '["/pause"]' 65535:65535
    rm -rf "$dir"
}

build_coredns() {
    have_image "${REF[coredns]}" && return 0
    build_bin coredns "$ROOT/hack/testenv/coredns" github.com/coredns/coredns "$COREDNS_VERSION" \
        "-s -w -X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION"
    local dir
    dir="$(mktemp -d)"
    cp "$BIN_DIR/coredns-$COREDNS_VERSION" "$dir/coredns"
    from_binary "${REF[coredns]}" "$dir/coredns" '["/coredns"]' 65532:65532
    rm -rf "$dir"
}

# bud REF DOCKERFILE BUILD-ARGS...: buildah's Dockerfile build, daemonless (chroot isolation, host
# network for RUN steps). The host's CA bundle and pip.conf are lent to RUN steps when present (a
# TLS-inspecting proxy or a package mirror); nothing of them is baked into the image.
bud() {
    local ref="$1" file="$2" t0 lend=()
    shift 2
    [[ -f /etc/ssl/certs/ca-certificates.crt ]] &&
        lend+=(-v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro)
    [[ -f /etc/pip.conf ]] && lend+=(-v /etc/pip.conf:/etc/pip.conf:ro)
    t0=$(date +%s)
    log "building $ref from ${file#"$ROOT"/}"
    "${BUILDAH[@]}" bud --quiet --isolation chroot --pull=never --layers "${lend[@]}" \
        --build-arg "VERSION=$VERSION" "$@" -f "$file" -t "$ref" "$ROOT" >&2
    log "built $ref in $(($(date +%s) - t0))s"
}

build_kubesaga() {
    local base="${KUBESAGA_PYTHON_IMAGE:-}"
    if [[ -z "$base" ]]; then
        build_base
        base="${REF[base]}"
    fi
    bud "${REF[kubesaga]}" "$ROOT/Dockerfile" --build-arg "PYTHON_IMAGE=$base"
}

build_examples() {
    build_one kubesaga
    bud "${REF[examples]}" "$ROOT/examples/Dockerfile" --build-arg "KUBESAGA_IMAGE=${REF[kubesaga]}"
}

declare -A BUILT=()
build_one() {
    [[ -n "${REF[$1]:-}" ]] || die "unknown image '$1' (one of: ${ALL[*]})"
    [[ -n "${BUILT[$1]:-}" ]] && return 0
    "build_$1"
    BUILT[$1]=1
}

# import NAME: push the image as an OCI archive and import it into containerd, unless containerd
# already holds this very image (a label on it records the buildah image id).
import_one() {
    local name="$1" ref="${REF[$1]}" id have tar
    id="$(image_id "$ref")"
    have="$(ctr --address "$CONTAINERD_ADDRESS" -n k8s.io images ls "name==$ref" 2>/dev/null |
        awk 'NR > 1 {print $NF}' | tr ',' '\n' | sed -n 's/^io.kubesaga.image-id=//p')"
    if [[ "$have" == "$id" ]]; then
        return 0
    fi
    tar="$(mktemp "$STATE/import.XXXXXX.tar")"
    "${BUILDAH[@]}" push --quiet "$ref" "oci-archive:$tar:$ref" >&2
    ctr --address "$CONTAINERD_ADDRESS" -n k8s.io images import --no-unpack=false "$tar" >/dev/null
    rm -f "$tar"
    ctr --address "$CONTAINERD_ADDRESS" -n k8s.io images label "$ref" "io.kubesaga.image-id=$id" >/dev/null
    # The kubelet's image garbage collector never removes a pinned image (the pause image must stay).
    [[ "$name" == pause ]] &&
        ctr --address "$CONTAINERD_ADDRESS" -n k8s.io images label "$ref" io.cri-containerd.pinned=pinned >/dev/null
    log "imported $ref into containerd"
}

cmd_build() {
    ensure_tools
    local names=("$@")
    ((${#names[@]})) || names=("${ALL[@]}")
    for n in "${names[@]}"; do build_one "$n"; done
}

cmd_import() {
    [[ -S "$CONTAINERD_ADDRESS" ]] || die "containerd is not running at $CONTAINERD_ADDRESS (hack/cluster.sh up starts it)"
    local names=("$@")
    ((${#names[@]})) || names=("${NODE[@]}")
    cmd_build "${names[@]}"
    for n in "${names[@]}"; do import_one "$n"; done
}

cmd_list() {
    for n in "${ALL[@]}"; do printf '%-9s %s\n' "$n" "${REF[$n]}"; done
}

case "${1:-}" in
    build) shift && cmd_build "$@" ;;
    import) shift && cmd_import "$@" ;;
    list) cmd_list ;;
    ref) printf '%s\n' "${REF[${2:-}]:?unknown image}" ;;
    *)
        awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "${BASH_SOURCE[0]}" >&2
        exit 2
        ;;
esac
