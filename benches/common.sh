# Shared by the benchmark scripts (sourced from the repository root, after
# `set -euo pipefail`): tools, the built binaries, a work directory cleaned up on
# exit, a loopback registry:2 seeded with ferry-seed, and timed runs.

# need TOOL PACKAGE: fails unless TOOL is on PATH.
need() { command -v "$1" >/dev/null || { echo "missing $1 (apt-get install $2)" >&2; exit 1; }; }
need_time() {
  [ -x /usr/bin/time ] || { echo "missing /usr/bin/time (apt-get install time)" >&2; exit 1; }
}

# build_release PACKAGE...: cargo build --release of the packages; sets BIN to their directory.
build_release() {
  local args=() p
  for p in "$@"; do args+=(-p "$p"); done
  cargo build --release -q "${args[@]}"
  BIN=${CARGO_TARGET_DIR:-$PWD/target}/release
}

# work_dir PREFIX: sets WORK to a new temporary directory; it and every process in
# PIDS go away when the script ends.
PIDS=()
work_dir() {
  WORK=$(mktemp -d "/tmp/$1.XXXXXX")
  trap cleanup EXIT INT TERM
}
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# wait_up HOST:PORT: waits until a registry answers /v2/ there.
wait_up() { for _ in $(seq 200); do curl -sf "http://$1/v2/" >/dev/null && return 0; sleep 0.05; done; echo "$1 did not come up" >&2; exit 1; }

# start_registry: a registry:2 on a free loopback port, access log off and level=error
# (its fastest setting), storage in $WORK/registry. Sets REG_PORT and REG_PID.
start_registry() {
  REG_PORT=$(free_port)
  cat >"$WORK/registry.yml" <<YML
version: 0.1
log: { level: error, accesslog: { disabled: true } }
storage: { filesystem: { rootdirectory: $WORK/registry }, delete: { enabled: true } }
http: { addr: 127.0.0.1:$REG_PORT, secret: bench }
YML
  "${REGISTRY_BIN:-docker-registry}" serve "$WORK/registry.yml" >"$WORK/registry.log" 2>&1 &
  REG_PID=$!
  PIDS+=("$REG_PID")
  wait_up "127.0.0.1:$REG_PORT"
}

# stop_registry: stops the registry:2 of start_registry.
stop_registry() {
  local p keep=()
  kill "$REG_PID"
  wait "$REG_PID" 2>/dev/null || true
  for p in "${PIDS[@]}"; do
    if [ "$p" != "$REG_PID" ]; then keep+=("$p"); fi
  done
  PIDS=("${keep[@]}")
}

# seed_registry ARGS...: ferry-seed into the registry, with spec files naming bench.example.io;
# then $WORK/mirrors.toml maps that host to the registry.
seed_registry() {
  "$BIN/ferry-seed" --registry "http://127.0.0.1:$REG_PORT" --spec-host bench.example.io "$@"
  cat >"$WORK/mirrors.toml" <<TOML
[[registry]]
host = "bench.example.io"
skip_upstream = true
endpoints = [{ url = "http://127.0.0.1:$REG_PORT" }]
TOML
}

# ferry_lock NAME: $WORK/NAME.toml locked into $WORK/NAME.lock through $WORK/mirrors.toml.
ferry_lock() {
  "$BIN/ferry-bundler" lock "$WORK/$1.toml" --mirrors "$WORK/mirrors.toml" -o "$WORK/$1.lock" --quiet
}
# ferry_pull NAME: the locked $WORK/NAME.toml pulled into $WORK/store.
ferry_pull() {
  "$BIN/ferry-bundler" pull "$WORK/$1.toml" --lock "$WORK/$1.lock" --mirrors "$WORK/mirrors.toml" \
    --store "$WORK/store" --quiet
}

# timed NAME CMD...: runs CMD under /usr/bin/time (output to $WORK/err.NAME), from a
# synced disk and including a final sync, so every tool pays for its own writes
# reaching the disk. Sets TIMED_SECS, TIMED_RSS (peak, KiB) and TIMED_CPU (user +
# system seconds).
timed() {
  local name=$1; shift
  local start end
  sync
  start=$(date +%s.%N)
  /usr/bin/time -f "%U %S"$'\n'"%M" -o "$WORK/time.$name" "$@" >/dev/null 2>"$WORK/err.$name" \
    || { echo "$name failed:"; cat "$WORK/err.$name"; exit 1; }
  sync
  end=$(date +%s.%N)
  TIMED_SECS=$(echo "$end - $start" | bc)
  TIMED_RSS=$(tail -n1 "$WORK/time.$name")
  TIMED_CPU=$(tail -n2 "$WORK/time.$name" | head -n1 | awk '{print $1 + $2}')
}

# cpu_ticks PID: user + system CPU the process has used so far, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
