#!/usr/bin/env bash
# Benchmark: `ferry-installer push` of a store into a loopback registry:2, against
# `skopeo copy --all --preserve-digests oci:STORE:NAME docker://...` for every image,
# one after another, into a fresh registry:2 of the same setup, in one run.
#
#   benches/push_vs_skopeo.sh [TOTAL_MIB]      (default 1024)
#
# The same two pushes then go into `ferry-installer serve`, a registry that hashes
# with the CPU's SHA instructions, to show the clients apart from registry:2's
# own cost (it spends most of the CPU of a push hashing).
#
# `push --bundle` of the same content, built into a signed bundle, is timed too.
#
# The store is multi-platform (16 images x 2 platforms x 4 layers, one layer shared
# by all), pulled by ferry-bundler from a seeded registry:2. The images are OCI
# indexes: skopeo's oci: transport does not find a Docker manifest list in a
# layout's index.json. `skopeo sync` does not
# apply: it reads only docker, dir and yaml sources, not an OCI layout. Prints wall
# time, throughput and peak RSS of each and the ratio. Target: ferry >= 3x skopeo,
# peak RSS < 64 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/common.sh

TOTAL_MIB=${1:-1024}
IMAGES=16
LAYERS=4
SHARED=1
LAYER_SIZE=$(( TOTAL_MIB * 1024 * 1024 / (IMAGES * LAYERS * 2) ))

need docker-registry docker-registry
need skopeo skopeo
need htpasswd apache2-utils
need_time

build_release ferry-bundler ferry-installer ferry-testkit
work_dir ferry-bench

start_registry
echo "== seeding $IMAGES images x 2 platforms x $LAYERS layers of $((LAYER_SIZE / 1024)) KiB, pulling them into a store"
seed_registry --images "$IMAGES" \
  --platforms linux/amd64,linux/arm64 --layers-per-image "$LAYERS" --layer-size "$LAYER_SIZE" \
  --shared-layers "$SHARED" --flavor oci --spec-out "$WORK/spec.toml"
ferry_lock spec
ferry_pull spec
stop_registry
"$BIN/ferry-bundler" keygen --out "$WORK" --name bench --no-password >/dev/null
"$BIN/ferry-bundler" build "$WORK/spec.toml" --lock "$WORK/spec.lock" --mirrors "$WORK/mirrors.toml" \
  --store "$WORK/store" --key "$WORK/bench.key" -o "$WORK/bench.tar.zst" --quiet
NAMES=$(python3 -c '
import json, sys
for m in json.load(open(sys.argv[1]))["manifests"]:
    print(m["annotations"]["org.opencontainers.image.ref.name"])' "$WORK/store/index.json")

# fresh_registry: an empty registry:2 (the one of start_registry, storage wiped).
fresh_registry() {
  rm -rf "$WORK/registry"
  start_registry
}

declare -A SECS RSS
# fresh_serve: an empty store served by ferry-installer serve (plain HTTP, pushes by
# bench:bench), the destination where the registry is not the bottleneck.
htpasswd -Bbn bench bench >"$WORK/users"
fresh_serve() {
  rm -rf "$WORK/standby"
  mkdir -p "$WORK/standby"
  echo '{"imageLayoutVersion":"1.0.0"}' >"$WORK/standby/oci-layout"
  REG_PORT=$(free_port)
  "$BIN/ferry-installer" serve --store "$WORK/standby" --tls off --htpasswd "$WORK/users" \
    --addr "127.0.0.1:$REG_PORT" >"$WORK/serve.log" 2>&1 &
  REG_PID=$!
  PIDS+=("$REG_PID")
  # It asks for credentials on /v2/ (401) once it is up.
  for _ in $(seq 200); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$REG_PORT/v2/")" = 401 ] && return 0
    sleep 0.05
  done
  echo "ferry-installer serve did not come up: $(cat "$WORK/serve.log")" >&2
  exit 1
}
# ferry_push NAME: ferry-installer push into the registry at $REG_PORT.
ferry_push() {
  timed "$1" "$BIN/ferry-installer" push --store "$WORK/store" --to "http://127.0.0.1:$REG_PORT/bench" \
    --cred bench:bench --quiet
  SECS[$1]=$TIMED_SECS
  RSS[$1]=$TIMED_RSS
}
# skopeo_push NAME: skopeo copy of every image, one after another, into $REG_PORT.
skopeo_push() {
  local start end peak=0 rss name
  sync
  start=$(date +%s.%N)
  for name in $NAMES; do
    /usr/bin/time -f "%M" -o "$WORK/rss" skopeo copy --all --preserve-digests --quiet \
      --dest-tls-verify=false --dest-creds bench:bench \
      "oci:$WORK/store:$name" "docker://127.0.0.1:$REG_PORT/bench/$name" >/dev/null 2>"$WORK/err.skopeo" \
      || { echo "skopeo failed on $name:"; cat "$WORK/err.skopeo"; exit 1; }
    rss=$(tail -n1 "$WORK/rss"); if [ "$rss" -gt "$peak" ]; then peak=$rss; fi
  done
  sync
  end=$(date +%s.%N)
  SECS[$1]=$(echo "$end - $start" | bc)
  RSS[$1]=$peak
}

echo "== into registry:2: ferry-installer push"
fresh_registry
REG_TICKS=$(cpu_ticks "$REG_PID")
ferry_push ferry
# What registry:2 itself spent on the push: with ferry's own CPU, over the cores,
# the least time any client could take into this registry on this machine.
REG_CPU=$(echo "($(cpu_ticks "$REG_PID") - $REG_TICKS) / $(getconf CLK_TCK)" | bc -l)
FERRY_CPU=$TIMED_CPU
PUSHED=$(du -sb "$WORK/registry" | cut -f1)
stop_registry
echo "== into registry:2: skopeo copy --all --preserve-digests, one image after another"
fresh_registry
REG_TICKS=$(cpu_ticks "$REG_PID")
skopeo_push skopeo_copy
# The same for skopeo's push: what registry:2 spends is the content's, not the client's.
REG_CPU_SKOPEO=$(echo "($(cpu_ticks "$REG_PID") - $REG_TICKS) / $(getconf CLK_TCK)" | bc -l)
COPIED=$(du -sb "$WORK/registry" | cut -f1)
stop_registry
echo "== into registry:2: ferry-installer push --bundle (verified, then streamed; never unpacked)"
fresh_registry
timed ferry_bundle "$BIN/ferry-installer" push --bundle "$WORK/bench.tar.zst" --key "$WORK/bench.pub" \
  --to "http://127.0.0.1:$REG_PORT/bench" --quiet
SECS[ferry_bundle]=$TIMED_SECS
RSS[ferry_bundle]=$TIMED_RSS
stop_registry
echo "== into ferry-installer serve: both again"
fresh_serve
ferry_push ferry_to_serve
stop_registry
fresh_serve
skopeo_push skopeo_to_serve
stop_registry

BYTES=$(du -sb "$WORK/store/blobs" | cut -f1)
echo
echo "registry storage after: ferry $((PUSHED / 1048576)) MiB, skopeo $((COPIED / 1048576)) MiB"
printf '%-22s %9s %11s %12s\n' "tool" "seconds" "MB/s" "peak RSS"
for name in skopeo_copy ferry ferry_bundle skopeo_to_serve ferry_to_serve; do
  printf '%-22s %9.2f %11.0f %9d MiB\n' "$name" "${SECS[$name]}" \
    "$(echo "$BYTES / ${SECS[$name]} / 1000000" | bc -l)" "$(( RSS[$name] / 1024 ))"
done
RATIO=$(echo "${SECS[skopeo_copy]} / ${SECS[ferry]}" | bc -l)
RATIO_SERVE=$(echo "${SECS[skopeo_to_serve]} / ${SECS[ferry_to_serve]}" | bc -l)
printf '\nferry push is %.2fx faster than skopeo copy into registry:2 (target >= 3x); peak RSS %d MiB (target < 64 MiB)\n' \
  "$RATIO" "$(( RSS[ferry] / 1024 ))"
FLOOR=$(echo "($REG_CPU + $FERRY_CPU) / $(nproc)" | bc -l)
printf 'CPU of that push: registry:2 %.2f s (%.2f s for skopeo'"'"'s), ferry %.2f s; over %d cores no push into this registry:2 takes under %.2f s,\n' \
  "$REG_CPU" "$REG_CPU_SKOPEO" "$FERRY_CPU" "$(nproc)" "$FLOOR"
printf '  so no client can be more than %.2fx faster than skopeo here\n' "$(echo "${SECS[skopeo_copy]} / $FLOOR" | bc -l)"
printf 'into ferry-installer serve (a registry that is not the bottleneck): %.2fx\n' "$RATIO_SERVE"
printf 'from the bundle (two passes, no store): %.2fx skopeo copy from a store; peak RSS %d MiB\n' \
  "$(echo "${SECS[skopeo_copy]} / ${SECS[ferry_bundle]}" | bc -l)" "$(( RSS[ferry_bundle] / 1024 ))"
