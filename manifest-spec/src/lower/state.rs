//! What an app keeps and who it runs as: `user`, `volume`, `database`,
//! `release`, and the checks between volumes and the rest of the manifest
//! (the app's own files, scaling).

use pest::iterators::Pair;

use super::{Draft, Lowerer};
use crate::grammar::Rule;
use crate::keywords::Context;
use crate::limits::{
    MAX_VOLUMES, MAX_VOLUME_BYTES, MAX_VOLUME_NAME, MAX_VOLUME_PATH, MIN_VOLUME_BYTES,
};
use crate::model::{format_size, BuildStep, Database, Release, User, Volume};
use crate::values::{self, Problem};

/// A volume as written, with where its name and path stand.
pub(super) struct VolumeAt {
    pub volume: Volume,
    pub name_at: (usize, usize),
    pub path_at: (usize, usize),
}

/// Paths where BytePort's guest init mounts what every VM needs: a volume
/// there would be hidden by (or hide) the kernel's own filesystems.
const RUNTIME_MOUNTS: [&str; 5] = ["/proc", "/sys", "/dev", "/run", "/tmp"];
/// The system's own files: a volume there would hide the programs the app
/// runs with.
const SYSTEM_DIRS: [&str; 10] = [
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/usr",
    "/etc",
    "/boot",
    "/byteport",
];

/// Whether `path` is `dir` or inside it.
pub(super) fn at_or_under(path: &str, dir: &str) -> bool {
    dir == "/" || path == dir || path.strip_prefix(dir).is_some_and(|r| r.starts_with('/'))
}

/// A volume's name: a DNS label of at most [`MAX_VOLUME_NAME`] characters
/// (it names the volume's image on the host and in the CLI).
fn volume_name(s: &str) -> Result<String, Problem> {
    if s.chars().any(char::is_control) {
        return Err(Problem::new(format!(
            "volume name `{}` contains a control character",
            s.escape_debug()
        )));
    }
    let name = values::dns_label("volume name", s)?;
    if name.len() > MAX_VOLUME_NAME {
        return Err(Problem::new(format!(
            "volume name `{s}` is longer than {MAX_VOLUME_NAME} characters"
        )));
    }
    Ok(name)
}

/// A volume's mount path: absolute, plain (letters, digits, `_ . - /`),
/// normalized, and not where the system or the runtime needs the VM's own
/// files.
fn mount_path(s: &str) -> Result<String, Problem> {
    if s.chars().any(char::is_control) {
        return Err(Problem::new(format!(
            "volume path `{}` contains a control character",
            s.escape_debug()
        ))
        .hint("volume paths hold letters, digits, `_`, `.`, `-` and `/` only"));
    }
    let plain_hint = "mount volumes at a path of their own, e.g. `/data` or `/app/instance`";
    if !s.starts_with('/') {
        return Err(
            Problem::new(format!("volume path `{s}` must be an absolute path"))
                .hint(format!("write `/{}`", s.trim_start_matches("./"))),
        );
    }
    if s.len() > MAX_VOLUME_PATH {
        return Err(Problem::new(format!(
            "volume path is longer than {MAX_VOLUME_PATH} characters"
        )));
    }
    // The whole value is underlined: in a quoted value, offsets into the
    // unescaped text are not offsets into the source.
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/')))
    {
        return Err(Problem::new(format!("volume path `{s}` contains `{c}`"))
            .hint("volume paths hold letters, digits, `_`, `.`, `-` and `/` only"));
    }
    if s == "/" {
        return Err(Problem::new("a volume cannot be mounted at `/`").hint(plain_hint));
    }
    let trimmed = s.trim_end_matches('/');
    if trimmed != s {
        return Err(Problem::new(format!("volume path `{s}` ends with `/`"))
            .hint(format!("write `{trimmed}`")));
    }
    if s.split('/')
        .skip(1)
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(Problem::new(format!(
            "volume path `{s}` must be plain: no `//`, `.` or `..`"
        )));
    }
    if let Some(dir) = RUNTIME_MOUNTS.iter().find(|d| at_or_under(s, d)) {
        return Err(Problem::new(format!(
            "volume path `{s}` is reserved: BytePort mounts the VM's own {dir} there"
        ))
        .hint(plain_hint));
    }
    if let Some(dir) = SYSTEM_DIRS.iter().find(|d| at_or_under(s, d)) {
        return Err(Problem::new(format!(
            "volume path `{s}` is reserved: a volume there would hide the system's files in {dir}"
        ))
        .hint(plain_hint));
    }
    Ok(s.to_string())
}

/// A volume's size: whole MiB within the limits.
fn volume_size(s: &str) -> Result<u64, Problem> {
    let n = values::size(s)?;
    if !(MIN_VOLUME_BYTES..=MAX_VOLUME_BYTES).contains(&n) {
        return Err(Problem::new(format!(
            "volume size must be between {} and {}, not {s}",
            format_size(MIN_VOLUME_BYTES),
            format_size(MAX_VOLUME_BYTES)
        )));
    }
    if !n.is_multiple_of(1 << 20) {
        return Err(
            Problem::new(format!("volume size {s} is not a whole number of MiB"))
                .hint(format!("write `{}M`", n.div_ceil(1 << 20))),
        );
    }
    Ok(n)
}

impl Lowerer<'_> {
    pub(super) fn user(&mut self, pair: Pair<'_, Rule>) {
        let Some(v) = self.first_val(pair) else {
            return;
        };
        let r = match (v.quoted, v.text.as_str()) {
            (false, "app") => Ok(User::App),
            (false, "root") => Ok(User::Root),
            (true, "app" | "root") => Err(Problem::new(format!(
                "`\"{}\"` is quoted; users are bare words",
                v.text
            ))
            .hint(format!("write `user {}`", v.text))),
            _ => Err(Problem::new(format!("unknown user `{}`", v.text)).hint(
                "processes run as `app` (uid 1000, the default) or, with `user root`, as root",
            )),
        };
        self.draft.user = self.check(&v, r);
    }

    pub(super) fn database(&mut self, pair: Pair<'_, Rule>) {
        let Some(v) = self.first_val(pair) else {
            return;
        };
        let lower = v.text.to_ascii_lowercase();
        let r = match (v.quoted, v.text.as_str()) {
            (false, "postgres") => Ok(Database::Postgres),
            _ if matches!(lower.as_str(), "postgres" | "postgresql" | "pg" | "psql") => {
                Err(Problem::new(format!("unknown database `{}`", v.text))
                    .hint("write `database postgres`"))
            }
            _ => Err(Problem::new(format!("unknown database `{}`", v.text))
                .hint("BytePort manages PostgreSQL: `database postgres`")),
        };
        self.draft.database = self.check(&v, r);
    }

    pub(super) fn release(&mut self, pair: Pair<'_, Rule>) {
        let start = pair.as_span().start();
        let mut run = None;
        for p in self.entries(Context::Release, "release", pair) {
            let (s, e) = Self::kw_span(&p);
            if !self.once("release run", "`run` in the `release` block", s, e) {
                continue;
            }
            let c = p.into_inner().find(|c| c.as_rule() == Rule::command);
            run = Some(c.and_then(|c| self.command(c)).map(|v| v.text));
        }
        match run {
            None if self.meant.contains(&"run") => {}
            None => self.err(
                start,
                start + "release".len(),
                "`release` block needs `run`".into(),
                Some("add `run COMMAND` inside the block, e.g. `run ./migrate`".into()),
            ),
            Some(Some(run)) => self.draft.release = Some(Release { run }),
            Some(None) => {}
        }
    }

    pub(super) fn volume(&mut self, pair: Pair<'_, Rule>) {
        let (start, kw_end) = Self::kw_span(&pair);
        let given: Vec<_> = pair
            .into_inner()
            .filter(|p| p.as_rule() == Rule::value)
            .collect();
        let usage = "write `volume NAME /PATH SIZE`, e.g. `volume data /app/data 1G`";
        if given.len() < 3 {
            let what = ["a name", "a mount path", "a size"][given.len()..].join(" and ");
            self.err(
                start,
                kw_end,
                format!("`volume` needs {what}"),
                Some(usage.into()),
            );
            return;
        }
        if let Some(extra) = given.get(3) {
            let (a, b) = (extra.as_span().start(), extra.as_span().end());
            self.err(
                a,
                b,
                "`volume` takes three values: NAME /PATH SIZE".into(),
                Some(usage.into()),
            );
            return;
        }
        let mut vals = given.into_iter().map(|p| self.val(p));
        let (Some(Some(n)), Some(Some(p)), Some(Some(s))) = (vals.next(), vals.next(), vals.next())
        else {
            return;
        };
        let name = self.check(&n, volume_name(&n.text));
        let path = self.check(&p, mount_path(&p.text));
        let size = self.check(&s, volume_size(&s.text));
        let (Some(name), Some(path), Some(size_bytes)) = (name, path, size) else {
            return;
        };
        if !self.once(
            &format!("volume {name}"),
            &format!("volume `{name}`"),
            n.start,
            n.end,
        ) {
            return;
        }
        if let Some(other) = self
            .draft
            .volumes
            .iter()
            .find(|v| at_or_under(&path, &v.volume.path) || at_or_under(&v.volume.path, &path))
        {
            let (other_name, other_path) = (other.volume.name.clone(), other.volume.path.clone());
            let line = self.src.locate(other.path_at.0).0;
            let (message, hint) = if other_path == path {
                (
                    format!("volume `{other_name}` is already mounted at {path}"),
                    format!("`{other_name}` is on line {line}; give each volume a path of its own"),
                )
            } else {
                (
                    format!(
                        "volume `{name}` at {path} and volume `{other_name}` at {other_path} are nested"
                    ),
                    format!(
                        "`{other_name}` is on line {line}; mount volumes side by side, never one inside another"
                    ),
                )
            };
            self.err(p.start, p.end, message, Some(hint));
            return;
        }
        if self.draft.volumes.len() == MAX_VOLUMES {
            self.err(
                start,
                kw_end,
                format!("more than {MAX_VOLUMES} volumes"),
                Some("keep related data on one volume, in directories of its own".into()),
            );
            return;
        }
        self.draft.volumes.push(VolumeAt {
            volume: Volume {
                name,
                path,
                size_bytes,
            },
            name_at: (n.start, n.end),
            path_at: (p.start, p.end),
        });
    }

    /// Volumes against the rest of the manifest: a volume may not hide the
    /// files the build puts in the image, and an app with one runs in one
    /// VM at a time.
    pub(super) fn volume_checks(&mut self, d: &Draft) {
        let default_steps = [BuildStep::Copy {
            from: ".".into(),
            to: "/app".into(),
            line: 0,
        }];
        let steps = d.build.as_deref().unwrap_or(&default_steps);
        let mut placed: Vec<(&str, &str)> = steps
            .iter()
            .filter_map(|s| match s {
                BuildStep::Copy { to, .. } => Some((to.as_str(), "the build copies the app there")),
                BuildStep::Workdir { path, .. } => {
                    Some((path.as_str(), "it is the build's working directory"))
                }
                BuildStep::Run { .. } => None,
            })
            .collect();
        placed.iter_mut().for_each(|(p, _)| {
            let t = p.trim_end_matches('/');
            *p = if t.is_empty() { "/" } else { t };
        });
        for v in &d.volumes {
            let hidden = placed
                .iter()
                .find(|(to, _)| at_or_under(to, &v.volume.path));
            if let Some((to, why)) = hidden {
                let (a, b) = v.path_at;
                self.err(
                    a,
                    b,
                    format!(
                        "volume `{}` at {} would hide the app's files in {to} ({why})",
                        v.volume.name, v.volume.path
                    ),
                    Some(format!(
                        "mount it at a directory of its own, e.g. `{to}/data`"
                    )),
                );
            }
        }
        if let (Some((n, a, b)), Some(first)) = (d.instances, d.volumes.first()) {
            if n > 1 {
                let line = self.src.locate(first.name_at.0).0;
                self.err(
                    a,
                    b,
                    format!("`instances {n}` cannot be used with a volume: a volume is attached to one VM at a time"),
                    Some(format!(
                        "volume `{}` is on line {line}; keep 1 instance, or keep shared data in `database postgres`",
                        first.volume.name
                    )),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_paths_are_absolute_plain_and_not_reserved() {
        assert_eq!(mount_path("/app/instance").unwrap(), "/app/instance");
        assert_eq!(
            mount_path("/var/lib/postgresql").unwrap(),
            "/var/lib/postgresql"
        );
        assert_eq!(mount_path("/data").unwrap(), "/data");
        for (bad, why) in [
            ("data", "absolute"),
            ("/", "cannot be mounted at `/`"),
            ("/proc", "reserved"),
            ("/proc/x", "reserved"),
            ("/sys", "reserved"),
            ("/dev/shm", "reserved"),
            ("/tmp", "reserved"),
            ("/usr/local", "system's files"),
            ("/etc", "system's files"),
            ("/data/", "ends with `/`"),
            ("/a//b", "plain"),
            ("/a/../etc", "plain"),
            ("/a/./b", "plain"),
            ("/my data", "contains ` `"),
            ("/d\u{e9}j\u{e0}", "contains"),
        ] {
            let e = mount_path(bad).unwrap_err();
            assert!(e.message.contains(why), "{bad}: {}", e.message);
        }
        assert!(mount_path(&format!("/{}", "a".repeat(300))).is_err());
        // Near misses of reserved names are fine.
        assert!(mount_path("/procedures").is_ok());
        assert!(mount_path("/devdata").is_ok());
    }

    #[test]
    fn volume_names_and_sizes_have_limits() {
        assert!(volume_name("data").is_ok());
        assert!(volume_name("pg-data-2").is_ok());
        assert!(volume_name("Data").is_err());
        assert!(volume_name("my_data").is_err());
        assert!(volume_name(&"a".repeat(33))
            .unwrap_err()
            .message
            .contains("32"));
        assert_eq!(volume_size("1G").unwrap(), 1 << 30);
        assert_eq!(volume_size("16M").unwrap(), 16 << 20);
        assert!(volume_size("15M").is_err());
        assert!(volume_size("1025G").is_err());
        assert!(volume_size("99999999999999999999G").is_err());
        assert_eq!(
            volume_size("20000K").unwrap_err().hint.unwrap(),
            "write `20M`"
        );
        assert!(volume_size("1").is_err());
    }

    #[test]
    fn nesting_is_component_wise() {
        assert!(at_or_under("/app/data", "/app"));
        assert!(at_or_under("/app", "/app"));
        assert!(!at_or_under("/application", "/app"));
        assert!(at_or_under("/anything", "/"));
    }
}
