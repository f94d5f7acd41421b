#!/usr/bin/env bash
# Benchmark: `ferry-installer plan` for inventories of 10, 100 and 1000 nodes (3
# control planes with etcd behind a VIP, the rest workers), from one unpacked bundle.
# Prints the time and peak RSS of each, and how time grows per node.
#
#   benches/plan_scale.sh
#
# Target: 1000 nodes in under 10 s on 2 cores, growing no faster than linearly.
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/common.sh

need docker-registry docker-registry
need_time
build_release ferry-bundler ferry-installer ferry-testkit
work_dir ferry-bench-plan
start_registry

echo "== a bundle with registry.k8s.io/pause and kube-apiserver"
mkdir -p "$WORK/rootfs"
echo "stand-in" >"$WORK/rootfs/README"
for image in pause:3.10 kube-apiserver:v1.31.14; do
  "$BIN/ferry-push-rootfs" --registry "http://127.0.0.1:$REG_PORT" --repo "${image%%:*}" \
    --tag "${image#*:}" --rootfs "$WORK/rootfs" >/dev/null
done
cat >"$WORK/spec.toml" <<TOML
name = "bench-plan"
version = "1"
platforms = ["linux/amd64"]
images = ["registry.k8s.io/pause:3.10", "registry.k8s.io/kube-apiserver:v1.31.14"]
TOML
cat >"$WORK/mirrors.toml" <<TOML
[[registry]]
host = "registry.k8s.io"
skip_upstream = true
endpoints = [{ url = "http://127.0.0.1:$REG_PORT" }]
TOML
"$BIN/ferry-bundler" keygen --no-password --name k --out "$WORK" >/dev/null
"$BIN/ferry-bundler" build "$WORK/spec.toml" --mirrors "$WORK/mirrors.toml" --store "$WORK/store" \
  --key "$WORK/k.key" -o "$WORK/b.tar.zst" --quiet
"$BIN/ferry-installer" unpack "$WORK/b.tar.zst" --key "$WORK/k.pub" --store "$WORK/site" --quiet

printf '\n%-8s %10s %14s %12s\n' "nodes" "seconds" "ms per node" "peak RSS"
for n in 10 100 1000; do
  "$BIN/ferry-installer" init-cluster --nodes "$n" -o "$WORK/cluster-$n.toml" --force >/dev/null
  timed "plan$n" "$BIN/ferry-installer" plan "$WORK/cluster-$n.toml" --store "$WORK/site" \
    --out "$WORK/plan-$n" --pki "$WORK/pki" --state "$WORK/state-$n"
  printf '%-8s %10.2f %14.2f %9d MiB\n' "$n" "$TIMED_SECS" \
    "$(echo "$TIMED_SECS * 1000 / $n" | bc -l)" "$(( TIMED_RSS / 1024 ))"
done
