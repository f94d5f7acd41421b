#!/usr/bin/env bash
# Benchmark: `ferry-installer serve` against registry:2 (Debian's docker-registry)
# serving the same images, in one run, one server at a time on loopback.
#
#   benches/registry_vs_registry2.sh [SECONDS]      (default 10 per wrk run)
#
# Measures, for each server:
#   - manifest GET requests/s at 64 connections and p99 latency (wrk, 2 threads),
#     by tag, with the Accept header containerd sends;
#   - blob throughput for 1 and for 32 parallel downloads of a 100 MiB blob (curl);
#   - peak RSS (VmHWM) over the whole run.
# Both serve plain HTTP. registry:2 runs with its access log off and level=error
# (its fastest setting); ferry keeps its access log on (to a file).
# Targets: ferry >= 10x registry:2's manifest req/s, blob throughput >= registry:2,
# lower peak RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/common.sh

DURATION=${1:-10}
need docker-registry docker-registry
need wrk wrk
need curl curl
need python3 python3

build_release ferry-bundler ferry-installer ferry-testkit
work_dir ferry-regbench

hwm_kib() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }

start_registry

echo "== seeding registry:2: 8 multi-arch images (1 MiB layers) and one 100 MiB layer"
seed_registry --images 8 \
  --platforms linux/amd64,linux/arm64 --layers-per-image 2 --layer-size 1048576 \
  --flavor mixed --prefix bench --spec-out "$WORK/small.toml" >/dev/null
seed_registry --images 1 \
  --platforms linux/amd64 --layers-per-image 1 --layer-size $((100 * 1024 * 1024)) \
  --flavor oci --prefix big --spec-out "$WORK/big.toml" >/dev/null

echo "== filling the ferry store with ferry-bundler pull (the same bytes)"
for s in small big; do
  ferry_lock $s
  ferry_pull $s
done

FERRY_PORT=$(free_port)
"$BIN/ferry-installer" serve --store "$WORK/store" --tls off --addr "127.0.0.1:$FERRY_PORT" \
  2>"$WORK/ferry.log" &
FERRY_PID=$!
PIDS+=("$FERRY_PID")
wait_up "127.0.0.1:$FERRY_PORT"

ACCEPT="application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"
# The same image under each server's name for it.
REG_MANIFEST="http://127.0.0.1:$REG_PORT/v2/bench/img0/manifests/v1"
FERRY_MANIFEST="http://127.0.0.1:$FERRY_PORT/v2/bench/img0/manifests/v1?ns=bench.example.io"
# The 100 MiB layer: big/img0 is a one-platform OCI index.
BIG_LAYER=$(python3 - "$REG_PORT" "$ACCEPT" <<'PY'
import json, sys, urllib.request
port, accept = sys.argv[1], sys.argv[2]
def get(path):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Accept": accept})
    return json.load(urllib.request.urlopen(req))
top = get("/v2/big/img0/manifests/v1")
m = get("/v2/big/img0/manifests/" + top["manifests"][0]["digest"]) if "manifests" in top else top
print(m["layers"][0]["digest"])
PY
)
REG_BLOB="http://127.0.0.1:$REG_PORT/v2/big/img0/blobs/$BIG_LAYER"
FERRY_BLOB="http://127.0.0.1:$FERRY_PORT/v2/bench.example.io/big/img0/blobs/$BIG_LAYER"

# Both must serve the same bytes before anything is timed.
a=$(curl -sf -H "Accept: $ACCEPT" "$REG_MANIFEST" | sha256sum)
b=$(curl -sf -H "Accept: $ACCEPT" "$FERRY_MANIFEST" | sha256sum)
[ "$a" = "$b" ] || { echo "manifests differ between the servers" >&2; exit 1; }

declare -A RPS P99 MBS1 MBS32 RSS
# wrk_run NAME URL
wrk_run() {
  local out
  out=$(wrk -t2 -c64 -d"${DURATION}s" --latency -H "Accept: $ACCEPT" "$2")
  echo "$out" | sed 's/^/    /'
  if echo "$out" | grep -q "Non-2xx"; then echo "$1 answered errors" >&2; exit 1; fi
  RPS[$1]=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  P99[$1]=$(echo "$out" | awk '$1 == "99%" {print $2}')
}
# to_ms 1.23ms|456us|1.2s
to_ms() { python3 -c "import sys,re; v=sys.argv[1]; n,u=re.match(r'([0-9.]+)(\w+)',v).groups(); print(float(n)*{'us':0.001,'ms':1,'s':1000,'m':60000}[u])" "$1"; }
# blobs NAME URL PARALLEL -> MB/s over all downloads
blobs() {
  local start end i
  start=$(date +%s.%N)
  for i in $(seq "$3"); do
    curl -sf -o /dev/null "$2" &
  done
  wait_curls
  end=$(date +%s.%N)
  python3 -c "print(round($3 * 100 * 1048576 / ($end - $start) / 1e6))"
}
wait_curls() { for j in $(jobs -p); do case " ${PIDS[*]} " in *" $j "*) ;; *) wait "$j" || { echo "a download failed" >&2; exit 1; };; esac; done; }

for name in registry2 ferry; do
  if [ $name = registry2 ]; then M=$REG_MANIFEST; B=$REG_BLOB; P=$REG_PID; else M=$FERRY_MANIFEST; B=$FERRY_BLOB; P=$FERRY_PID; fi
  echo "== $name: manifest GETs, 64 connections, ${DURATION}s"
  wrk_run $name "$M"
  curl -sf -o /dev/null "$B"   # warm the page cache for both alike
  echo "== $name: 1 and 32 parallel downloads of the 100 MiB blob"
  MBS1[$name]=$(blobs $name "$B" 1)
  MBS32[$name]=$(blobs $name "$B" 32)
  RSS[$name]=$(hwm_kib "$P")
done

echo
printf '%-10s %12s %10s %14s %15s %10s\n' server "manifest/s" "p99 ms" "blob MB/s x1" "blob MB/s x32" "peak RSS"
for name in registry2 ferry; do
  printf '%-10s %12.0f %10.2f %14d %15d %6d MiB\n' $name "${RPS[$name]}" "$(to_ms "${P99[$name]}")" \
    "${MBS1[$name]}" "${MBS32[$name]}" "$(( RSS[$name] / 1024 ))"
done
python3 - "${RPS[ferry]}" "${RPS[registry2]}" "$(to_ms "${P99[registry2]}")" "$(to_ms "${P99[ferry]}")" \
  "${MBS1[ferry]}" "${MBS1[registry2]}" "${MBS32[ferry]}" "${MBS32[registry2]}" \
  "${RSS[ferry]}" "${RSS[registry2]}" <<'PY'
import sys
f_rps, r_rps, r_p99, f_p99, f1, r1, f32, r32, f_rss, r_rss = map(float, sys.argv[1:])
print()
print(f"manifest req/s: ferry {f_rps / r_rps:.1f}x registry:2 (target >= 10x)")
print(f"manifest p99:   registry:2 {r_p99:.2f} ms, ferry {f_p99:.2f} ms ({r_p99 / f_p99:.1f}x lower)")
print(f"blob x1:        ferry {f1 / r1:.2f}x registry:2 (target >= 1x)")
print(f"blob x32:       ferry {f32 / r32:.2f}x registry:2 (target >= 1x)")
print(f"peak RSS:       ferry {f_rss / r_rss:.2f}x registry:2 (target < 1x)")
PY
