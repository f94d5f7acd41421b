#!/usr/bin/env bash
# Benchmark: `ferry-installer plan` for inventories of 10, 100 and 1000 nodes (3
# control planes with etcd behind a VIP, the rest workers), from one unpacked bundle.
# The bundle carries the release's programs (upstream-sized random bytes in upstream's
# archive shapes, ~600 MiB unpacked per node): each is unpacked once per plan and
# hard-linked into every node. Prints the time and peak RSS of each, and how time
# grows per node.
#
#   benches/plan_scale.sh
#
# Target: 1000 nodes in under 10 s on 2 cores, growing no faster than linearly.
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/common.sh

need docker-registry docker-registry
need curl curl
need_time
build_release ferry-bundler ferry-installer ferry-testkit
work_dir ferry-bench-plan
start_registry

echo "== a bundle with the release's programs, addons and their images"
mkdir -p "$WORK/rootfs"
echo "stand-in" >"$WORK/rootfs/README"
ADDON_IMAGES="calico/cni:v3.29.7 calico/node:v3.29.7 calico/kube-controllers:v3.29.7
  dns/k8s-dns-node-cache:1.26.4 metrics-server/metrics-server:v0.7.0
  postfinance/kubelet-csr-approver:v1.2.10"
for image in pause:3.10 kube-apiserver:v1.31.14 $ADDON_IMAGES; do
  "$BIN/ferry-push-rootfs" --registry "http://127.0.0.1:$REG_PORT" --repo "${image%%:*}" \
    --tag "${image#*:}" --rootfs "$WORK/rootfs" >/dev/null
done
# The release files, shaped as upstream ships them and about as large (MiB of random
# bytes): what a real plan unpacks and links into every node.
SRV="$WORK/srv"
mkdir -p "$SRV" "$WORK/pack"
blob() { head -c $(($2 * 1024 * 1024)) /dev/urandom >"$1"; chmod 755 "$1"; }
for f in kubelet:77 kubeadm:56 kubectl:55; do blob "$SRV/${f%%:*}" "${f#*:}"; done
blob "$SRV/runc.amd64" 11
mkdir -p "$WORK/pack/containerd/bin" "$WORK/pack/etcd/etcd-v3.5.29-linux-amd64" \
  "$WORK/pack/helm/linux-amd64" "$WORK/pack/cni" "$WORK/pack/crictl"
for f in containerd:52 containerd-shim-runc-v2:12 ctr:24; do blob "$WORK/pack/containerd/bin/${f%%:*}" "${f#*:}"; done
for f in etcd:23 etcdctl:17 etcdutl:15; do blob "$WORK/pack/etcd/etcd-v3.5.29-linux-amd64/${f%%:*}" "${f#*:}"; done
blob "$WORK/pack/helm/linux-amd64/helm" 52
blob "$WORK/pack/crictl/crictl" 40
for p in bandwidth bridge dhcp firewall host-device host-local ipvlan loopback macvlan portmap \
  ptp sbr static tuning vlan vrf; do blob "$WORK/pack/cni/$p" 4; done
tar -C "$WORK/pack/containerd" -czf "$SRV/containerd-1.7.27-linux-amd64.tar.gz" bin
tar -C "$WORK/pack/etcd" -czf "$SRV/etcd-v3.5.29-linux-amd64.tar.gz" etcd-v3.5.29-linux-amd64
tar -C "$WORK/pack/helm" -czf "$SRV/helm-v3.16.4-linux-amd64.tar.gz" linux-amd64
tar -C "$WORK/pack/crictl" -czf "$SRV/crictl-v1.31.1-linux-amd64.tar.gz" crictl
tar -C "$WORK/pack/cni" -czf "$SRV/cni-plugins-linux-amd64-v1.4.1.tgz" .
rm -rf "$WORK/pack"
# The addons, as upstream publishes them (tests/data/addons).
cp tests/data/addons/{calico,nodelocaldns,metrics-server-components}.yaml "$SRV/"
CHART=kubelet-csr-approver-1.2.10.tgz
cp "tests/data/addons/$CHART" "$SRV/"
cat >"$SRV/index.yaml" <<YAML
apiVersion: v1
entries:
  kubelet-csr-approver:
    - apiVersion: v2
      name: kubelet-csr-approver
      version: 1.2.10
      digest: $(sha256sum "$SRV/$CHART" | cut -d' ' -f1)
      urls: [$CHART]
YAML
FPORT=$(free_port)
python3 -m http.server --bind 127.0.0.1 --directory "$SRV" "$FPORT" >/dev/null 2>&1 &
PIDS+=("$!")
for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$FPORT/kubelet" -r 0-0 && break; sleep 0.05; done
file() { printf '\n[[files]]\nname = "%s"\nversion = "%s"\nurl = "https://files.bench.example/%s"\n' "$@"; }
{
  cat <<TOML
name = "bench-plan"
version = "1"
platforms = ["linux/amd64"]
images = ["registry.k8s.io/pause:3.10", "registry.k8s.io/kube-apiserver:v1.31.14",
  "docker.io/calico/cni:v3.29.7", "docker.io/calico/node:v3.29.7",
  "docker.io/calico/kube-controllers:v3.29.7", "registry.k8s.io/dns/k8s-dns-node-cache:1.26.4",
  "registry.k8s.io/metrics-server/metrics-server:v0.7.0",
  "ghcr.io/postfinance/kubelet-csr-approver:v1.2.10"]

[[charts]]
name = "kubelet-csr-approver"
version = "1.2.10"
repo = "https://files.bench.example"
TOML
  file kubelet 1.31.14 kubelet
  file kubeadm 1.31.14 kubeadm
  file kubectl 1.31.14 kubectl
  file runc 1.2.6 'runc.{arch}'
  file containerd 1.7.27 'containerd-{version}-{os}-{arch}.tar.gz'
  file etcd 3.5.29 'etcd-v{version}-{os}-{arch}.tar.gz'
  file helm 3.16.4 'helm-v{version}-{os}-{arch}.tar.gz'
  file crictl 1.31.1 'crictl-v{version}-{os}-{arch}.tar.gz'
  file cni-plugins 1.4.1 'cni-plugins-{os}-{arch}-v{version}.tgz'
  for f in calico.yaml nodelocaldns.yaml metrics-server-components.yaml; do
    file "$f" 1 "$f"
    echo 'platforms = []'
  done
} >"$WORK/spec.toml"
cat >"$WORK/mirrors.toml" <<TOML
[[registry]]
host = "registry.k8s.io"
skip_upstream = true
endpoints = [{ url = "http://127.0.0.1:$REG_PORT" }]

[[registry]]
host = "docker.io"
skip_upstream = true
endpoints = [{ url = "http://127.0.0.1:$REG_PORT" }]

[[registry]]
host = "ghcr.io"
skip_upstream = true
endpoints = [{ url = "http://127.0.0.1:$REG_PORT" }]

[[files]]
host = "files.bench.example"
mirrors = ["http://127.0.0.1:$FPORT"]
skip_upstream = true
TOML
"$BIN/ferry-bundler" keygen --no-password --name k --out "$WORK" >/dev/null
"$BIN/ferry-bundler" lock "$WORK/spec.toml" --mirrors "$WORK/mirrors.toml" -o "$WORK/spec.lock" --quiet
"$BIN/ferry-bundler" build "$WORK/spec.toml" --lock "$WORK/spec.lock" --mirrors "$WORK/mirrors.toml" \
  --store "$WORK/store" --key "$WORK/k.key" -o "$WORK/b.tar.zst" --quiet
"$BIN/ferry-installer" unpack "$WORK/b.tar.zst" --key "$WORK/k.pub" --store "$WORK/site" --quiet
rm -rf "$SRV" "$WORK/store" "$WORK/b.tar.zst"

printf '\n%-8s %10s %14s %12s\n' "nodes" "seconds" "ms per node" "peak RSS"
for n in 10 100 1000; do
  rm -rf "$WORK/plan-$n"
  "$BIN/ferry-installer" init-cluster --nodes "$n" -o "$WORK/cluster-$n.toml" --force >/dev/null
  timed "plan$n" "$BIN/ferry-installer" plan "$WORK/cluster-$n.toml" --store "$WORK/site" \
    --out "$WORK/plan-$n" --pki "$WORK/pki" --state "$WORK/state-$n"
  printf '%-8s %10.2f %14.2f %9d MiB\n' "$n" "$TIMED_SECS" \
    "$(echo "$TIMED_SECS * 1000 / $n" | bc -l)" "$(( TIMED_RSS / 1024 ))"
done
