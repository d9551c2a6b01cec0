//! The blocks: `build`, `env`, `vm`, `web`, `worker`, `portfolio`.

use pest::iterators::Pair;

use super::{Lowerer, Val};
use crate::grammar::Rule;
use crate::keywords::Context;
use crate::limits::{MAX_BUILD_STEPS, MAX_ENV_VARS, MAX_INSTANCES, MAX_WORKERS};
use crate::model::{BuildStep, HealthCheck, Network, WebProcess, Worker};
use crate::values::{self, Problem};

/// Default health check interval and timeout.
pub(crate) const DEFAULT_HEALTH_EVERY_MS: u64 = 5_000;
pub(crate) const DEFAULT_HEALTH_TIMEOUT_MS: u64 = 2_000;
/// Default screenshot wait.
pub(crate) const DEFAULT_SCREENSHOT_WAIT_MS: u64 = 1_000;

impl Lowerer<'_> {
    /// Common part of every block: reports a missing `}` and returns the
    /// block's entries (keyword pairs dropped), with `bad` lines explained.
    /// Keywords that bad lines probably meant go to `self.meant`, so that a
    /// misspelled `prot` is not also reported as a missing `port`.
    pub(super) fn entries<'i>(
        &mut self,
        ctx: Context,
        name: &str,
        pair: Pair<'i, Rule>,
    ) -> Vec<Pair<'i, Rule>> {
        let start = pair.as_span().start();
        let mut out = Vec::new();
        let mut close = None;
        self.meant.clear();
        for p in pair.into_inner() {
            match p.as_rule() {
                Rule::bad => {
                    if let Some(k) = self.bad(ctx, p) {
                        self.meant.push(k);
                    }
                }
                Rule::unknown_block => {
                    let a = p.as_span().start();
                    let header = p.as_str().lines().next().unwrap_or("");
                    let e = crate::keywords::explain(ctx, header, true);
                    self.err(a + e.start, a + e.end, e.message, e.hint);
                }
                Rule::close => close = Some(p),
                Rule::after_close => {
                    let (a, b) = (p.as_span().start(), p.as_span().end());
                    self.err(
                        a,
                        b,
                        format!("unexpected text after the `}}` closing the `{name}` block"),
                        Some("a closing `}` stands on a line of its own".into()),
                    );
                }
                r if is_keyword(r) => {}
                _ => out.push(p),
            }
        }
        self.closed(name, start, close.as_ref());
        out
    }

    /// Span of a directive's keyword, for duplicate reports.
    pub(super) fn kw_span(p: &Pair<'_, Rule>) -> (usize, usize) {
        let s = p.as_span();
        let len = p
            .as_str()
            .find(|c: char| c.is_whitespace())
            .unwrap_or(s.end() - s.start());
        (s.start(), s.start() + len)
    }

    pub(super) fn build(&mut self, pair: Pair<'_, Rule>) {
        let mut steps = Vec::new();
        for p in self.entries(Context::Build, "build", pair) {
            let line = self.src.locate(p.as_span().start()).0;
            let start = p.as_span().start();
            let rule = p.as_rule();
            if rule == Rule::network {
                // A setting of the whole build, not a step.
                self.draft.build_network = self.network_setting(p, "build");
                continue;
            }
            let step = match rule {
                Rule::copy => {
                    let mut vals = p.into_inner().filter(|v| v.as_rule() == Rule::value);
                    let (Some(a), Some(b)) = (vals.next(), vals.next()) else {
                        continue;
                    };
                    let (Some(a), Some(b)) = (self.val(a), self.val(b)) else {
                        continue;
                    };
                    let from = self.check(&a, values::repo_path(&a.text));
                    let to = self.check(&b, values::abs_path("copy destination", &b.text));
                    match (from, to) {
                        (Some(from), Some(to)) => BuildStep::Copy { from, to, line },
                        _ => continue,
                    }
                }
                Rule::workdir => {
                    let Some(v) = self.first_val(p) else { continue };
                    let Some(path) = self.check(&v, values::abs_path("workdir", &v.text)) else {
                        continue;
                    };
                    BuildStep::Workdir { path, line }
                }
                Rule::run => {
                    let Some(c) = p.into_inner().find(|c| c.as_rule() == Rule::command) else {
                        continue;
                    };
                    let Some(v) = self.command(c) else { continue };
                    self.draft.build_run_at.get_or_insert(start);
                    BuildStep::Run {
                        command: v.text,
                        line,
                    }
                }
                _ => continue,
            };
            if steps.len() == MAX_BUILD_STEPS {
                let end = start + 1;
                self.err(
                    start,
                    end,
                    format!("more than {MAX_BUILD_STEPS} build steps"),
                    Some("combine steps into a script".into()),
                );
            }
            steps.push(step);
        }
        steps.truncate(MAX_BUILD_STEPS);
        self.draft.build = Some(steps);
    }

    pub(super) fn env(&mut self, pair: Pair<'_, Rule>) {
        for p in self.entries(Context::Env, "env", pair) {
            let mut inner = p.into_inner();
            let (Some(n), Some(v)) = (inner.next(), inner.next()) else {
                continue;
            };
            let name = Val {
                text: n.as_str().to_string(),
                start: n.as_span().start(),
                end: n.as_span().end(),
                quoted: false,
            };
            let name_ok = self.check(&name, values::env_name(&name.text));
            let value = self.val(v);
            let (Some(key), Some(value)) = (name_ok, value) else {
                continue;
            };
            if !self.once(
                &format!("env {key}"),
                &format!("variable `{key}`"),
                name.start,
                name.end,
            ) {
                continue;
            }
            if self.draft.env.len() == MAX_ENV_VARS {
                self.err(
                    name.start,
                    name.end,
                    format!("more than {MAX_ENV_VARS} variables"),
                    None,
                );
                continue;
            }
            self.draft.env.insert(key, value.text);
        }
    }

    pub(super) fn vm(&mut self, pair: Pair<'_, Rule>) {
        for p in self.entries(Context::Vm, "vm", pair) {
            let (s, e) = Self::kw_span(&p);
            let rule = p.as_rule();
            let key = match rule {
                Rule::cpus => "cpus",
                Rule::memory => "memory",
                Rule::network => "network",
                _ => "disk",
            };
            if !self.once(
                &format!("vm {key}"),
                &format!("`{key}` in the `vm` block"),
                s,
                e,
            ) {
                continue;
            }
            if rule == Rule::network {
                if let Some(n) = self.network_value(p) {
                    self.draft.vm_network = Some(n);
                }
                continue;
            }
            let Some(v) = self.first_val(p) else { continue };
            match rule {
                Rule::cpus => {
                    let n = values::number_in("cpus", &v.text, 1, 32);
                    self.draft.cpus = self.check(&v, n).map(|n| n as u32);
                }
                Rule::memory => {
                    let r = sized("memory", &v.text, 32 << 20, 64 << 30);
                    self.draft.memory = self.check(&v, r);
                }
                _ => {
                    let r = sized("disk", &v.text, 16 << 20, 1024 << 30);
                    self.draft.disk = self.check(&v, r);
                }
            }
        }
    }

    pub(super) fn web(&mut self, pair: Pair<'_, Rule>) {
        let start = pair.as_span().start();
        self.draft.web_at = Some(start);
        self.draft.process_attempted = true;
        // Outer `None`: not given; `Some(None)`: given but invalid (already
        // reported, so not reported again as missing).
        let (mut run, mut port, mut health) = (None, None, None);
        let mut instances = 1;
        for p in self.entries(Context::Web, "web", pair) {
            let (s, e) = Self::kw_span(&p);
            let rule = p.as_rule();
            let key = match rule {
                Rule::run => "run",
                Rule::port => "port",
                Rule::instances => "instances",
                _ => "health",
            };
            if !self.once(
                &format!("web {key}"),
                &format!("`{key}` in the `web` block"),
                s,
                e,
            ) {
                continue;
            }
            match rule {
                Rule::run => {
                    let c = p.into_inner().find(|c| c.as_rule() == Rule::command);
                    run = Some(c.and_then(|c| self.command(c)).map(|v| v.text));
                }
                Rule::port => {
                    let v = self.first_val(p);
                    port = Some(v.and_then(|v| {
                        let r = values::number_in("port", &v.text, 1, 65535);
                        self.check(&v, r).map(|n| n as u16)
                    }));
                }
                Rule::instances => {
                    let Some(v) = self.first_val(p) else { continue };
                    let r = values::number_in("instances", &v.text, 1, MAX_INSTANCES.into());
                    if let Some(n) = self.check(&v, r) {
                        instances = n as u32;
                        self.draft.instances = Some((instances, v.start, v.end));
                    }
                }
                _ => health = Some(self.health(p)),
            }
        }
        for (missing, what) in [(run.is_none(), "run COMMAND"), (port.is_none(), "port N")] {
            let kw = what.split(' ').next().unwrap_or(what);
            if missing && !self.meant.contains(&kw) {
                self.err(
                    start,
                    start + 3,
                    format!("`web` block needs `{kw}`"),
                    Some(format!("add `{what}` inside the `web` block")),
                );
            }
        }
        if let (Some(Some(run)), Some(Some(port))) = (run, port) {
            if let Some(None) = health {
                return;
            }
            self.draft.web = Some(WebProcess {
                run,
                port,
                health: health.flatten(),
                instances,
            });
        }
    }

    /// A `network` line of a block where it may appear once: the setting,
    /// or `None` when it repeats or its value is wrong (both reported).
    fn network_setting(&mut self, pair: Pair<'_, Rule>, block: &str) -> Option<Network> {
        let (s, e) = Self::kw_span(&pair);
        if !self.once(
            &format!("{block} network"),
            &format!("`network` in the `{block}` block"),
            s,
            e,
        ) {
            return None;
        }
        self.network_value(pair)
    }

    /// The value of a `network` line: `on` or `off`.
    fn network_value(&mut self, pair: Pair<'_, Rule>) -> Option<Network> {
        let v = self.first_val(pair)?;
        let r = match (v.quoted, v.text.as_str()) {
            (false, "on") => Ok(Network::On),
            (false, "off") => Ok(Network::Off),
            _ => {
                let lower = v.text.to_ascii_lowercase();
                let hint = match lower.as_str() {
                    "on" | "off" => format!("write `network {lower}`"),
                    "none" | "no" | "false" | "disabled" | "0" => "write `network off`".into(),
                    "yes" | "true" | "enabled" | "1" | "internet" => {
                        "write `network on` (the internet only; it is the default)".into()
                    }
                    _ => "write `network off` for no network, or `network on` (the default)".into(),
                };
                Err(Problem::new(format!("`{}` is not a network setting", v.text)).hint(hint))
            }
        };
        self.check(&v, r)
    }

    fn health(&mut self, pair: Pair<'_, Rule>) -> Option<HealthCheck> {
        let mut method = "GET".to_string();
        let (mut path, mut every, mut timeout) = (None, None, None);
        let mut ok = true;
        for p in pair.into_inner() {
            match p.as_rule() {
                Rule::http_method => {
                    let m = p.as_str();
                    if matches!(m, "GET" | "HEAD") {
                        method = m.to_string();
                    } else {
                        let s = p.as_span().start();
                        let hint = matches!(m.to_ascii_uppercase().as_str(), "GET" | "HEAD")
                            .then(|| format!("write `{}`", m.to_ascii_uppercase()))
                            .or(Some("health checks use `GET` or `HEAD`".into()));
                        self.err(
                            s,
                            s + m.len(),
                            format!("`{m}` is not a health check method"),
                            hint,
                        );
                        ok = false;
                    }
                }
                Rule::value => {
                    let v = self.val(p);
                    path = v.and_then(|v| {
                        self.check(&v, values::http_path("health check path", &v.text))
                    });
                    ok &= path.is_some();
                }
                Rule::every | Rule::timeout => {
                    let is_every = p.as_rule() == Rule::every;
                    let Some(v) = self.first_val(p) else {
                        ok = false;
                        continue;
                    };
                    let (lo, hi, what) = if is_every {
                        (1_000, 600_000, "health check interval")
                    } else {
                        (100, 60_000, "health check timeout")
                    };
                    let r = values::duration(&v.text).and_then(|ms| within(what, ms, lo, hi));
                    match self.check(&v, r) {
                        Some(ms) if is_every => every = Some(ms),
                        Some(ms) => timeout = Some((ms, v)),
                        None => ok = false,
                    }
                }
                _ => {}
            }
        }
        let interval_ms = every.unwrap_or(DEFAULT_HEALTH_EVERY_MS);
        let timeout_ms = match timeout {
            Some((ms, v)) if ms > interval_ms => {
                let p = Problem::new(format!(
                    "health check timeout ({}) is longer than its interval ({} ms)",
                    v.text, interval_ms
                ))
                .hint("the timeout must not exceed `every`");
                self.problem(&v, p);
                return None;
            }
            Some((ms, _)) => ms,
            None => DEFAULT_HEALTH_TIMEOUT_MS.min(interval_ms),
        };
        (ok && path.is_some()).then(|| HealthCheck {
            method,
            path: path.unwrap_or_default(),
            interval_ms,
            timeout_ms,
        })
    }

    pub(super) fn worker(&mut self, pair: Pair<'_, Rule>) {
        let start = pair.as_span().start();
        self.draft.process_attempted = true;
        let (header, rest): (Vec<_>, Vec<_>) = self
            .entries(Context::Worker, "worker", pair)
            .into_iter()
            .partition(|p| p.as_rule() == Rule::value);
        let (name, name_at) = match header.into_iter().next() {
            None => ("worker".to_string(), (start, start + "worker".len())),
            Some(p) => {
                let Some(v) = self.val(p) else { return };
                let Some(name) = self.check(&v, values::dns_label("worker name", &v.text)) else {
                    return;
                };
                (name, (v.start, v.end))
            }
        };
        if !self.once(
            &format!("worker {name}"),
            &format!("worker `{name}`"),
            name_at.0,
            name_at.1,
        ) {
            // Already reported as a duplicate; its body would only repeat it.
            return;
        }
        let mut run = None;
        for p in rest {
            let (s, e) = Self::kw_span(&p);
            if !self.once(&format!("worker {name} run"), "`run` in this worker", s, e) {
                continue;
            }
            let c = p.into_inner().find(|c| c.as_rule() == Rule::command);
            run = Some(c.and_then(|c| self.command(c)).map(|v| v.text));
        }
        match run {
            None if self.meant.contains(&"run") => {}
            None => self.err(
                start,
                start + "worker".len(),
                format!("worker `{name}` needs `run`"),
                Some("add `run COMMAND` inside the block".into()),
            ),
            Some(Some(run)) => {
                if self.draft.workers.len() == MAX_WORKERS {
                    self.err(
                        start,
                        start + 6,
                        format!("more than {MAX_WORKERS} workers"),
                        None,
                    );
                } else {
                    self.draft.workers.push(Worker { name, run });
                }
            }
            _ => {}
        }
    }
}

/// Keyword tokens carry no information beyond their directive's rule.
fn is_keyword(r: Rule) -> bool {
    matches!(
        r,
        Rule::kw_build
            | Rule::kw_env
            | Rule::kw_vm
            | Rule::kw_web
            | Rule::kw_worker
            | Rule::kw_portfolio
            | Rule::kw_release
    )
}

/// A size within `lo..=hi` bytes.
fn sized(what: &str, s: &str, lo: u64, hi: u64) -> Result<u64, Problem> {
    let n = values::size(s)?;
    if (lo..=hi).contains(&n) {
        Ok(n)
    } else {
        use crate::model::format_size as f;
        Err(Problem::new(format!(
            "{what} must be between {} and {}, not {s}",
            f(lo),
            f(hi)
        )))
    }
}

/// A duration within `lo..=hi` milliseconds.
pub(super) fn within(what: &str, ms: u64, lo: u64, hi: u64) -> Result<u64, Problem> {
    if (lo..=hi).contains(&ms) {
        Ok(ms)
    } else {
        Err(Problem::new(format!(
            "{what} must be between {lo} ms and {hi} ms, not {ms} ms"
        )))
    }
}
