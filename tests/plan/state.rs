//! The cluster's state directory belongs to one cluster. Regression: `init-cluster`
//! named every cluster "ferry", so two inventories in one directory shared
//! `ferry.state`, and the second cluster was silently given the first one's CA,
//! keys and bootstrap token.

use super::*;

/// `plan INVENTORY --out OUT` from the shared site store, with `extra` arguments.
fn plan(s: &Session, inventory: &str, out: &str, extra: &[&str]) -> common::Run {
    let site = common::cluster::site();
    let mut args = vec![
        "plan",
        inventory,
        "--store",
        site.to_str().unwrap(),
        "--out",
        out,
        "--pki",
        "pki",
    ];
    args.extend_from_slice(extra);
    s.installer(&args)
}

/// The bytes of every file under `dir` of the session, by relative path.
fn contents(s: &Session, dir: &str) -> BTreeMap<String, Vec<u8>> {
    common::files_under(&s.path(dir))
        .into_iter()
        .map(|(rel, p)| (rel, std::fs::read(p).unwrap()))
        .collect()
}

/// The inventory `file` with every address of init-cluster's example moved from
/// 192.168.10.x to 192.168.`net`.x: a cluster elsewhere.
fn moved(s: &Session, file: &str, net: u8) {
    let text = s
        .read(file)
        .replace("192.168.10.", &format!("192.168.{net}."));
    s.write(file, &text);
}

/// Asserts the run failed (exit 1, no panic) with one line in all, the error.
#[track_caller]
fn one_error_line(run: common::Run) -> String {
    let run = run.failure();
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    run.error_line().to_string()
}

#[test]
fn two_inventories_init_cluster_wrote_in_one_directory_get_states_of_their_own() {
    let s = Session::new();
    // Left as written, so the two differ in nothing but their files' names.
    for c in ["prod", "lab"] {
        let run = s
            .installer(&["init-cluster", "-o", &format!("{c}.toml")])
            .success();
        assert!(
            run.stdout.contains(&format!("(cluster {c}, ")),
            "{}",
            run.stdout
        );
        assert!(
            s.read(&format!("{c}.toml"))
                .contains(&format!("\nname = \"{c}\"\n")),
            "{c}"
        );
        plan(&s, &format!("{c}.toml"), &format!("{c}-plan"), &[]).success();
    }
    assert!(!s.path("ferry.state").exists());
    let (prod, lab) = (contents(&s, "prod.state"), contents(&s, "lab.state"));
    for f in [
        "pki/ca.crt",
        "pki/ca.key",
        "pki/etcd/ca.key",
        "bootstrap-token",
    ] {
        assert_ne!(prod[f], lab[f], "{f} is shared");
    }
    for (c, state) in [("prod", &prod), ("lab", &lab)] {
        let record = String::from_utf8_lossy(&state["cluster"]).into_owned();
        assert!(record.contains(&format!("name = \"{c}\"")), "{record}");
        assert!(
            record.contains("control_plane_endpoint = \"192.168.10.11:6443\""),
            "{record}"
        );
    }
    // The default file keeps the name it always had; --name says it outright.
    s.installer(&["init-cluster"]).success();
    assert!(s.read("cluster.toml").contains("\nname = \"ferry\"\n"));
    std::fs::create_dir(s.path("site")).unwrap();
    s.installer(&[
        "init-cluster",
        "-o",
        "site/cluster.toml",
        "--name",
        "site-a",
    ])
    .success();
    assert!(s
        .read("site/cluster.toml")
        .contains("\nname = \"site-a\"\n"));
    let line = s
        .installer(&["init-cluster", "-o", "x.toml", "--name", "Site_A"])
        .usage()
        .error_line()
        .to_string();
    assert!(line.contains("lowercase letters, digits and '-'"), "{line}");
    assert!(!s.path("x.toml").exists());
}

#[test]
fn a_state_made_for_another_cluster_is_refused_in_one_line_and_left_as_it_was() {
    let s = Session::new();
    // Two clusters of one name, as every init-cluster before this one wrote them,
    // at different addresses.
    for (c, net) in [("prod", 10), ("lab", 20)] {
        s.installer(&[
            "init-cluster",
            "-o",
            &format!("{c}.toml"),
            "--name",
            "ferry",
        ])
        .success();
        moved(&s, &format!("{c}.toml"), net);
    }
    plan(&s, "prod.toml", "prod-plan", &[]).success();
    let before = contents(&s, "ferry.state");
    let pki_before = contents(&s, "pki");

    let line = one_error_line(plan(&s, "lab.toml", "lab-plan", &[]));
    for part in [
        "the state ferry.state holds the CAs, keys and token of another cluster",
        "control_plane_endpoint 192.168.10.11:6443, but lab.toml has 192.168.20.11:6443",
        "give lab.toml a state of its own (--state DIR, or a different name)",
        "delete ferry.state/cluster if it is the same cluster",
    ] {
        assert!(line.contains(part), "{part}:\n{line}");
    }
    assert!(!line.contains("name \""), "the names are the same: {line}");
    // install refuses it alike, before the plan it would write into the state.
    let site = common::cluster::site();
    let install = s.installer(&[
        "install",
        "lab.toml",
        "--store",
        site.to_str().unwrap(),
        "--pki",
        "pki",
        "--dry-run",
    ]);
    assert_eq!(one_error_line(install), line);
    // And reset, whose plan would name another cluster's files.
    let reset = s.installer(&["reset", "lab.toml", "node1", "--yes"]);
    assert_eq!(one_error_line(reset), line);
    // A node the inventory lacks is named with the inventory.
    let reset = s.installer(&["reset", "lab.toml", "nosuch", "--yes"]);
    assert_eq!(
        one_error_line(reset),
        "error: node nosuch is not in the inventory lab.toml"
    );
    // A state named outright is another cluster's by its name too.
    s.installer(&["init-cluster", "-o", "shop.toml"]).success();
    let line = one_error_line(plan(
        &s,
        "shop.toml",
        "shop-plan",
        &["--state", "ferry.state"],
    ));
    assert!(
        line.contains("(name \"ferry\", but shop.toml has \"shop\"):"),
        "{line}"
    );
    assert!(line.contains("(another --state DIR)"), "{line}");

    assert_eq!(contents(&s, "ferry.state"), before, "the state changed");
    assert_eq!(contents(&s, "pki"), pki_before, "the site PKI changed");
    for out in ["lab-plan", "shop-plan", "shop.state", "ferry.state/plan"] {
        assert!(!s.path(out).exists(), "{out} was made");
    }
}

#[test]
fn a_state_an_older_ferry_made_is_adopted_then_kept_for_its_cluster() {
    let s = Session::new();
    s.installer(&["init-cluster", "-o", "prod.toml"]).success();
    plan(&s, "prod.toml", "plan", &[]).success();
    // What an older ferry left: the same state, without the record.
    std::fs::remove_file(s.path("prod.state/cluster")).unwrap();
    let before = contents(&s, "prod.state");

    let run = plan(&s, "prod.toml", "plan", &[]).success();
    assert!(
        run.stderr.contains(
            "note: prod.state had no record of its cluster (an older ferry made it); it is now prod's: prod.state/cluster"
        ),
        "{}",
        run.stderr
    );
    let after = contents(&s, "prod.state");
    for f in ["pki/ca.crt", "pki/ca.key", "pki/sa.key", "bootstrap-token"] {
        assert_eq!(after[f], before[f], "{f} was made again");
    }
    let record = s.read("prod.state/cluster");
    assert!(record.contains("name = \"prod\""), "{record}");
    assert!(
        record.contains("control_plane_endpoint = \"192.168.10.11:6443\""),
        "{record}"
    );
    // Once recorded, the note is not said again, and another cluster is refused.
    let run = plan(&s, "prod.toml", "plan", &[]).success();
    assert!(!run.stderr.contains("note:"), "{}", run.stderr);
    moved(&s, "prod.toml", 30);
    let line = one_error_line(plan(&s, "prod.toml", "plan", &[]));
    assert!(
        line.contains(
            "control_plane_endpoint 192.168.10.11:6443, but prod.toml has 192.168.30.11:6443"
        ),
        "{line}"
    );
}

#[test]
fn a_control_plane_added_to_the_same_cluster_plans_with_the_same_cas() {
    let s = Session::new();
    // Behind a VIP (the endpoint stays the VIP), and without one (the endpoint
    // stays the first control plane).
    for (file, nodes, address) in [
        ("ha.toml", "4", "192.168.10.20"),
        ("one.toml", "1", "192.168.10.21"),
    ] {
        s.installer(&["init-cluster", "--nodes", nodes, "-o", file])
            .success();
        let c = file.trim_end_matches(".toml");
        let out = format!("{c}-plan");
        plan(&s, file, &out, &[]).success();
        let before = contents(&s, &format!("{c}.state"));
        let mut inv = s.read(file);
        inv.push_str(&format!(
            "\n[[nodes]]\nname = \"cp9\"\naddress = \"{address}\"\nroles = [\"control-plane\"]\n"
        ));
        s.write(file, &inv);
        let run = plan(&s, file, &out, &[]).success();
        let after = contents(&s, &format!("{c}.state"));
        for f in ["cluster", "pki/ca.crt", "pki/ca.key", "bootstrap-token"] {
            assert_eq!(after[f], before[f], "{file}: {f} changed");
        }
        assert_eq!(
            std::fs::read(s.path(&format!("{out}/cp9/etc/kubernetes/pki/ca.crt"))).unwrap(),
            before["pki/ca.crt"],
            "{file}: {}",
            run.stdout
        );
    }
}
