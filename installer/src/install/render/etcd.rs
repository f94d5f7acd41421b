//! etcd on the hosts, as kubespray runs it by default: a systemd unit per member
//! with TLS for clients and peers and the initial cluster of every member, and a
//! snapshot service and timer (every 6 hours, the last 7 kept, each checked with
//! `etcdctl snapshot status`). Settings are kubespray's `roles/etcd/defaults/main.yml`
//! (a stored copy at 03bcfa7f): heartbeat 250 ms, election timeout 5000 ms,
//! compaction retention 8 h, basic metrics, data in /var/lib/etcd.

use super::{host, put, Tree};
use crate::install::inventory::Node;

/// Where the snapshots go.
pub const BACKUP_DIR: &str = "/var/lib/etcd-backup";
/// How many snapshots are kept.
pub const KEEP: usize = 7;

/// The unit of `me`, one of `members`; `token` names the cluster.
fn unit(me: &Node, members: &[&Node], token: &str) -> String {
    let a = host(me.address);
    let initial: Vec<String> = members
        .iter()
        .map(|m| format!("{}=https://{}:2380", m.name, host(m.address)))
        .collect();
    format!(
        r#"# Written by ferry-installer plan: etcd member {name} of {token}.
[Unit]
Description=etcd key-value store ({name})
Documentation=https://etcd.io/docs/
After=network-online.target
Wants=network-online.target

[Service]
Type=notify
User=root
ExecStart=/usr/local/bin/etcd \
  --name={name} \
  --data-dir=/var/lib/etcd \
  --listen-client-urls=https://{a}:2379 \
  --advertise-client-urls=https://{a}:2379 \
  --listen-peer-urls=https://{a}:2380 \
  --initial-advertise-peer-urls=https://{a}:2380 \
  --initial-cluster={initial} \
  --initial-cluster-state=new \
  --initial-cluster-token={token} \
  --cert-file=/etc/kubernetes/pki/etcd/server.crt \
  --key-file=/etc/kubernetes/pki/etcd/server.key \
  --trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt \
  --client-cert-auth=true \
  --peer-cert-file=/etc/kubernetes/pki/etcd/peer.crt \
  --peer-key-file=/etc/kubernetes/pki/etcd/peer.key \
  --peer-trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt \
  --peer-client-cert-auth=true \
  --heartbeat-interval=250 \
  --election-timeout=5000 \
  --auto-compaction-retention=8 \
  --metrics=basic
Restart=on-failure
RestartSec=5s
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
"#,
        name = me.name,
        initial = initial.join(",")
    )
}

fn snapshot_script(me: &Node) -> String {
    format!(
        r#"#!/bin/sh
# Written by ferry-installer plan: one etcd snapshot of {name}, checked, and the
# last {KEEP} kept in $BACKUP_DIR.
set -eu
BACKUP_DIR=${{BACKUP_DIR:-{BACKUP_DIR}}}
PKI=${{PKI:-/etc/kubernetes/pki/etcd}}
ETCDCTL=${{ETCDCTL:-/usr/local/bin/etcdctl}}
mkdir -p "$BACKUP_DIR"
file="$BACKUP_DIR/snapshot-$(date -u +%Y%m%dT%H%M%SZ).db"
ETCDCTL_API=3 "$ETCDCTL" --endpoints=https://{a}:2379 \
  --cacert="$PKI/ca.crt" --cert="$PKI/healthcheck-client.crt" --key="$PKI/healthcheck-client.key" \
  snapshot save "$file.part"
ETCDCTL_API=3 "$ETCDCTL" snapshot status "$file.part" >/dev/null
mv "$file.part" "$file"
ls -1t "$BACKUP_DIR"/snapshot-*.db | tail -n +{keep_from} | xargs -r rm -f
"#,
        name = me.name,
        a = host(me.address),
        keep_from = KEEP + 1
    )
}

const SNAPSHOT_SERVICE: &str = "\
# Written by ferry-installer plan.
[Unit]
Description=etcd snapshot
After=etcd.service

[Service]
Type=oneshot
ExecStart=/usr/local/bin/ferry-etcd-snapshot
";

const SNAPSHOT_TIMER: &str = "\
# Written by ferry-installer plan: an etcd snapshot every 6 hours.
[Unit]
Description=etcd snapshot every 6 hours

[Timer]
OnCalendar=*-*-* 00/6:00:00
Persistent=true
RandomizedDelaySec=10min

[Install]
WantedBy=timers.target
";

/// The files of etcd member `me`.
pub fn render(me: &Node, members: &[&Node], token: &str, tree: &mut Tree) {
    put(
        tree,
        "etc/systemd/system/etcd.service",
        unit(me, members, token),
    );
    tree.insert(
        "usr/local/bin/ferry-etcd-snapshot".into(),
        (snapshot_script(me).into_bytes(), 0o755),
    );
    put(
        tree,
        "etc/systemd/system/ferry-etcd-snapshot.service",
        SNAPSHOT_SERVICE.into(),
    );
    put(
        tree,
        "etc/systemd/system/ferry-etcd-snapshot.timer",
        SNAPSHOT_TIMER.into(),
    );
}

/// The steps that start it.
pub fn steps() -> Vec<String> {
    vec![
        "systemctl daemon-reload".into(),
        "systemctl enable --now etcd".into(),
        "systemctl enable --now ferry-etcd-snapshot.timer".into(),
    ]
}
