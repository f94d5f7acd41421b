#!/usr/bin/env bash
# Ferry's main job, end to end, on one machine and without the internet:
#
#   office (internet side)                       site (air-gapped side)
#   upstream stand-in -> lock -> build+sign  ==>  verify -> unpack -> serve -> containerd
#
# 1. installs what it needs (apt-get: docker-registry, containerd, runc, busybox-static, ...)
#    and builds Ferry;
# 2. starts a registry:2 on loopback as the stand-in for registry.k8s.io and docker.io,
#    and pushes generated multi-arch images plus one real, runnable image into it:
#    Debian's static busybox as a one-layer docker.io/library/busybox;
# 3. writes a key, locks the spec, builds and signs a bundle, stops the upstream
#    stand-in (the air gap), carries the bundle into a second directory, verifies
#    and unpacks it there, and serves it with `ferry-installer serve` (TLS, site CA);
# 4. starts a private containerd whose hosts.toml names that registry as the mirror
#    for docker.io, pulls the image by its upstream name and runs it with `ctr run`.
#
# Everything runs under one temporary directory on random loopback ports, and is
# stopped and removed on exit, failure or Ctrl-C (FERRY_DEMO_KEEP=1 keeps the files).
# Run it as root (apt-get, containerd, runc). FERRY_DEMO_PROFILE=dev builds without --release.
# Where runc cannot run containers at all (some sandboxes), every other step still
# runs and the last one says why; FERRY_DEMO_REQUIRE_RUN=1 (CI) makes that a failure.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

STEP=0
step() { STEP=$((STEP + 1)); printf '\n\033[1m==> %d. %s\033[0m\n' "$STEP" "$*"; }
say() { printf '    %s\n' "$*"; }
run() { printf '    $ %s\n' "$*"; "$@"; }
die() { printf '\ndemo: FAILED: %s\n' "$*" >&2; exit 1; }
trap 'printf "\ndemo: FAILED at line %d: %s\n" "$LINENO" "$BASH_COMMAND" >&2' ERR

# --- what the demo starts, so cleanup stops exactly that -------------------------
WORK=""
REGISTRY_PID=""
SERVE_PID=""
CONTAINERD_PID=""
SOCK=""
CID="ferry-demo-$$"

# Prints the start of a log, for failures.
show_log() {
  [ -f "$1" ] || return 0
  printf '    --- %s (last lines) ---\n' "$1" >&2
  tail -n 30 "$1" | sed 's/^/    | /' >&2
}

stop_pid() {
  local pid=$1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# shellcheck disable=SC2317  # run by the EXIT trap
cleanup() {
  local rc=$?
  trap - ERR EXIT INT TERM
  set +e
  printf '\n==> cleanup\n'
  if [ -n "$CONTAINERD_PID" ] && kill -0 "$CONTAINERD_PID" 2>/dev/null; then
    # A task still running (Ctrl-C during `ctr run`): kill and delete it first, so
    # its shim exits, then containerd itself.
    ctr --address "$SOCK" tasks kill --signal SIGKILL "$CID" >/dev/null 2>&1
    ctr --address "$SOCK" tasks delete --force "$CID" >/dev/null 2>&1
    ctr --address "$SOCK" containers delete "$CID" >/dev/null 2>&1
  fi
  stop_pid "$CONTAINERD_PID" && [ -n "$CONTAINERD_PID" ] && say "stopped containerd (pid $CONTAINERD_PID)"
  # A shim of our private containerd left behind (it names our socket): only those.
  if [ -n "$SOCK" ]; then
    for p in /proc/[0-9]*; do
      if tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -q "containerd-shim.*-address $SOCK "; then
        kill -KILL "${p#/proc/}" 2>/dev/null && say "stopped a containerd shim (pid ${p#/proc/})"
      fi
    done
  fi
  stop_pid "$SERVE_PID" && [ -n "$SERVE_PID" ] && say "stopped ferry-installer serve (pid $SERVE_PID)"
  stop_pid "$REGISTRY_PID" && [ -n "$REGISTRY_PID" ] && say "stopped the upstream stand-in registry:2 (pid $REGISTRY_PID)"
  if [ -n "$WORK" ] && [ -d "$WORK" ]; then
    # Rootfs mounts containerd may have left under the work directory.
    awk -v w="$WORK/" 'index($2, w) == 1 { print $2 }' /proc/self/mounts | sort -r |
      while read -r m; do umount -l "$m" && say "unmounted $m"; done
    if [ "${FERRY_DEMO_KEEP:-}" = 1 ]; then
      say "kept $WORK (FERRY_DEMO_KEEP=1)"
    else
      rm -rf "$WORK" && say "removed $WORK"
    fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'printf "\ndemo: interrupted\n" >&2; exit 130' INT
trap 'printf "\ndemo: terminated\n" >&2; exit 143' TERM

# Waits until `$2` (a command) succeeds, or fails after $1 seconds.
wait_for() {
  local secs=$1; shift
  for _ in $(seq $((secs * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  return 1
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# ---------------------------------------------------------------------------------
step "prerequisites"
[ "$(id -u)" = 0 ] || die "run it as root: apt-get, containerd and runc need it (sudo -E scripts/demo.sh)"
need=()
for c in docker-registry:docker-registry containerd:containerd ctr:containerd runc:runc \
  busybox:busybox-static python3:python3 curl:curl git:git cc:build-essential minisign:minisign; do
  command -v "${c%%:*}" >/dev/null || need+=("${c#*:}")
done
[ -e /usr/share/doc/ca-certificates ] || need+=(ca-certificates)
if [ ${#need[@]} -gt 0 ]; then
  say "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  run apt-get update -qq
  run apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
else
  say "docker-registry, containerd, runc, busybox-static, minisign, python3, curl, git and a C toolchain are installed"
fi
if ! command -v cargo >/dev/null; then
  # shellcheck source=/dev/null
  [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
fi
if ! command -v cargo >/dev/null; then
  say "installing Rust (rustup, minimal profile)"
  curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
  # shellcheck source=/dev/null
  . "$HOME/.cargo/env"
fi
say "$(cargo --version)"

# ---------------------------------------------------------------------------------
PROFILE=${FERRY_DEMO_PROFILE:-release}
step "build Ferry (cargo, profile $PROFILE)"
if [ "$PROFILE" = release ]; then
  run cargo build --release --locked -q -p ferry-bundler -p ferry-installer -p ferry-testkit --bins
  BIN=${CARGO_TARGET_DIR:-$REPO/target}/release
else
  run cargo build --locked -q -p ferry-bundler -p ferry-installer -p ferry-testkit --bins
  BIN=${CARGO_TARGET_DIR:-$REPO/target}/debug
fi
BUNDLER=$BIN/ferry-bundler
INSTALLER=$BIN/ferry-installer
say "$("$BUNDLER" --version); $("$INSTALLER" --version)"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ferry-demo.XXXXXX")
mkdir -p "$WORK"/{upstream,office,site,node}
say "working in $WORK: upstream/ (stand-in registries), office/ (internet side), site/ (air-gapped side), node/ (containerd)"
cd "$WORK"

# ---------------------------------------------------------------------------------
step "start a stand-in for the upstream registries (registry:2 on loopback)"
for attempt in 1 2 3; do
  UPORT=$(free_port)
  cat >upstream/config.yml <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $WORK/upstream/data
http:
  addr: 127.0.0.1:$UPORT
  secret: ferry-demo-not-a-secret
EOF
  docker-registry serve upstream/config.yml >upstream/registry.log 2>&1 &
  REGISTRY_PID=$!
  if wait_for 10 curl -fsS "http://127.0.0.1:$UPORT/v2/"; then break; fi
  stop_pid "$REGISTRY_PID"; REGISTRY_PID=""
  [ "$attempt" = 3 ] && { show_log upstream/registry.log; die "registry:2 did not start"; }
done
UPSTREAM=http://127.0.0.1:$UPORT
say "registry:2 (pid $REGISTRY_PID) at $UPSTREAM plays registry.k8s.io and docker.io"

step "push images into it: generated multi-arch ones and a real busybox"
run "$BIN/ferry-seed" --registry "$UPSTREAM" --images 3 --platforms linux/amd64,linux/arm64 \
  --layers-per-image 2 --layer-size 262144 --shared-layers 1 --flavor mixed --prefix demo
case "$(uname -m)" in x86_64) ARCH=amd64 ;; aarch64) ARCH=arm64 ;; *) ARCH=$(uname -m) ;; esac
BUSYBOX=$(command -v busybox)
BB_TAG=$("$BUSYBOX" 2>&1 | sed -n '1s/^BusyBox v\([0-9.]*\).*/\1/p')
BB_TAG=${BB_TAG:-latest}
mkdir -p upstream/rootfs/bin
cp "$BUSYBOX" upstream/rootfs/bin/busybox
for applet in sh echo cat hostname uname id ls; do ln -s busybox "upstream/rootfs/bin/$applet"; done
say "rootfs: Debian's static $BUSYBOX as /bin/busybox; sh, echo, ... link to it"
run "$BIN/ferry-push-rootfs" --registry "$UPSTREAM" --repo library/busybox --tag "$BB_TAG" \
  --rootfs upstream/rootfs --platform "linux/$ARCH"
IMAGE=docker.io/library/busybox:$BB_TAG

# ---------------------------------------------------------------------------------
step "office: a release spec, mirror rules and a signing key"
cat >office/demo.toml <<EOF
name = "demo"
version = "1.0.0"
platforms = ["linux/amd64", "linux/arm64"]
images = [
  "registry.k8s.io/demo/img0:v1",
  "registry.k8s.io/demo/img1:v1",
  "registry.k8s.io/demo/img2:v1",
  { ref = "$IMAGE", platforms = ["linux/$ARCH"] },
]
EOF
cat >office/mirrors.toml <<EOF
# Both upstream hosts are served by the loopback stand-in, and only by it.
[[registry]]
host = "registry.k8s.io"
skip_upstream = true
endpoints = [{ url = "$UPSTREAM" }]

[[registry]]
host = "docker.io"
skip_upstream = true
endpoints = [{ url = "$UPSTREAM" }]
EOF
sed 's/^/    | /' office/demo.toml
run "$BUNDLER" keygen --no-password --name demo --out office

step "office: lock the spec (every tag pinned to its digests)"
run "$BUNDLER" lock office/demo.toml --mirrors office/mirrors.toml
LOCKED=$(grep -A3 "$IMAGE" office/demo.lock | sed -n 's/^digest = "\(sha256:[0-9a-f]*\)"/\1/p' | head -1)
[ -n "$LOCKED" ] || die "no digest for $IMAGE in office/demo.lock"
say "$IMAGE is locked to $LOCKED"

step "office: build and sign the bundle"
run "$BUNDLER" build office/demo.toml --lock office/demo.lock --key office/demo.key \
  -o office/demo-1.0.0.tar.zst --store office/store --mirrors office/mirrors.toml
run "$BUNDLER" inspect office/demo-1.0.0.tar.zst --key office/demo.pub

step "the air gap: stop the upstream stand-in; nothing below can reach it"
stop_pid "$REGISTRY_PID"
say "registry:2 (pid $REGISTRY_PID) stopped"
REGISTRY_PID=""

step "carry the bundle, its detached signature and the public key to the site"
run cp office/demo-1.0.0.tar.zst office/demo-1.0.0.tar.zst.minisig office/demo.pub site/
if command -v minisign >/dev/null; then
  run minisign -Vm site/demo-1.0.0.tar.zst -p site/demo.pub
fi

step "site: verify the bundle (signature first, then every entry's digest)"
run "$INSTALLER" verify site/demo-1.0.0.tar.zst --key site/demo.pub

step "site: unpack it into the site store (an OCI image layout)"
run "$INSTALLER" unpack site/demo-1.0.0.tar.zst --key site/demo.pub --store site/store

step "site: serve the store (registry API, TLS with a site CA made now)"
printf '    $ %s\n' "$INSTALLER serve --store site/store --pki site/pki --addr 127.0.0.1:0 &"
"$INSTALLER" serve --store site/store --pki site/pki --addr 127.0.0.1:0 2>site/serve.log &
SERVE_PID=$!
if ! wait_for 20 grep -q '^listening on ' site/serve.log; then
  show_log site/serve.log; die "ferry-installer serve did not start"
fi
sed -n '/^listening on /q;s/^/    | /p' site/serve.log
SITE_URL=$(sed -n 's/^listening on //p' site/serve.log | head -1)
CA=$WORK/site/pki/ca.pem
[ -f "$CA" ] || die "no site CA at $CA"
say "ferry-installer serve (pid $SERVE_PID) is listening on $SITE_URL"

# ---------------------------------------------------------------------------------
step "node: containerd with hosts.toml naming the site registry as the mirror"
SOCK=$WORK/node/containerd.sock
for host in docker.io registry.k8s.io; do
  mkdir -p "node/certs.d/$host"
  server=https://$host
  [ "$host" = docker.io ] && server=https://registry-1.docker.io
  cat >"node/certs.d/$host/hosts.toml" <<EOF
server = "$server"

[host."$SITE_URL"]
  capabilities = ["pull", "resolve"]
  ca = "$CA"
EOF
done
sed 's/^/    | /' node/certs.d/docker.io/hosts.toml
cat >node/config.toml <<EOF
version = 2
root = "$WORK/node/root"
state = "$WORK/node/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
EOF
printf '    $ %s\n' "containerd --config node/config.toml &"
containerd --config node/config.toml >node/containerd.log 2>&1 &
CONTAINERD_PID=$!
if ! wait_for 20 ctr --address "$SOCK" version; then
  show_log node/containerd.log; die "containerd did not start"
fi
say "containerd (pid $CONTAINERD_PID) on $SOCK"
CTR=(ctr --address "$SOCK")

step "node: pull by the upstream names, through the mirror"
# ctr redraws a progress table many times when not on a terminal: keep it in a log.
pull() {
  local platform=$1 ref=$2 log=node/pull-${2//[\/:]/_}.log
  printf '    $ ctr images pull --hosts-dir node/certs.d --snapshotter native --platform %s %s\n' "$platform" "$ref"
  if ! "${CTR[@]}" images pull --hosts-dir node/certs.d --snapshotter native \
    --platform "$platform" "$ref" >"$log" 2>&1; then
    show_log "$log"; show_log site/serve.log; show_log node/containerd.log
    die "containerd could not pull $ref ($platform) through the mirror"
  fi
  grep -E '^(unpacking|done)' "$log" | sed 's/^/    | /'
}
pull "linux/$ARCH" "$IMAGE"
pull linux/arm64 registry.k8s.io/demo/img1:v1
# (Only arm64 of img1 is on the node, so ctr cannot total its size: that warning is dropped.)
"${CTR[@]}" images ls 2>/dev/null | sed 's/^/    | /'
PULLED=$("${CTR[@]}" images ls 2>/dev/null | awk -v r="$IMAGE" '$1 == r { print $3 }')
[ "$PULLED" = "$LOCKED" ] || die "containerd holds $IMAGE as $PULLED, the lock says $LOCKED"
say "containerd holds $IMAGE at the locked digest $LOCKED"
grep -q "/v2/library/busybox/manifests/$BB_TAG?ns=docker.io" site/serve.log ||
  die "the site registry never saw containerd's mirror request for $IMAGE"
say "the site registry served it as a mirror of docker.io:"
grep "?ns=docker.io" site/serve.log | head -3 | sed 's/^/    | /'

step "node: run it (ctr run)"
# $$ and $(...) are expanded by the container's shell, not by this script.
# shellcheck disable=SC2016
INSIDE='echo "hello from inside the container: $(busybox | head -n 1 | cut -d" " -f1-2) as PID $$, kernel $(uname -r)"'
printf '    $ %s\n' "ctr run --rm --snapshotter native $IMAGE $CID sh -c '$INSIDE'"
set +e
OUT=$("${CTR[@]}" run --rm --snapshotter native "$IMAGE" "$CID" /bin/sh -c "$INSIDE" 2>"$WORK/node/run.err")
RC=$?
set -e
if [ $RC -eq 0 ] && printf '%s' "$OUT" | grep -q '^hello from inside the container: BusyBox .* as PID 1,'; then
  printf '    | %s\n' "$OUT"
  say "the container printed that line: Ferry's bundle ran on a node with no internet"
  RESULT=0
else
  printf '    | %s\n' "$OUT"
  show_log "$WORK/node/run.err"
  # Whether this machine can run a container at all: runc alone, on the same rootfs.
  PROBE=$WORK/node/probe
  mkdir -p "$PROBE" && cp -a "$WORK/upstream/rootfs" "$PROBE/rootfs"
  (cd "$PROBE" && runc spec && sed -i 's/"terminal": true/"terminal": false/; s/"sh"$/"echo", "probe"/' config.json)
  if (cd "$PROBE" && runc run "probe-$$" >"$PROBE/out" 2>&1); then
    die "ctr run failed (exit $RC) although runc can run containers here: a real failure"
  fi
  printf '\ndemo: every step ran except the last: this machine cannot run containers.\n' >&2
  printf 'demo: runc alone fails the same way:\n' >&2
  sed 's/^/    | /' "$PROBE/out" >&2
  if [ "${FERRY_DEMO_REQUIRE_RUN:-}" = 1 ]; then
    die "FERRY_DEMO_REQUIRE_RUN=1 and the container could not run"
  fi
  RESULT=0
fi

printf '\n\033[1mdemo: done\033[0m: spec -> lock -> build -> carry -> verify -> unpack -> serve -> containerd pull -> run\n'
exit $RESULT
