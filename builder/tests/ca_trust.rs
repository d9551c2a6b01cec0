//! Which CA certificates `run` steps trust (`BuildRequest::ca_trust`,
//! `BYTEPORT_BUILD_CA`): the host's bundle by default, a given PEM file, or
//! none; bound read-only for the step only, never in the image; a bad
//! bundle fails the build before anything is built.

mod common;

use builder::{BaseSpec, BuildError, BuildPlan, CaTrust, Step};
use common::*;

const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIBbyteporttest\n-----END CERTIFICATE-----\n";

/// Busybox has no `/etc/ssl/certs`; the first step makes one (as installing
/// ca-certificates would), the second shows what a step sees.
fn plan() -> BuildPlan {
    let mut plan = BuildPlan::new("tls", BaseSpec::Busybox);
    plan.steps = vec![
        Step::Run {
            command: "mkdir -p /etc/ssl/certs".into(),
        },
        Step::Run {
            command: "echo \"first=$(head -n 1 /etc/ssl/certs/ca-certificates.crt 2>/dev/null || echo none)\"; \
                      echo \"second=$(sed -n 2p /etc/ssl/certs/ca-certificates.crt 2>/dev/null)\"; \
                      echo \"env=${SSL_CERT_FILE:-unset}/${NODE_EXTRA_CA_CERTS:-unset}\"; \
                      echo x >> /etc/ssl/certs/ca-certificates.crt 2>/dev/null && echo writable || echo read-only"
                .into(),
        },
    ];
    plan
}

#[test]
fn steps_trust_the_host_bundle_by_default_a_given_file_or_nothing_and_never_keep_it() {
    let host_bundle = std::path::Path::new(builder::trust::HOST_CA_BUNDLE);
    assert!(
        host_bundle.is_file(),
        "this test needs the host CA bundle {} (apt-get install ca-certificates)",
        host_bundle.display()
    );
    let host_first = std::fs::read_to_string(host_bundle)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    let repo = Repo::with_files(&[("a", "a", 0o644)]);
    let custom = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(custom.path(), PEM).unwrap();
    let bundle = "/etc/ssl/certs/ca-certificates.crt";

    // Default (`host`): the host's bundle, read-only, plus the tools' env.
    let home = home();
    let (out, log) = ok(build(home.path(), repo.source(), plan()));
    let has = |log: &[String], l: &str| log.iter().any(|x| x == l);
    assert!(
        has(&log, &format!("[step 2] first={host_first}")),
        "{log:#?}"
    );
    assert!(
        has(&log, &format!("[step 2] env={bundle}/{bundle}")),
        "{log:#?}"
    );
    assert!(has(&log, "[step 2] read-only"), "{log:#?}");
    assert!(
        log.iter()
            .any(|l| l.contains("trust this host's CA bundle")),
        "the choice is logged: {log:#?}"
    );
    assert!(
        !exists_in_image(&out.rootfs_path, bundle),
        "the bundle is not kept"
    );
    assert!(exists_in_image(&out.rootfs_path, "/etc/ssl/certs"));

    // A given PEM file.
    let home = common::home();
    let (_, log) = ok(build_with(home.path(), repo.source(), Some(plan()), |r| {
        r.ca_trust = CaTrust::File(custom.path().to_path_buf())
    }));
    assert!(has(&log, "[step 2] second=MIIBbyteporttest"), "{log:#?}");
    assert!(
        log.iter()
            .any(|l| l.contains(&custom.path().display().to_string())),
        "{log:#?}"
    );

    // `none`: like docker build, only the image's own (here: nothing).
    let home = common::home();
    let (out, log) = ok(build_with(home.path(), repo.source(), Some(plan()), |r| {
        r.ca_trust = CaTrust::None
    }));
    assert!(has(&log, "[step 2] first=none"), "{log:#?}");
    assert!(has(&log, "[step 2] env=unset/unset"), "{log:#?}");
    assert!(
        log.iter().any(|l| l.contains("trust only the image's own")),
        "{log:#?}"
    );
    // With nothing bound, what the step wrote there is the image's own file.
    assert_eq!(debugfs(&out.rootfs_path, &format!("cat {bundle}")), "x\n");

    // A bundle that is not one: a clear error before any work, nothing left.
    let home = common::home();
    let junk = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(junk.path(), "not a certificate").unwrap();
    for bad in [junk.path().to_path_buf(), home.path().join("missing.pem")] {
        let (err, log) = build_with(home.path(), repo.source(), Some(plan()), |r| {
            r.ca_trust = CaTrust::File(bad.clone())
        });
        match err {
            Err(e @ BuildError::CaBundle { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains(&bad.display().to_string()), "{msg}");
                assert!(msg.contains("BYTEPORT_BUILD_CA"), "{msg}");
            }
            other => panic!("expected CaBundle, got {other:?}"),
        }
        assert!(!log.iter().any(|l| l.contains("Step 1")), "{log:#?}");
        assert_eq!(store_leftovers(home.path()), Vec::<String>::new());
    }
}
