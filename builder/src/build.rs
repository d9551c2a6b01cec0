//! The build pipeline: source → manifest → base → files and steps → ext4 →
//! content-addressed artifact, timing each phase. Everything happens in a
//! temp directory inside the store and is renamed into place only when
//! complete, so a failed build leaves nothing behind.

use crate::artifact::{self, Descriptor, RootfsRef, Store, DESCRIPTOR_FILE, ROOTFS_FILE};
use crate::cgroup::Limits;
use crate::error::{BuildError, IoContext, Result};
use crate::identity::Identity;
use crate::isolate::StepRoot;
use crate::log::LogSink;
use crate::plan::{BaseSpec, BuildPlan, Step};
use crate::source::SourceTree;
use crate::steps::{run_steps, StepEnv};
use crate::trust::CaTrust;
use crate::{base, image, setup};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Default wall-clock limit of one `run` step.
pub const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// Where the app's files come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A commit (any rev-spec) of a git repository, read with gix.
    Git {
        /// Repository path (bare or with a work tree).
        repo: PathBuf,
        /// Commit, branch or tag.
        rev: String,
    },
    /// The files of a plain directory (its `.git` is ignored).
    Dir(PathBuf),
}

/// A build to run.
pub struct BuildRequest<'a> {
    /// `$BYTEPORT_HOME`.
    pub home: PathBuf,
    /// The app's files.
    pub source: Source,
    /// Receives progress and step output.
    pub log: &'a dyn LogSink,
    /// Secret values by name; only those the manifest asks for at build time reach steps.
    pub secrets: BTreeMap<String, String>,
    /// Wall-clock limit per `run` step.
    pub step_timeout: Duration,
    /// Where bases are cached (default `<home>/cache/bases`).
    pub base_cache: Option<PathBuf>,
    /// Build caches of `run` steps (default `<home>/cache/build`; see [`crate::cache`]).
    pub build_cache: Option<PathBuf>,
    /// CA certificates `run` steps trust (default: `$BYTEPORT_BUILD_CA`, else
    /// the host's bundle; see [`crate::trust`]). Never part of the artifact.
    pub ca_trust: CaTrust,
    /// Resource limits of each `run` step (default: memory = the vm block's
    /// `memory` but at least 1 GiB, 4096 processes, the vm's CPUs).
    pub step_limits: Option<Limits>,
    /// The app this build is for: the app of the repository pushed to.
    /// It keys the build cache and the steps' uid/gid range and names the
    /// artifact, whatever the manifest's `app` says (a different name is
    /// noted in the log). `None` (a local `byteport build DIR`): the
    /// manifest's name, in a namespace of its own (`_local/`) that no
    /// pushed app shares. See [`crate::identity`].
    pub app: Option<String>,
    /// Where `run` steps may connect when the manifest leaves the build's
    /// network on (default: the internet only). Exceptions — an internal
    /// package mirror, a test's own server — are added with
    /// [`egress::Policy::allowing`].
    pub egress: egress::Policy,
    /// Set to `true` to stop the build: checked between steps and while a
    /// step runs (the step's whole process tree is killed within ~10 ms).
    pub cancel: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

impl<'a> BuildRequest<'a> {
    /// A request with default timeout, no secrets, the default caches and
    /// limits, and the CA trust of `$BYTEPORT_BUILD_CA` (default `host`).
    pub fn new(home: impl Into<PathBuf>, source: Source, log: &'a dyn LogSink) -> Self {
        BuildRequest {
            home: home.into(),
            source,
            log,
            secrets: BTreeMap::new(),
            step_timeout: DEFAULT_STEP_TIMEOUT,
            base_cache: None,
            build_cache: None,
            ca_trust: CaTrust::from_env(),
            step_limits: None,
            app: None,
            egress: egress::Policy::internet_only(),
            cancel: None,
        }
    }
}

impl std::fmt::Debug for BuildRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuildRequest")
            .field("home", &self.home)
            .field("source", &self.source)
            .field("ca_trust", &self.ca_trust)
            .field("step_limits", &self.step_limits)
            .field("app", &self.app)
            .field("egress", &self.egress)
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// The result of a build.
#[derive(Debug, Clone)]
pub struct BuildOutcome {
    /// Artifact digest (SHA-256 of the descriptor).
    pub digest: String,
    /// The ext4 image.
    pub rootfs_path: PathBuf,
    /// The descriptor file.
    pub descriptor_path: PathBuf,
    /// The descriptor.
    pub descriptor: Descriptor,
    /// Whether the artifact existed already (nothing was rebuilt).
    pub cache_hit: bool,
    /// Whether the base layer came from the cache (false on a full cache hit too).
    pub base_cache_hit: bool,
    /// Bytes of app files in the source tree.
    pub source_bytes: u64,
    /// Size of the ext4 image.
    pub image_bytes: u64,
    /// Wall time of each phase, in order.
    pub phases: Vec<(&'static str, Duration)>,
}

impl BuildOutcome {
    /// Total wall time.
    pub fn total(&self) -> Duration {
        self.phases.iter().map(|(_, d)| *d).sum()
    }
}

struct Phases {
    list: Vec<(&'static str, Duration)>,
    at: Instant,
}

impl Phases {
    fn mark(&mut self, name: &'static str) {
        self.mark_at(name, Instant::now());
    }

    fn mark_at(&mut self, name: &'static str, at: Instant) {
        self.list
            .push((name, at.saturating_duration_since(self.at)));
        self.at = at;
    }
}

/// Build the app described by the `Byteport` manifest in the source.
pub fn build(req: &BuildRequest<'_>) -> Result<BuildOutcome> {
    let mut phases = Phases {
        list: Vec::new(),
        at: Instant::now(),
    };
    let tree = open_source(&req.source)?;
    let bytes = tree
        .read(crate::manifest::MANIFEST_FILE_NAME)?
        .ok_or_else(|| BuildError::ManifestMissing {
            file: crate::manifest::MANIFEST_FILE_NAME,
            origin: tree.origin().to_string(),
        })?;
    let plan = crate::manifest::plan_from_source(
        &bytes,
        &format!("{}:{}", tree.origin(), crate::manifest::MANIFEST_FILE_NAME),
    )?;
    phases.mark("source");
    run(req, &tree, plan, phases)
}

/// Build with an explicit plan instead of the source's manifest.
pub fn build_plan(req: &BuildRequest<'_>, plan: BuildPlan) -> Result<BuildOutcome> {
    let mut phases = Phases {
        list: Vec::new(),
        at: Instant::now(),
    };
    let tree = open_source(&req.source)?;
    phases.mark("source");
    run(req, &tree, plan, phases)
}

fn open_source(source: &Source) -> Result<SourceTree> {
    match source {
        Source::Git { repo, rev } => SourceTree::from_git(repo, rev),
        Source::Dir(dir) => SourceTree::from_dir(dir),
    }
}

fn run(
    req: &BuildRequest<'_>,
    tree: &SourceTree,
    plan: BuildPlan,
    mut phases: Phases,
) -> Result<BuildOutcome> {
    let log = req.log;
    let mut plan = plan.normalize();
    let owner = Identity::new(req.app.as_deref(), &plan.app);
    if owner.app() != plan.app {
        log.line(&format!(
            "-----> note: the manifest names the app `{}`; building it as `{}` (the repository's app: its cache, its ids)",
            plan.app,
            owner.app()
        ));
        plan.app = owner.app().to_string();
    }
    tree.check(plan.disk_bytes)?;
    let identity = tree.identity()?;
    let mut build_secrets = BTreeMap::new();
    for name in &plan.build_secrets {
        let v = req
            .secrets
            .get(name)
            .ok_or_else(|| BuildError::MissingSecret { name: name.clone() })?;
        build_secrets.insert(name.clone(), v.clone());
    }
    let kernel = setup::current_kernel(&req.home);
    if kernel.is_none() {
        log.line("-----> warning: no guest kernel registered; run `byteport setup` before booting this artifact");
    }
    let key = artifact::input_key(&plan, &identity, &build_secrets, kernel.as_ref());
    let store = Store::open(&req.home)?;
    let source_bytes = tree.total_file_bytes();
    if let Some((digest, descriptor)) = store.lookup(&key) {
        phases.mark("cache");
        log.line(&format!(
            "-----> {}: unchanged, using artifact {}",
            plan.app,
            &digest[..12]
        ));
        let dir = store.dir(&digest);
        return Ok(BuildOutcome {
            image_bytes: descriptor.rootfs.size,
            descriptor,
            rootfs_path: dir.join(ROOTFS_FILE),
            descriptor_path: dir.join(DESCRIPTOR_FILE),
            digest,
            cache_hit: true,
            base_cache_hit: false,
            source_bytes,
            phases: phases.list,
        });
    }
    phases.mark("check");
    let has_run = plan.steps.iter().any(|s| matches!(s, Step::Run { .. }));
    // A misconfigured CA bundle fails the build before any heavy work.
    let ca_bundle = if has_run {
        req.ca_trust.bundle()?
    } else {
        None
    };

    let busybox = match plan.base {
        BaseSpec::Busybox => {
            log.line("-----> busybox-static (from setup's cache, fetched if missing)");
            Some(setup::ensure_busybox(&req.home, false)?)
        }
        _ => None,
    };
    let cache = req
        .base_cache
        .clone()
        .unwrap_or_else(|| req.home.join("cache/bases"));
    let base = base::ensure(&cache, &plan.base, &plan.packages, busybox.as_deref(), log)?;
    log.line(&format!(
        "-----> Base {} ({})",
        plan.base,
        if base.cache_hit { "cached" } else { "built" }
    ));
    let work = tempfile::Builder::new()
        .prefix(".tmp-build-")
        .tempdir_in(store.root())
        .ctx("creating build dir", store.root())?;
    let root = work.path().join("root");
    let out_dir = work.path().join("artifact");
    let ca_bundle = match ca_bundle {
        Some(b) => Some(crate::trust::readable_by_steps(&b, work.path())?),
        None => None,
    };
    for d in [&root, &out_dir] {
        std::fs::create_dir(d).ctx("creating", d)?;
    }
    let image_path = out_dir.join(ROOTFS_FILE);
    // Assemble and pack on a thread with its own mount namespace, where the
    // cached base is the lower layer of an overlay: nothing is copied, and
    // the mount vanishes with the thread whatever happens.
    let marks = std::sync::Mutex::new(Vec::new());
    let mark = || {
        if let Ok(mut m) = marks.lock() {
            m.push(Instant::now());
        }
    };
    let (image_bytes, sha) = std::thread::scope(|s| {
        s.spawn(|| -> Result<(u64, String)> {
            let overlay = match crate::overlay::Overlay::mount(&base.rootfs, work.path(), &root) {
                Ok(o) => Some(o),
                Err(why) => {
                    log.line(&format!(
                        "-----> overlay unavailable ({why}); copying the base instead"
                    ));
                    base::copy_into(&base.rootfs, &root)?;
                    None
                }
            };
            for (d, mode) in [
                ("proc", 0o555),
                ("sys", 0o555),
                ("dev", 0o755),
                ("tmp", 0o1777),
                ("run", 0o755),
            ] {
                let p = root.join(d);
                if std::fs::symlink_metadata(&p).is_err() {
                    std::fs::create_dir(&p).ctx("creating", &p)?;
                    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))
                        .ctx("chmod", &p)?;
                }
            }
            mark();
            let env = StepEnv {
                secrets: &build_secrets,
                ca_bundle: ca_bundle.as_deref(),
                owner: &owner,
                root: overlay.as_ref().map_or(StepRoot::Mapped, StepRoot::Overlay),
            };
            run_steps(req, tree, &plan, &root, &env)?;
            hand_over_app_dir(&plan, &root, log)?;
            mark();
            let scrubbed = image::scrub_volatile(&root)?;
            if !scrubbed.is_empty() {
                log.line(&format!(
                    "-----> Removed files that record build times: {}",
                    scrubbed.join(", ")
                ));
            }
            image::normalize_times(&root)?;
            let image_bytes = image::make_ext4(&root, &image_path, &key, plan.disk_bytes)?;
            Ok((image_bytes, sha256_file(&image_path)?))
        })
        .join()
        .unwrap_or_else(|_| {
            Err(BuildError::Io {
                context: "build thread panicked".into(),
                path: root.clone(),
                source: std::io::ErrorKind::Other.into(),
            })
        })
    })?;
    let marks = marks.into_inner().unwrap_or_default();
    for (name, at) in ["base", "steps"].into_iter().zip(marks) {
        phases.mark_at(name, at);
    }
    phases.mark("image");

    let descriptor = Descriptor::new(
        &plan,
        kernel.as_ref(),
        RootfsRef {
            file: ROOTFS_FILE.into(),
            sha256: sha,
            size: image_bytes,
        },
    );
    let digest = descriptor.digest();
    let desc_path = out_dir.join(DESCRIPTOR_FILE);
    std::fs::write(&desc_path, descriptor.to_json()).ctx("writing descriptor", &desc_path)?;
    let dir = store.commit(&out_dir, &digest, &key)?;
    drop(work);
    phases.mark("store");
    log.line(&format!(
        "-----> Artifact {} ({} MiB image)",
        &digest[..12],
        image_bytes >> 20
    ));
    Ok(BuildOutcome {
        digest,
        rootfs_path: dir.join(ROOTFS_FILE),
        descriptor_path: dir.join(DESCRIPTOR_FILE),
        descriptor,
        cache_hit: false,
        base_cache_hit: base.cache_hit,
        source_bytes,
        image_bytes,
        phases: phases.list,
    })
}

/// Gives the working directory to the user the processes run as (see
/// [`crate::ownership`]) and says so in the build log.
fn hand_over_app_dir(plan: &BuildPlan, root: &Path, log: &dyn LogSink) -> Result<()> {
    let (name, uid, gid) = plan.user.ids();
    if uid == 0 {
        log.line("-----> Processes run as root (`user root`)");
        return Ok(());
    }
    let workdir = plan.final_workdir();
    match crate::ownership::give_app_dir(root, &workdir, uid, gid)? {
        crate::ownership::Handover::Given {
            entries,
            hard_linked,
        } => log.line(&format!(
            "-----> {workdir} belongs to `{name}` (uid {uid}), who runs the processes: {entries} entries{}; what the app writes there is gone on the next deploy or restart (use a volume to keep it)",
            if hard_linked > 0 {
                format!(", {hard_linked} hard-linked files left to root")
            } else {
                String::new()
            }
        )),
        crate::ownership::Handover::System => log.line(&format!(
            "-----> {workdir} is a system directory: it stays root's; processes run as `{name}` (uid {uid})"
        )),
        crate::ownership::Handover::Missing => {}
    }
    Ok(())
}

fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).ctx("opening", path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).ctx("reading", path)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}
