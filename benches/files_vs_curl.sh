#!/usr/bin/env bash
# Benchmark: `ferry-bundler pull` of files (binaries, archives) against curl
# downloading the same set in parallel followed by `sha256sum -c`, from one loopback
# HTTP server (busybox httpd), in one run. Both end with every file on disk and
# checked against its sha256.
#
#   benches/files_vs_curl.sh [TOTAL_MIB]      (default 1024)
#
# Prints wall time, throughput and peak RSS of each, and the ratio. Target: ferry
# >= 2x curl --parallel + sha256sum, peak RSS < 64 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/common.sh

TOTAL_MIB=${1:-1024}
FILES=16
FILE_MIB=$(( TOTAL_MIB / FILES ))

need busybox busybox-static
need curl curl
need sha256sum coreutils
need_time

build_release ferry-bundler
work_dir ferry-bench-files

echo "== $FILES files of $FILE_MIB MiB on busybox httpd (127.0.0.1)"
mkdir -p "$WORK/srv/dl" "$WORK/curl"
for i in $(seq -w 0 $((FILES - 1))); do
  head -c $((FILE_MIB * 1024 * 1024)) /dev/urandom >"$WORK/srv/dl/f$i.bin"
done
(cd "$WORK/srv/dl" && sha256sum f*.bin >"$WORK/SHA256SUMS")
PORT=$(free_port)
busybox httpd -f -p "127.0.0.1:$PORT" -h "$WORK/srv" &
PIDS+=("$!")
for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$PORT/dl/f00.bin" -r 0-0 && break; sleep 0.05; done

{
  echo 'name = "bench-files"'
  echo 'version = "1"'
  echo 'platforms = ["linux/amd64"]'
  while read -r sum file; do
    echo
    echo '[[files]]'
    echo "name = \"${file%.bin}\""
    echo 'version = "1"'
    echo "url = \"https://files.bench.example/dl/$file\""
    echo 'platforms = []'
    echo "sha256 = \"$sum\""
  done <"$WORK/SHA256SUMS"
} >"$WORK/spec.toml"
cat >"$WORK/mirrors.toml" <<TOML
[[files]]
host = "files.bench.example"
mirrors = ["http://127.0.0.1:$PORT"]
skip_upstream = true
TOML
"$BIN/ferry-bundler" lock "$WORK/spec.toml" --mirrors "$WORK/mirrors.toml" -o "$WORK/spec.lock" --quiet

URLS=()
for i in $(seq -w 0 $((FILES - 1))); do URLS+=(-o "f$i.bin" "http://127.0.0.1:$PORT/dl/f$i.bin"); done
cat >"$WORK/curl.sh" <<SH
set -e
cd "$WORK/curl"
curl -sSf --parallel --parallel-max 8 ${URLS[*]}
sha256sum --quiet -c "$WORK/SHA256SUMS"
SH

declare -A SECS RSS
measure() {
  local name=$1; shift
  timed "$name" "$@"
  SECS[$name]=$TIMED_SECS
  RSS[$name]=$TIMED_RSS
}
echo "== curl --parallel, then sha256sum -c"
measure curl bash "$WORK/curl.sh"
echo "== ferry-bundler pull"
measure ferry "$BIN/ferry-bundler" pull "$WORK/spec.toml" --lock "$WORK/spec.lock" \
  --mirrors "$WORK/mirrors.toml" --store "$WORK/store" --jobs 8 --quiet

BYTES=$(du -sb "$WORK/srv/dl" | cut -f1)
echo
printf '%-22s %9s %11s %12s\n' "tool" "seconds" "MB/s" "peak RSS"
for name in curl ferry; do
  printf '%-22s %9.2f %11.0f %9d MiB\n' "$name" "${SECS[$name]}" \
    "$(echo "$BYTES / ${SECS[$name]} / 1000000" | bc -l)" "$(( RSS[$name] / 1024 ))"
done
RATIO=$(echo "${SECS[curl]} / ${SECS[ferry]}" | bc -l)
printf '\nferry pull of files is %.2fx faster than curl --parallel + sha256sum (target >= 2x); peak RSS %d MiB (target < 64 MiB)\n' \
  "$RATIO" "$(( RSS[ferry] / 1024 ))"
