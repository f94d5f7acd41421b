//! containerd for a node: `config.toml` in config version 2 (which containerd 1.6
//! and 1.7 both read) with the systemd cgroup driver, the bundle's pause image as
//! the sandbox image and registry hosts from `certs.d`; a `hosts.toml` for every
//! upstream registry host the bundle's images come from, naming the site registry
//! as both the mirror and the `server`, so images keep their upstream names and
//! containerd never falls back to the internet; the site CA; and `crictl.yaml`.
//!
//! The site registry on a node (`ferry-installer serve`) takes containerd's
//! mirror requests as they come (`/v2/pause/...?ns=registry.k8s.io`). A registry
//! the site already runs, which `ferry-installer push` filled under
//! `PREFIX/<upstream host>/<path>`, does not know `ns`: each host's `hosts.toml`
//! names the API path of that host's repositories there
//! (`https://harbor.site/v2/k8s/registry.k8s.io`) with `override_path = true`, to
//! which containerd appends the image's path (`/pause/manifests/3.10`).

use super::{put, Tree};

/// Where the site CA is installed on a node (hosts.toml names it).
pub const CA_PATH: &str = "etc/containerd/certs.d/ferry-site-ca.crt";

/// What containerd's files are made from.
pub struct Containerd<'a> {
    /// `https://host:port` of the site registry.
    pub registry: &'a str,
    /// For a registry that `ferry-installer push` filled: the path prefix it was
    /// pushed under (may be empty). `None` for `ferry-installer serve`.
    pub pushed_under: Option<&'a str>,
    /// The PEM of the CA that signs the registry's certificate.
    pub ca_pem: &'a str,
    /// Every upstream registry host of the bundle's images, sorted.
    pub hosts: &'a [String],
    /// The pause image, by its upstream name.
    pub sandbox_image: &'a str,
}

fn config(c: &Containerd<'_>) -> String {
    format!(
        r#"# Written by ferry-installer plan: config version 2, for containerd 1.6 and 1.7.
version = 2
root = "/var/lib/containerd"
state = "/run/containerd"

[grpc]
  address = "/run/containerd/containerd.sock"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox}"

[plugins."io.containerd.grpc.v1.cri".containerd]
  default_runtime_name = "runc"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  SystemdCgroup = true

[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = "/etc/containerd/certs.d"
"#,
        sandbox = c.sandbox_image
    )
}

fn hosts_toml(host: &str, c: &Containerd<'_>) -> String {
    match c.pushed_under {
        None => format!(
            r#"# Written by ferry-installer plan: images of {host} come from the site registry
# by their upstream names; the site registry is the server too, so nothing is ever
# asked of {host} itself.
server = "{registry}"

[host."{registry}"]
  capabilities = ["pull", "resolve"]
  ca = "/{CA_PATH}"
"#,
            registry = c.registry
        ),
        Some(prefix) => {
            let path = if prefix.is_empty() {
                host.to_string()
            } else {
                format!("{prefix}/{host}")
            };
            format!(
                r#"# Written by ferry-installer plan: images of {host} come from the site's
# registry, where ferry-installer push put them under {path}/; containerd appends
# each image's path to this API path (override_path). The registry is the server
# too, so nothing is ever asked of {host} itself.
server = "{registry}/v2/{path}"
override_path = true
ca = "/{CA_PATH}"

[host."{registry}/v2/{path}"]
  capabilities = ["pull", "resolve"]
  ca = "/{CA_PATH}"
  override_path = true
"#,
                registry = c.registry
            )
        }
    }
}

const CRICTL: &str = "\
# Written by ferry-installer plan.
runtime-endpoint: unix:///run/containerd/containerd.sock
image-endpoint: unix:///run/containerd/containerd.sock
timeout: 10
";

/// containerd's files for a node.
pub fn render(c: &Containerd<'_>, tree: &mut Tree) {
    put(tree, "etc/containerd/config.toml", config(c));
    put(tree, CA_PATH, c.ca_pem.to_string());
    for host in c.hosts {
        put(
            tree,
            &format!("etc/containerd/certs.d/{host}/hosts.toml"),
            hosts_toml(host, c),
        );
    }
    put(tree, "etc/crictl.yaml", CRICTL.into());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_upstream_host_goes_to_the_site_registry_only() {
        let hosts = vec!["docker.io".to_string(), "registry.k8s.io".to_string()];
        let mut tree = Tree::new();
        render(
            &Containerd {
                registry: "https://192.168.10.11:5000",
                pushed_under: None,
                ca_pem: "PEM",
                hosts: &hosts,
                sandbox_image: "registry.k8s.io/pause:3.10",
            },
            &mut tree,
        );
        let text = |p: &str| String::from_utf8(tree[p].0.clone()).unwrap();
        let k8s = text("etc/containerd/certs.d/registry.k8s.io/hosts.toml");
        assert!(
            k8s.contains("server = \"https://192.168.10.11:5000\""),
            "{k8s}"
        );
        assert!(!k8s.contains("https://registry.k8s.io"), "{k8s}");
        let config = text("etc/containerd/config.toml");
        assert!(config.contains("SystemdCgroup = true"));
        assert!(config.contains("sandbox_image = \"registry.k8s.io/pause:3.10\""));
        assert!(config.contains("config_path = \"/etc/containerd/certs.d\""));
        let parsed: toml::Table = toml::from_str(&config).unwrap();
        assert_eq!(parsed["version"].as_integer(), Some(2));
        toml::from_str::<toml::Table>(&k8s).unwrap();
        assert_eq!(tree.len(), 5);
    }

    #[test]
    fn a_pushed_registry_is_reached_by_the_api_path_of_each_host() {
        let hosts = vec!["docker.io".to_string(), "registry.k8s.io".to_string()];
        for (prefix, path) in [("k8s", "k8s/registry.k8s.io"), ("", "registry.k8s.io")] {
            let mut tree = Tree::new();
            render(
                &Containerd {
                    registry: "https://harbor.site",
                    pushed_under: Some(prefix),
                    ca_pem: "PEM",
                    hosts: &hosts,
                    sandbox_image: "registry.k8s.io/pause:3.10",
                },
                &mut tree,
            );
            let k8s = String::from_utf8(
                tree["etc/containerd/certs.d/registry.k8s.io/hosts.toml"]
                    .0
                    .clone(),
            )
            .unwrap();
            let parsed: toml::Table = toml::from_str(&k8s).unwrap();
            let url = format!("https://harbor.site/v2/{path}");
            assert_eq!(parsed["server"].as_str(), Some(url.as_str()), "{k8s}");
            assert_eq!(parsed["override_path"].as_bool(), Some(true));
            let host = &parsed["host"][url.as_str()];
            assert_eq!(host["override_path"].as_bool(), Some(true), "{k8s}");
            assert_eq!(host["capabilities"].as_array().unwrap().len(), 2);
        }
    }
}
