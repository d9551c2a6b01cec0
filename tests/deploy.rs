//! The deploy pipeline end to end, below git transport: a commit in a bare
//! repository → manifest check → builder artifact → QEMU microVM → health →
//! router switch → old VM drained. Redeploys under load see no failed
//! request; a broken manifest is rejected with line and column and the old
//! version keeps serving.

mod support;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use byteport::config::Config;
use platform::store::{DeployStatus, Store};
use platform::{JobError, JobSpec, Platform};
use router::{RequestLog, RouteTable, Router};

use testvm::git::git_ok as git;

const MANIFEST: &str = "app site\nfrom busybox\n\nbuild {\n  copy public /srv\n}\n\nweb {\n  run busybox httpd -f -p 8080 -h /srv\n  port 8080\n  health GET /index.html every 1s timeout 1s\n}\n";

fn commit(work: &Path, bare: &Path, manifest: &str, page: &str) -> String {
    std::fs::create_dir_all(work.join("public")).unwrap();
    std::fs::write(work.join("Byteport"), manifest).unwrap();
    std::fs::write(work.join("public/index.html"), page).unwrap();
    git(work, &["add", "-A"]);
    git(work, &["commit", "-qm", "change"]);
    git(work, &["push", "-q", bare.to_str().unwrap(), "HEAD:main"]);
    git(work, &["rev-parse", "HEAD"])
}

fn get(router: std::net::SocketAddr, host: &str) -> Result<String, String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(router).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    write!(
        s,
        "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    if out.starts_with("HTTP/1.1 200") {
        Ok(out)
    } else {
        Err(out.lines().next().unwrap_or("empty response").to_string())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn push_build_boot_switch_and_reject_without_downtime() {
    let assets = support::assets::guest_assets();
    std::env::set_var("BYTEPORT_INIT", support::assets::init_binary());
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    // Reuse the cached guest kernel + busybox (registered by builder::setup).
    let cached = support::assets::cache_dir().join("home");
    std::os::unix::fs::symlink(cached.join("kernels"), home.join("kernels")).unwrap();
    std::os::unix::fs::symlink(cached.join("assets"), home.join("assets")).unwrap();
    assert!(assets.kernel.image.exists());

    let home_s = home.to_str().unwrap().to_string();
    let config = Config::load(None, &move |k| match k {
        "BYTEPORT_HOME" => Some(home_s.clone()),
        "BYTEPORT_DRIVER" => Some("qemu".into()),
        _ => None,
    })
    .unwrap();
    let store = Store::open(&config.database_url, &home).await.unwrap();
    store.add_user("alice", None).await.unwrap();
    store.create_app("site", "alice").await.unwrap();
    let routes = RouteTable::new("localhost");
    let platform = Arc::new(Platform::new(
        byteport::driver::platform_settings(&config),
        store.clone(),
        routes.clone(),
    ));
    platform.start().await.unwrap();
    assert_eq!(platform.boot_problem(), None);
    let log: RequestLog = Arc::new(|_: &str, _: &str| {});
    let router = Router::bind("127.0.0.1:0".parse().unwrap(), routes.clone(), log)
        .await
        .unwrap();
    let raddr = router.local_addr;

    // Where the platform keeps the app's repository.
    std::fs::create_dir_all(home.join("repos")).unwrap();
    let bare = home.join("repos/site.git");
    git(
        tmp.path(),
        &["init", "-q", "--bare", bare.to_str().unwrap()],
    );
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "-q"]);

    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let deploy = |commit: String| {
        let (platform, lines) = (platform.clone(), lines.clone());
        async move {
            let spec = JobSpec::Deploy {
                commit,
                git_ref: "refs/heads/main".into(),
                push_options: vec![],
            };
            let job = platform.submit("site", spec, Some("alice"), true).await?;
            job.wait(&platform, |l| lines.lock().unwrap().push(l.to_string()))
                .await
        }
    };

    // First deploy.
    let c1 = commit(&work, &bare, MANIFEST, "version one\n");
    let job = deploy(c1)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", lines.lock().unwrap().join("\n")));
    assert_eq!(job.deploy_number, Some(1));
    assert_eq!(
        store.deploy("site", 1).await.unwrap().unwrap().status,
        DeployStatus::Live
    );
    let text = lines.lock().unwrap().join("\n");
    assert!(text.contains("site: Byteport manifest OK"), "{text}");
    assert!(text.contains("Live at http://site.localhost:"), "{text}");
    assert!(get(raddr, "site.localhost")
        .unwrap()
        .contains("version one"));

    // Redeploy while a client keeps requesting: no request fails.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(Mutex::new(vec![])));
    let client = {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                match get(raddr, "site.localhost") {
                    Ok(_) => {
                        ok.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => failed.lock().unwrap().push(e),
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let c2 = commit(&work, &bare, MANIFEST, "version two\n");
    deploy(c2)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", lines.lock().unwrap().join("\n")));
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    client.join().unwrap();
    assert!(
        failed.lock().unwrap().is_empty(),
        "failed requests: {:?}",
        failed.lock().unwrap()
    );
    assert!(ok.load(Ordering::SeqCst) > 5, "the client loop ran");
    assert!(get(raddr, "site.localhost")
        .unwrap()
        .contains("version two"));

    // A broken manifest is rejected with line:col; version two keeps serving.
    let broken = MANIFEST.replace("port 8080", "port 80800");
    let c3 = commit(&work, &bare, &broken, "version three\n");
    let err = deploy(c3).await.unwrap_err();
    assert!(matches!(err, JobError::Rejected { .. }), "{err:?}");
    let err = err.to_string();
    assert!(err.contains("Byteport:") && err.contains("80800"), "{err}");
    assert!(get(raddr, "site.localhost")
        .unwrap()
        .contains("version two"));
    let deploys = store.list_deploys("site", 10).await.unwrap();
    assert_eq!(deploys[0].status, DeployStatus::Failed);
    assert_eq!(deploys[1].status, DeployStatus::Live);
    assert_eq!(deploys[2].status, DeployStatus::Superseded);
    assert!(deploys[1].timings.contains_key("build") && deploys[1].timings.contains_key("boot"));

    platform.stop_all().await;
}
