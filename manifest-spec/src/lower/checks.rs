//! Whole-manifest checks (things no single line can know) and defaults.

use super::Lowerer;
use crate::model::{Base, BuildStep, Manifest, VmResources};
use crate::values::Problem;

/// Default VM resources.
pub(crate) const DEFAULT_CPUS: u32 = 1;
/// 256 MiB.
pub(crate) const DEFAULT_MEMORY: u64 = 256 << 20;
/// 1 GiB.
pub(crate) const DEFAULT_DISK: u64 = 1 << 30;

/// Debian suites the builder can bootstrap.
pub(crate) const DEBIAN_SUITES: [&str; 12] = [
    "buster",
    "bullseye",
    "bookworm",
    "trixie",
    "forky",
    "duke",
    "sid",
    "stable",
    "testing",
    "unstable",
    "oldstable",
    "oldoldstable",
];

/// The argument of `from`.
pub(crate) fn base(s: &str) -> Result<Base, Problem> {
    match s {
        "busybox" => return Ok(Base::Busybox),
        "scratch" => return Ok(Base::Scratch),
        "debian" => {
            return Err(Problem::new("`debian` needs a suite").hint("write `from debian:bookworm`"))
        }
        _ => {}
    }
    if let Some(suite) = s.strip_prefix("debian:") {
        if DEBIAN_SUITES.contains(&suite) {
            return Ok(Base::Debian {
                suite: suite.to_string(),
            });
        }
        let best = DEBIAN_SUITES
            .iter()
            .min_by_key(|k| strsim::damerau_levenshtein(suite, k))
            .copied()
            .unwrap_or("bookworm");
        let hint = if strsim::damerau_levenshtein(suite, best) <= 2 {
            format!("did you mean `debian:{best}`?")
        } else {
            format!("known suites: {}", DEBIAN_SUITES.join(", "))
        };
        return Err(Problem::new(format!("unknown Debian suite `{suite}`")).hint(hint));
    }
    let (image, _) = s.split_once(':').unwrap_or((s, ""));
    let near = ["debian", "busybox", "scratch"]
        .into_iter()
        .find(|k| strsim::damerau_levenshtein(&image.to_ascii_lowercase(), k) <= 2);
    let hint = match near {
        Some("debian") => "did you mean `debian:bookworm`?".to_string(),
        Some(k) => format!("did you mean `{k}`?"),
        None => "bases are `debian:SUITE`, `busybox` and `scratch`".to_string(),
    };
    Err(Problem::new(format!("unknown base `{s}`")).hint(hint))
}

impl Lowerer<'_> {
    /// Cross-directive checks and defaults. Returns the manifest when every
    /// required part is present (diagnostics may still have been recorded).
    pub(super) fn finish(&mut self) -> Option<Manifest> {
        let d = std::mem::take(&mut self.draft);
        let confused = d.top_level_confused;
        if d.app.is_none() && !self.seen.contains_key("app") && !confused {
            self.whole(
                "missing `app` directive".into(),
                Some("name the app on the first line, e.g. `app hello`".into()),
            );
        }
        if d.base.is_none() && !self.seen.contains_key("from") && !confused {
            self.whole(
                "missing `from` directive".into(),
                Some("add `from debian:bookworm`, `from busybox` or `from scratch`".into()),
            );
        }
        if let (Some((base, _)), Some(at)) = (&d.base, d.packages_at) {
            if !matches!(base, Base::Debian { .. }) {
                self.err(
                    at,
                    at + "packages".len(),
                    format!("`packages` needs a Debian base, not `{base}`"),
                    Some("use `from debian:bookworm`, or drop `packages`".into()),
                );
            }
        }
        if let (Some((Base::Scratch, _)), Some(at)) = (&d.base, d.build_run_at) {
            self.err(
                at,
                at + 3,
                "`run` build steps need a shell, and `scratch` has none".into(),
                Some(
                    "use `from busybox` or `from debian:bookworm`, or build before pushing".into(),
                ),
            );
        }
        let has_web = self.seen.contains_key("web");
        if !d.process_attempted && !confused {
            self.whole(
                "nothing to run: no `web` block and no `worker` block".into(),
                Some("add `web { run ...  port ... }` or `worker NAME { run ... }`".into()),
            );
        }
        if let (false, Some(at)) = (has_web, d.domains_at) {
            self.err(
                at,
                at + "domains".len(),
                "`domains` route HTTP to the web process, but there is no `web` block".into(),
                None,
            );
        }
        if let (false, Some(at)) = (has_web, d.screenshot_at) {
            self.err(
                at,
                at + "screenshot".len(),
                "`screenshot` needs a `web` block to take a picture of".into(),
                Some("drop `screenshot`; the portfolio page will have no picture".into()),
            );
        }
        if let (Some(web), Some(port)) = (&d.web, d.env.get("PORT")) {
            if port != &web.port.to_string() {
                let at = d.web_at.unwrap_or(0);
                self.err(
                    at,
                    at + "web".len(),
                    format!(
                        "`env` sets PORT={port} but the `web` block listens on port {}",
                        web.port
                    ),
                    Some("BytePort sets PORT to the web port; drop PORT from `env`".into()),
                );
            }
        }
        for (secret, start, end) in &d.secrets {
            if d.env.contains_key(&secret.name) {
                self.err(
                    *start,
                    *end,
                    format!("`{}` is both a secret and an `env` variable", secret.name),
                    Some("keep it as a secret and remove it from `env`".into()),
                );
            }
        }

        self.volume_checks(&d);

        let app = d.app?;
        let (base, _) = d.base?;
        if !self.diags.is_empty() {
            return None;
        }
        let build = d.build.unwrap_or_else(|| {
            vec![
                BuildStep::Copy {
                    from: ".".into(),
                    to: "/app".into(),
                    line: 0,
                },
                BuildStep::Workdir {
                    path: "/app".into(),
                    line: 0,
                },
            ]
        });
        let portfolio = d.portfolio.map(|mut p| {
            if p.title.is_empty() {
                p.title = app.clone();
            }
            if p.screenshot.is_none() && d.web.is_some() {
                p.screenshot = Some(crate::model::Screenshot {
                    path: "/".into(),
                    wait_ms: super::blocks::DEFAULT_SCREENSHOT_WAIT_MS,
                });
            }
            p
        });
        Some(Manifest {
            app,
            base,
            packages: d.packages,
            build,
            build_network: d.build_network.unwrap_or_default(),
            env: d.env,
            secrets: d.secrets.into_iter().map(|(s, _, _)| s).collect(),
            vm: VmResources {
                cpus: d.cpus.unwrap_or(DEFAULT_CPUS),
                memory_bytes: d.memory.unwrap_or(DEFAULT_MEMORY),
                disk_bytes: d.disk.unwrap_or(DEFAULT_DISK),
                network: d.vm_network.unwrap_or_default(),
            },
            user: d.user.unwrap_or_default(),
            volumes: d.volumes.into_iter().map(|v| v.volume).collect(),
            web: d.web,
            workers: d.workers,
            release: d.release,
            database: d.database,
            domains: d.domains,
            portfolio,
        })
    }
}
