//! The API's high availability (`[ha] mode = "haproxy-keepalived"`): on every
//! control plane, haproxy on the VIP balances TCP across every apiserver, with a
//! TLS health check of `/readyz`, and keepalived holds the VIP where haproxy runs,
//! by VRRP. Both come from the site's OS packages; the VIP needs
//! `net.ipv4.ip_nonlocal_bind` so haproxy can listen on it before it arrives.

use std::net::IpAddr;

use super::{host, put, Tree};
use crate::install::inventory::Node;

fn haproxy(vip: IpAddr, port: u16, backends: &[&Node]) -> String {
    let mut out = format!(
        r#"# Written by ferry-installer plan: the Kubernetes API on the VIP, balanced
# across every control plane's apiserver.
global
  maxconn 4000
  log stdout format raw local0

defaults
  mode tcp
  log global
  option tcplog
  option dontlognull
  timeout connect 5s
  timeout client 30m
  timeout server 30m
  timeout check 5s

frontend kube-apiserver
  bind {vip}:{port}
  default_backend kube-apiserver

backend kube-apiserver
  balance roundrobin
  option httpchk GET /readyz
  http-check expect status 200
  default-server check check-ssl verify none inter 2s fall 2 rise 2
"#,
        vip = host(vip)
    );
    for b in backends {
        out.push_str(&format!("  server {} {}:{port}\n", b.name, host(b.address)));
    }
    out
}

fn keepalived(me: &str, rank: usize, vip: IpAddr, interface: &str, router_id: u8) -> String {
    format!(
        r#"# Written by ferry-installer plan: the VIP {vip} lives where haproxy runs.
global_defs {{
  router_id {me}
  script_user root
  enable_script_security
}}

vrrp_script chk_haproxy {{
  script "/usr/bin/pgrep -x haproxy"
  interval 2
  fall 2
  rise 2
}}

vrrp_instance kube_apiserver {{
  state BACKUP
  interface {interface}
  virtual_router_id {router_id}
  priority {priority}
  advert_int 1
  nopreempt
  virtual_ipaddress {{
    {vip}
  }}
  track_script {{
    chk_haproxy
  }}
}}
"#,
        priority = 150usize.saturating_sub(rank).max(1)
    )
}

/// The HA files of control plane `me` (the `rank`th of them).
#[allow(clippy::too_many_arguments)]
pub fn render(
    me: &str,
    rank: usize,
    vip: IpAddr,
    port: u16,
    interface: &str,
    router_id: u8,
    backends: &[&Node],
    tree: &mut Tree,
) {
    put(
        tree,
        "etc/haproxy/haproxy.cfg",
        haproxy(vip, port, backends),
    );
    put(
        tree,
        "etc/keepalived/keepalived.conf",
        keepalived(me, rank, vip, interface, router_id),
    );
    put(
        tree,
        "etc/sysctl.d/99-ferry-ha.conf",
        "# Written by ferry-installer plan: haproxy listens on the VIP before it arrives.\nnet.ipv4.ip_nonlocal_bind = 1\n".into(),
    );
}

/// The steps that start them.
pub fn steps() -> Vec<String> {
    vec![
        "sysctl --system".into(),
        "systemctl enable --now haproxy".into(),
        "systemctl restart haproxy".into(),
        "systemctl enable --now keepalived".into(),
        "systemctl restart keepalived".into(),
    ]
}
