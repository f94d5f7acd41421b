//! The inventory: the example init-cluster writes parses for any size, and every
//! kind of bad input is refused with one line naming the node and the field.

use std::path::Path;

use super::example::example;
use super::inventory::{HaMode, Inventory, RegistryPlace, Role};

fn parse(text: &str) -> Result<Inventory, String> {
    Inventory::parse(Path::new("cluster.toml"), text).map_err(|e| e.to_string())
}

#[test]
fn the_example_parses_for_every_size() {
    for n in [1, 2, 3, 4, 10, 100, 1000, 5000] {
        let inv = parse(&example(n)).unwrap_or_else(|e| panic!("{n} nodes: {e}"));
        assert_eq!(inv.nodes.len(), n);
        let etcd = inv.nodes.iter().filter(|x| x.has(Role::Etcd)).count();
        assert!(etcd % 2 == 1, "{n} nodes: {etcd} etcd members");
        assert_eq!(
            inv.ha.mode == HaMode::HaproxyKeepalived,
            n >= 3,
            "{n} nodes"
        );
    }
    // Three control planes and nothing else: they run the workloads too.
    let three = parse(&example(3)).unwrap();
    assert!(three.nodes.iter().all(|n| n.has(Role::Worker)));
    let four = parse(&example(4)).unwrap();
    assert!(!four.nodes[0].has(Role::Worker));
    let one = parse(&example(1)).unwrap();
    assert_eq!(
        one.nodes[0].roles,
        [Role::ControlPlane, Role::Etcd, Role::Worker]
    );
    assert_eq!(
        one.registry,
        RegistryPlace::Node {
            node: "node1".into(),
            port: 5000
        }
    );
    assert_eq!(one.kubernetes.service_cidr.to_string(), "10.233.0.0/18");
    assert_eq!(one.arches(), ["amd64"]);
    // Regression: from 245 nodes on, the example gave addresses past .255.
    let big = parse(&example(1000)).unwrap();
    assert_eq!(big.nodes[0].address.to_string(), "192.168.10.11");
    assert_eq!(big.nodes[239].address.to_string(), "192.168.10.250");
    assert_eq!(big.nodes[240].address.to_string(), "192.168.11.1");
}

#[test]
fn bad_inventories_are_refused_naming_the_node_and_field() {
    let ha = example(4);
    let cases: Vec<(String, &str)> = vec![
        (
            ha.replace("name = \"worker1\"", "name = \"master1\""),
            "node master1: name is used by two nodes",
        ),
        (
            ha.replace("address = \"192.168.10.14\"", "address = \"192.168.10.11\""),
            "node worker1: address 192.168.10.11 is also node master1's",
        ),
        (
            ha.replacen("roles = [\"control-plane\", \"etcd\"]", "roles = [\"control-plane\"]", 1),
            "2 nodes have the etcd role: etcd needs an odd number",
        ),
        (
            ha.replace("vip = \"192.168.10.10\"", "vip = \"192.168.10.12\"")
                .replace("192.168.10.10:6443", "192.168.10.12:6443"),
            "ha: vip 192.168.10.12 is node master2's address",
        ),
        (
            ha.replace("vip = \"192.168.10.10\"", "vip = \"10.233.64.7\"")
                .replace("192.168.10.10:6443", "10.233.64.7:6443"),
            "ha: vip 10.233.64.7 falls inside 10.233.64.0/18",
        ),
        (
            ha.replace("service_cidr = \"10.233.0.0/18\"", "service_cidr = \"10.233.0.0/16\""),
            "kubernetes: pod_cidr 10.233.64.0/18 and service_cidr 10.233.0.0/16 overlap",
        ),
        (
            ha.replace("\"control-plane\", ", ""),
            "no node has the control-plane role",
        ),
        (
            ha.replace("arch = \"amd64\"\nssh = { user = \"root\", port = 22 }\n\n[[nodes]]\nname = \"master2\"", "arch = \"s390x\"\nssh = { user = \"root\", port = 22 }\n\n[[nodes]]\nname = \"master2\""),
            "node master1: arch \"s390x\" must be amd64 or arm64",
        ),
        (
            ha.replace("node = \"master1\"", "node = \"master9\""),
            "registry: node \"master9\" is not one of the nodes",
        ),
        (
            ha.replace("node = \"master1\"", "url = \"https://harbor.site.lan\"\nnode = \"master1\""),
            "registry: give either node",
        ),
        (
            ha.replace("vip = \"192.168.10.10\"\n", ""),
            "ha: mode haproxy-keepalived needs vip",
        ),
        (
            ha.replace("192.168.10.10:6443", "192.168.10.11:6443"),
            "kubernetes: control_plane_endpoint 192.168.10.11:6443 should name the VIP",
        ),
        (
            ha.replace("192.168.10.10:6443", "192.168.10.10"),
            "kubernetes: control_plane_endpoint \"192.168.10.10\" must be host:port",
        ),
        (
            ha.replace("name = \"worker1\"", "name = \"Worker_1\""),
            "node \"Worker_1\": name must be lowercase",
        ),
        (
            ha.replace("address = \"192.168.10.14\"", "address = \"10.233.1.1\""),
            "node worker1: address 10.233.1.1 falls inside 10.233.0.0/18",
        ),
        (
            ha.replace("roles = [\"worker\"]", "roles = [\"control-plane\"]"),
            "no node has the worker role",
        ),
        (
            ha.replace("pod_cidr = \"10.233.64.0/18\"", "pod_cidr = \"10.233.64.7/18\""),
            "kubernetes: pod_cidr 10.233.64.7/18 has host bits set: the network is 10.233.64.0/18",
        ),
        // Regression: a bad prefix length was "invalid IP address syntax".
        (
            ha.replace("pod_cidr = \"10.233.64.0/18\"", "pod_cidr = \"10.233.64.0/33\""),
            "\"10.233.64.0/33\" is not a network",
        ),
        (
            ha.replace("address = \"192.168.10.14\"", "address = \"192.168.10.300\""),
            "\"192.168.10.300\" is not an IP address",
        ),
        (
            ha.replace("vip = \"192.168.10.10\"", "vip = \"192.168.10\""),
            "\"192.168.10\" is not an IP address",
        ),
        (
            ha.replacen("port = 22", "port = 0", 1),
            "node master1: ssh port 0 is not a port",
        ),
        (
            ha.replace("port = 5000", "port = 6443"),
            "registry: port 6443 on node master1 is kube-apiserver's: choose another (the default is 5000)",
        ),
        (
            ha.replace("port = 5000", "port = 2380"),
            "registry: port 2380 on node master1 is etcd (peers)'s",
        ),
        (
            ha.replace("address = \"192.168.10.13\"", "address = \"fd00::13\""),
            "node master3: address fd00::13 is IPv6, but the cluster is IPv4 (service_cidr 10.233.0.0/18): give the node's IPv4 address",
        ),
        (
            ha.replace("pod_cidr = \"10.233.64.0/18\"", "pod_cidr = \"fd00:10::/64\""),
            "kubernetes: pod_cidr fd00:10::/64 is IPv6, service_cidr 10.233.0.0/18 is IPv4",
        ),
        (
            ha.replace("vip = \"192.168.10.10\"", "vip = \"fd00::10\"")
                .replace("192.168.10.10:6443", "[fd00::10]:6443"),
            "ha: vip fd00::10 is IPv6, but the cluster is IPv4",
        ),
    ];
    for (text, want) in cases {
        let e = parse(&text).expect_err(want);
        assert!(e.starts_with("cluster.toml"), "{e}");
        assert!(e.contains(want), "want {want:?}, got {e:?}");
        assert!(!e.contains('\n'), "{e}");
    }
    // A typo in a field name is refused with its line.
    let e = parse(&ha.replace("proxy_mode", "proxy_mod")).unwrap_err();
    assert!(
        e.starts_with("cluster.toml:") && e.contains("proxy_mod"),
        "{e}"
    );
}

/// kubeadm taints a control plane NoSchedule unless its `taints` is an empty list:
/// one that is also a worker gets `taints: []`, in `init` and in `join`.
#[test]
fn a_control_plane_that_is_a_worker_is_not_tainted() {
    use super::render::kubeadm::{init, join, Cluster};
    let inv = parse(&example(4)).unwrap();
    let cluster = Cluster {
        name: "ferry",
        version: "v1.31.14",
        endpoint: "192.168.10.10:6443",
        pod_cidr: "10.233.64.0/18",
        service_cidr: "10.233.0.0/18",
        dns_domain: "cluster.local",
        ipvs: true,
        token: "abcdef.0123456789abcdef",
        ca_hash: "sha256:00",
        etcd: &[],
        cert_sans: &[],
        bind_node_address: false,
    };
    let render = |node: &super::inventory::Node, first: bool| {
        let mut tree = super::render::Tree::new();
        if first {
            init(&cluster, node, &mut tree);
        } else {
            join(&cluster, node, &mut tree);
        }
        let (path, (bytes, mode)) = tree
            .into_iter()
            .find(|(p, _)| p.contains("kubeadm-"))
            .unwrap();
        assert_eq!(mode, 0o600, "{path} holds the bootstrap token");
        String::from_utf8(bytes).unwrap()
    };
    let mut master1 = inv.nodes[0].clone();
    let mut master2 = inv.nodes[1].clone();
    let worker = inv.nodes[3].clone();
    assert!(!render(&master1, true).contains("taints"));
    assert!(!render(&master2, false).contains("taints"));
    assert!(!render(&worker, false).contains("taints"));
    master1.roles.push(Role::Worker);
    master2.roles.push(Role::Worker);
    for text in [render(&master1, true), render(&master2, false)] {
        assert!(
            text.contains("nodeRegistration:\n  name: master") && text.contains("\n  taints: []\n"),
            "{text}"
        );
    }
}
