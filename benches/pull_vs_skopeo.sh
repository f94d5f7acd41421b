#!/usr/bin/env bash
# Benchmark: `ferry-bundler pull` against skopeo fetching the same multi-arch images
# with every platform and digests kept, from one loopback registry:2, in one run.
#
#   benches/pull_vs_skopeo.sh [TOTAL_MIB]      (default 1024)
#
# skopeo is run the two ways users script it: `skopeo copy --all` one image after
# another, and one `skopeo sync --all` of every repository; both into `dir:`, since
# skopeo cannot write a Docker manifest list into an OCI layout unchanged. The
# faster of the two is the reference. Prints wall time, throughput and peak RSS of
# each, and the ratio. Target: ferry >= 3x the faster skopeo way, peak RSS < 64 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."

TOTAL_MIB=${1:-1024}
IMAGES=16
LAYERS=4
SHARED=1
# Per image: LAYERS layers per platform, two platforms, SHARED layers shared by all images.
LAYER_SIZE=$(( TOTAL_MIB * 1024 * 1024 / (IMAGES * LAYERS * 2) ))

need() { command -v "$1" >/dev/null || { echo "missing $1 (apt-get install $2)" >&2; exit 1; }; }
need docker-registry docker-registry
need skopeo skopeo
[ -x /usr/bin/time ] || { echo "missing /usr/bin/time (apt-get install time)" >&2; exit 1; }

cargo build --release -q -p ferry-bundler -p ferry-e2e
BIN=${CARGO_TARGET_DIR:-$PWD/target}/release

WORK=$(mktemp -d /tmp/ferry-bench.XXXXXX)
REG_PID=""
cleanup() {
  [ -n "$REG_PID" ] && kill "$REG_PID" 2>/dev/null && wait "$REG_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$WORK/registry.yml" <<YML
version: 0.1
log: { level: error, accesslog: { disabled: true } }
storage: { filesystem: { rootdirectory: $WORK/registry }, delete: { enabled: true } }
http: { addr: 127.0.0.1:$PORT, secret: bench }
YML
docker-registry serve "$WORK/registry.yml" >"$WORK/registry.log" 2>&1 &
REG_PID=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/v2/" >/dev/null && break; sleep 0.1; done

echo "== seeding $IMAGES images x 2 platforms x $LAYERS layers of $((LAYER_SIZE / 1024)) KiB into registry:2 on 127.0.0.1:$PORT"
"$BIN/ferry-seed" --registry "http://127.0.0.1:$PORT" --images "$IMAGES" \
  --platforms linux/amd64,linux/arm64 --layers-per-image "$LAYERS" --layer-size "$LAYER_SIZE" \
  --shared-layers "$SHARED" --flavor mixed --spec-out "$WORK/spec.toml" --spec-host bench.example.io
cat >"$WORK/mirrors.toml" <<TOML
[[registry]]
host = "bench.example.io"
skip_upstream = true
endpoints = [{ url = "http://127.0.0.1:$PORT" }]
TOML
"$BIN/ferry-bundler" lock "$WORK/spec.toml" --mirrors "$WORK/mirrors.toml" -o "$WORK/spec.lock" --quiet
REPOS=$(grep -o 'bench\.example\.io/bench/img[0-9]*' "$WORK/spec.toml" | sed 's#bench.example.io/##')

# Every measurement starts with the page cache flushed to disk and ends with its own
# output on disk (a trailing `sync`): ferry fsyncs each blob, skopeo does not, and
# without this one tool would pay for the other's writeback.
declare -A SECS RSS
# measure NAME CMD... : runs CMD under /usr/bin/time, records seconds and peak RSS (KiB).
measure() {
  local name=$1; shift
  local start end
  sync
  start=$(date +%s.%N)
  /usr/bin/time -f "%M" -o "$WORK/time.$name" "$@" >/dev/null 2>"$WORK/err.$name" \
    || { echo "$name failed:"; cat "$WORK/err.$name"; exit 1; }
  sync
  end=$(date +%s.%N)
  SECS[$name]=$(echo "$end - $start" | bc)
  RSS[$name]=$(tail -n1 "$WORK/time.$name")
}
# A loop of commands: wall time of the whole loop, peak RSS of the largest one.
measure_loop() {
  local name=$1; shift
  local start end peak=0 rss
  mkdir -p "$WORK/$name"
  sync
  start=$(date +%s.%N)
  for repo in $REPOS; do
    /usr/bin/time -f "%M" -o "$WORK/rss" "$@" "docker://127.0.0.1:$PORT/$repo:v1" "dir:$WORK/$name/${repo//\//_}" \
      >/dev/null 2>"$WORK/err.$name" || { echo "$name failed:"; cat "$WORK/err.$name"; exit 1; }
    rss=$(tail -n1 "$WORK/rss"); if [ "$rss" -gt "$peak" ]; then peak=$rss; fi
  done
  sync
  end=$(date +%s.%N)
  SECS[$name]=$(echo "$end - $start" | bc)
  RSS[$name]=$peak
}

echo "== ferry-bundler pull"
measure ferry "$BIN/ferry-bundler" pull "$WORK/spec.toml" --lock "$WORK/spec.lock" \
  --mirrors "$WORK/mirrors.toml" --store "$WORK/store" --quiet
echo "== skopeo copy --all, one image after another"
measure_loop skopeo_copy skopeo copy --all --quiet --src-tls-verify=false
echo "== skopeo sync --all"
{
  echo "127.0.0.1:$PORT:"
  echo "  tls-verify: false"
  echo "  images:"
  for repo in $REPOS; do echo "    $repo: [v1]"; done
} >"$WORK/sync.yml"
measure skopeo_sync skopeo sync --all --src yaml --dest dir "$WORK/sync.yml" "$WORK/skopeo_sync"

BYTES=$(du -sb "$WORK/store/blobs" | cut -f1)
echo
printf '%-22s %9s %11s %12s\n' "tool" "seconds" "MB/s" "peak RSS"
for name in skopeo_copy skopeo_sync ferry; do
  printf '%-22s %9.2f %11.0f %9d MiB\n' "$name" "${SECS[$name]}" \
    "$(echo "$BYTES / ${SECS[$name]} / 1000000" | bc -l)" "$(( RSS[$name] / 1024 ))"
done
BEST=skopeo_copy
if (( $(echo "${SECS[skopeo_sync]} < ${SECS[skopeo_copy]}" | bc) )); then BEST=skopeo_sync; fi
RATIO=$(echo "${SECS[$BEST]} / ${SECS[ferry]}" | bc -l)
printf '\nferry pull is %.2fx faster than %s (target >= 3x); peak RSS %d MiB (target < 64 MiB)\n' \
  "$RATIO" "$BEST" "$(( RSS[ferry] / 1024 ))"
