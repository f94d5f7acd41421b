#!/usr/bin/env bash
# Benchmark: packing and unpacking a bundle against GNU tar and the zstd CLI, over
# the same ~1 GiB OCI layout, in one run.
#
#   benches/bundle_vs_tar_zstd.sh [TOTAL_MIB]      (default 1024)
#
# pack:    ferry-bundler build (sign; already-compressed entries in raw zstd
#          blocks, the rest zstd -T0 at the same level)
#          vs  tar -c | zstd -T0 -3
# unpack:  ferry-installer unpack (signature, then one streaming pass that hashes
#          every entry and writes it with fsync)
#          vs  zstd -dc | tar -x, then sha256sum of every blob (the careful two-pass way)
#          vs  zstd -dc | tar -x alone (no check at all: the limit for one pass)
# Each measurement starts and ends with `sync`, so every tool pays for its own
# writes reaching the disk. Targets (issue 16): pack in at most 0.5x the time of
# tar|zstd -3; verify+unpack >= 3x faster than the two-pass peer and in at most
# 0.8x the time of the unchecked extraction.
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/common.sh

TOTAL_MIB=${1:-1024}
IMAGES=16
LAYERS=4
LAYER_SIZE=$(( TOTAL_MIB * 1024 * 1024 / (IMAGES * LAYERS * 2) ))
LEVEL=3

for tool in docker-registry zstd tar sha256sum bc minisign; do
  command -v $tool >/dev/null || { echo "missing $tool" >&2; exit 1; }
done
need_time

build_release ferry-bundler ferry-installer ferry-testkit
work_dir ferry-bundle-bench

start_registry
seed_registry --images "$IMAGES" \
  --platforms linux/amd64,linux/arm64 --layers-per-image "$LAYERS" --layer-size "$LAYER_SIZE" \
  --shared-layers 1 --flavor mixed --spec-out "$WORK/spec.toml"
ferry_lock spec
ferry_pull spec
"$BIN/ferry-bundler" keygen --out "$WORK" --name bench --no-password >/dev/null
stop_registry
BYTES=$(du -sb "$WORK/store/blobs" | cut -f1)
echo "== layout: $(( BYTES / 1024 / 1024 )) MiB in $(ls "$WORK/store/blobs/sha256" | wc -l) blobs"

declare -A SECS RSS
RUNS=${RUNS:-3}
# measure NAME CLEANUP COMMAND: runs the shell command line RUNS times (CLEANUP first
# each time), each time from a synced disk and including a final sync; keeps the best
# wall time and the largest peak RSS. The disk of a shared VM is noisy: one run says little.
measure() {
  local name=$1 cleanup=$2 cmd=$3
  SECS[$name]=""; RSS[$name]=0
  for _ in $(seq "$RUNS"); do
    bash -c "$cleanup"
    timed "$name" bash -c "$cmd"
    if [ -z "${SECS[$name]}" ] || (( $(echo "$TIMED_SECS < ${SECS[$name]}" | bc) )); then SECS[$name]=$TIMED_SECS; fi
    if (( TIMED_RSS > RSS[$name] )); then RSS[$name]=$TIMED_RSS; fi
  done
}
# /usr/bin/time on `bash -c` reports the largest process of the pipeline it waited for.

S="$WORK/store"
BUILD="'$BIN/ferry-bundler' build '$WORK/spec.toml' --lock '$WORK/spec.lock' --mirrors '$WORK/mirrors.toml' --store '$S' --key '$WORK/bench.key' --quiet"
echo "== pack (best of $RUNS)"
measure tar_zstd "rm -f '$WORK/peer.tar.zst'" "tar -c -C '$S' oci-layout index.json blobs | zstd -T0 -$LEVEL -q -o '$WORK/peer.tar.zst'"
measure ferry_build "rm -f '$WORK/ferry.tar.zst'*" "$BUILD -o '$WORK/ferry.tar.zst' --level $LEVEL"
# The floor of any build: the detached signature is minisign's prehashed one, a
# BLAKE2b-512 of every byte of the bundle, which no thread can share. minisign -V
# of the bundle (in the page cache) is that hash alone.
measure blake2b_floor "true" "minisign -V -q -p '$WORK/bench.pub' -m '$WORK/ferry.tar.zst'"
echo "== unpack (best of $RUNS)"
measure unchecked "rm -rf '$WORK/x1'; mkdir '$WORK/x1'" "zstd -dc '$WORK/peer.tar.zst' | tar -x -C '$WORK/x1'"
measure two_pass "rm -rf '$WORK/x2'; mkdir '$WORK/x2'" "zstd -dc '$WORK/peer.tar.zst' | tar -x -C '$WORK/x2' && cd '$WORK/x2/blobs/sha256' && ls | awk '{print \$1\"  \"\$1}' | sha256sum -c --quiet"
measure ferry_unpack "rm -rf '$WORK/site'" "'$BIN/ferry-installer' unpack '$WORK/ferry.tar.zst' --key '$WORK/bench.pub' --store '$WORK/site' --quiet"

echo "== zstd levels (ferry build, best of $RUNS)"
for level in 1 3 9; do
  measure "level$level" "rm -f '$WORK/l.tar.zst'*" "$BUILD -o '$WORK/l.tar.zst' --level $level"
  printf '  level %d: %6.2f s  %d MiB\n' "$level" "${SECS[level$level]}" "$(( $(stat -c %s "$WORK/l.tar.zst") / 1024 / 1024 ))"
done
rm -f "$WORK/l.tar.zst"*

echo
printf '%-14s %9s %9s %12s\n' "step" "seconds" "MB/s" "peak RSS"
for name in tar_zstd ferry_build blake2b_floor unchecked two_pass ferry_unpack; do
  printf '%-14s %9.2f %9.0f %8d MiB\n' "$name" "${SECS[$name]}" \
    "$(echo "$BYTES / ${SECS[$name]} / 1000000" | bc -l)" "$(( RSS[$name] / 1024 ))"
done
echo
printf 'pack:   ferry build takes %.2fx the time of tar|zstd -%d (target <= 0.5)\n' \
  "$(echo "${SECS[ferry_build]} / ${SECS[tar_zstd]}" | bc -l)" "$LEVEL"
printf '        hashing the bundle once (minisign -V, BLAKE2b-512) takes %.2fx: no build is faster\n' \
  "$(echo "${SECS[blake2b_floor]} / ${SECS[tar_zstd]}" | bc -l)"
printf 'unpack: ferry unpack is %.2fx faster than extract + sha256sum (target >= 3)\n' \
  "$(echo "${SECS[two_pass]} / ${SECS[ferry_unpack]}" | bc -l)"
printf '        and takes %.2fx the time of the unchecked extraction (target <= 0.8)\n' \
  "$(echo "${SECS[ferry_unpack]} / ${SECS[unchecked]}" | bc -l)"
printf '        peak RSS %d MiB (target < 100 MiB)\n' "$(( RSS[ferry_unpack] / 1024 ))"
