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
source benches/common.sh

TOTAL_MIB=${1:-1024}
IMAGES=16
LAYERS=4
SHARED=1
# Per image: LAYERS layers per platform, two platforms, SHARED layers shared by all images.
LAYER_SIZE=$(( TOTAL_MIB * 1024 * 1024 / (IMAGES * LAYERS * 2) ))

need docker-registry docker-registry
need skopeo skopeo
need_time

build_release ferry-bundler ferry-testkit
work_dir ferry-bench

start_registry

echo "== seeding $IMAGES images x 2 platforms x $LAYERS layers of $((LAYER_SIZE / 1024)) KiB into registry:2 on 127.0.0.1:$REG_PORT"
seed_registry --images "$IMAGES" \
  --platforms linux/amd64,linux/arm64 --layers-per-image "$LAYERS" --layer-size "$LAYER_SIZE" \
  --shared-layers "$SHARED" --flavor mixed --spec-out "$WORK/spec.toml"
ferry_lock spec
REPOS=$(grep -o 'bench\.example\.io/bench/img[0-9]*' "$WORK/spec.toml" | sed 's#bench.example.io/##')

# Every measurement starts with the page cache flushed to disk and ends with its own
# output on disk (a trailing `sync`): ferry fsyncs each blob, skopeo does not, and
# without this one tool would pay for the other's writeback.
declare -A SECS RSS
# measure NAME CMD... : runs CMD under /usr/bin/time, records seconds and peak RSS (KiB).
measure() {
  local name=$1; shift
  timed "$name" "$@"
  SECS[$name]=$TIMED_SECS
  RSS[$name]=$TIMED_RSS
}
# A loop of commands: wall time of the whole loop, peak RSS of the largest one.
measure_loop() {
  local name=$1; shift
  local start end peak=0 rss
  mkdir -p "$WORK/$name"
  sync
  start=$(date +%s.%N)
  for repo in $REPOS; do
    /usr/bin/time -f "%M" -o "$WORK/rss" "$@" "docker://127.0.0.1:$REG_PORT/$repo:v1" "dir:$WORK/$name/${repo//\//_}" \
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
  echo "127.0.0.1:$REG_PORT:"
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
