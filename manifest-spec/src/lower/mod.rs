//! From the pest parse tree to a validated [`Manifest`]: every directive is
//! checked where it stands (values, duplicates, unknown keywords), then the
//! manifest as a whole (`checks`), then defaults are filled in. Problems are
//! collected, not returned early, so one run reports all of them.

mod blocks;
mod checks;
mod portfolio;
mod state;

use std::collections::{BTreeMap, HashMap};

use pest::iterators::Pair;

use crate::diagnostics::Diagnostic;
use crate::grammar::Rule;
use crate::keywords::{self, Context};
use crate::limits::MAX_DIAGNOSTICS;
use crate::model::{Base, BuildStep, Manifest, Portfolio, Secret, WebProcess, Worker};
use crate::source::Source;
use crate::values::{self, Problem};

/// A value as written: its text (unescaped when quoted) and byte span.
#[derive(Debug, Clone)]
pub(crate) struct Val {
    pub text: String,
    pub start: usize,
    pub end: usize,
    pub quoted: bool,
}

/// Everything gathered while walking the tree; `None` = not given.
#[derive(Default)]
struct Draft {
    app: Option<String>,
    base: Option<(Base, usize)>,
    packages: Vec<String>,
    /// Start offset of the first `packages` directive.
    packages_at: Option<usize>,
    build: Option<Vec<BuildStep>>,
    /// Offset of the first `run` build step (for base checks).
    build_run_at: Option<usize>,
    /// `network` in the `build` block.
    build_network: Option<crate::model::Network>,
    /// `network` in the `vm` block.
    vm_network: Option<crate::model::Network>,
    env: BTreeMap<String, String>,
    secrets: Vec<(Secret, usize, usize)>,
    cpus: Option<u32>,
    memory: Option<u64>,
    disk: Option<u64>,
    web: Option<WebProcess>,
    web_at: Option<usize>,
    workers: Vec<Worker>,
    domains: Vec<String>,
    domains_at: Option<usize>,
    portfolio: Option<Portfolio>,
    /// Offset of an explicit `screenshot` line.
    screenshot_at: Option<usize>,
    /// A top-level line was not understood: it may have been the missing
    /// `app`/`from`/process, so "missing ..." errors would be noise.
    top_level_confused: bool,
    /// A `web` or `worker` block was written, valid or not.
    process_attempted: bool,
    /// `user`.
    user: Option<crate::model::User>,
    /// `volume` lines, valid ones only.
    volumes: Vec<state::VolumeAt>,
    /// `release { run ... }`.
    release: Option<crate::model::Release>,
    /// `database`.
    database: Option<crate::model::Database>,
    /// `instances N` in the `web` block, with its value's span.
    instances: Option<(u32, usize, usize)>,
}

/// Walks the tree and collects diagnostics.
pub(crate) struct Lowerer<'s> {
    src: &'s Source<'s>,
    diags: Vec<Diagnostic>,
    /// First line of every directive that may appear once, by key.
    seen: HashMap<String, usize>,
    /// Keywords that the `bad` lines of the current block probably meant.
    meant: Vec<&'static str>,
    draft: Draft,
}

/// Lowers a parsed `manifest` pair.
pub(crate) fn lower(src: &Source<'_>, root: Pair<'_, Rule>) -> Result<Manifest, Vec<Diagnostic>> {
    let mut l = Lowerer {
        src,
        diags: Vec::new(),
        seen: HashMap::new(),
        meant: Vec::new(),
        draft: Draft::default(),
    };
    for pair in root.into_inner() {
        l.top(pair);
    }
    let manifest = l.finish();
    if l.diags.is_empty() {
        if let Some(m) = manifest {
            return Ok(m);
        }
        // Every path that drops a part records why; this guards the contract
        // that an error is never empty.
        l.whole(
            "manifest could not be read (internal error: no diagnostic recorded)".into(),
            Some("please report this manifest as a bug".into()),
        );
    }
    let mut diags = l.diags;
    diags.sort_by_key(|d| (d.line, d.col));
    if diags.len() > MAX_DIAGNOSTICS {
        let last = diags[MAX_DIAGNOSTICS - 1].clone();
        diags.truncate(MAX_DIAGNOSTICS);
        diags.push(Diagnostic {
            message: format!("too many errors; stopped after {MAX_DIAGNOSTICS}"),
            hint: Some("fix these first and check again".into()),
            source_line: String::new(),
            ..last
        });
    }
    Err(diags)
}

impl<'s> Lowerer<'s> {
    /// Records an error for the byte range `start..end`.
    pub(crate) fn err(&mut self, start: usize, end: usize, message: String, hint: Option<String>) {
        if self.diags.len() <= MAX_DIAGNOSTICS {
            self.diags.push(self.src.diag(start, end, message, hint));
        }
    }

    /// Records an error about the manifest as a whole.
    pub(crate) fn whole(&mut self, message: String, hint: Option<String>) {
        if self.diags.len() <= MAX_DIAGNOSTICS {
            self.diags.push(self.src.whole(message, hint));
        }
    }

    /// Records a value problem at the value (or the narrower range it names).
    pub(crate) fn problem(&mut self, v: &Val, p: Problem) {
        let (start, end) = match p.at {
            Some((a, b)) => (v.start + a, v.start + b),
            None => (v.start, v.end),
        };
        self.err(start, end, p.message, p.hint);
    }

    /// Runs a value check, recording its problem.
    pub(crate) fn check<T>(&mut self, v: &Val, r: Result<T, Problem>) -> Option<T> {
        r.map_err(|p| self.problem(v, p)).ok()
    }

    /// Reads a `value` pair (string or word), unescaping strings.
    pub(crate) fn val(&mut self, pair: Pair<'_, Rule>) -> Option<Val> {
        let span = pair.as_span();
        let inner = pair.into_inner().next()?;
        let raw = inner.as_str();
        let quoted = inner.as_rule() == Rule::string;
        let mut v = Val {
            text: raw.to_string(),
            start: span.start(),
            end: span.end(),
            quoted,
        };
        if quoted {
            v.text = self.check(&v, values::unescape(raw))?;
        }
        Some(v)
    }

    /// Reads a `command` pair: a quoted string or the rest of the line.
    pub(crate) fn command(&mut self, pair: Pair<'_, Rule>) -> Option<Val> {
        let span = pair.as_span();
        let inner = pair.into_inner().next()?;
        let mut v = Val {
            text: inner.as_str().trim_end().to_string(),
            start: span.start(),
            end: span.start() + inner.as_str().trim_end().len(),
            quoted: inner.as_rule() == Rule::string,
        };
        if v.quoted {
            v.text = self.check(&v, values::unescape(inner.as_str()))?;
        }
        if v.text.trim().is_empty() {
            self.err(v.start, v.end, "empty command".into(), None);
            return None;
        }
        if v.text.chars().count() > crate::limits::MAX_COMMAND_CHARS {
            self.err(
                v.start,
                v.end,
                format!(
                    "command is longer than {} characters",
                    crate::limits::MAX_COMMAND_CHARS
                ),
                Some("put long commands in a script in the repository and run that".into()),
            );
            return None;
        }
        Some(v)
    }

    /// Marks a once-only directive as seen; reports and returns false on a
    /// duplicate.
    pub(crate) fn once(&mut self, key: &str, what: &str, start: usize, end: usize) -> bool {
        let line = self.src.locate(start).0;
        if let Some(&first) = self.seen.get(key) {
            self.err(
                start,
                end,
                format!("duplicate {what}"),
                Some(format!("first given on line {first}; keep one")),
            );
            return false;
        }
        self.seen.insert(key.to_string(), line);
        true
    }

    /// Explains a `bad` line in context `ctx`; returns the keyword it
    /// probably meant.
    pub(crate) fn bad(&mut self, ctx: Context, pair: Pair<'_, Rule>) -> Option<&'static str> {
        if self.diags.len() > MAX_DIAGNOSTICS {
            return None;
        }
        let start = pair.as_span().start();
        let text = pair.as_str();
        let e = keywords::explain(ctx, text, false);
        self.err(start + e.start, start + e.end, e.message, e.hint);
        e.meant
    }

    /// Reports a block whose `}` is missing. `kw` is the block's keyword
    /// pair; `close` is the block's `close` pair.
    pub(crate) fn closed(&mut self, name: &str, start: usize, close: Option<&Pair<'_, Rule>>) {
        if close.is_some_and(|c| c.as_str().is_empty()) {
            self.err(
                start,
                start + name.len(),
                format!("`{name}` block is never closed"),
                Some("add `}` on a line of its own after its last entry".into()),
            );
        }
    }

    fn top(&mut self, pair: Pair<'_, Rule>) {
        let (start, end) = (pair.as_span().start(), pair.as_span().end());
        let kw_end = start
            + pair
                .as_str()
                .find(|c: char| c.is_whitespace())
                .unwrap_or(end - start);
        let once_key = match pair.as_rule() {
            Rule::app => Some(("app", "`app`")),
            Rule::from => Some(("from", "`from`")),
            Rule::build => Some(("build", "`build` block")),
            Rule::env => Some(("env", "`env` block")),
            Rule::vm => Some(("vm", "`vm` block")),
            Rule::web => Some(("web", "`web` block")),
            Rule::portfolio => Some(("portfolio", "`portfolio` block")),
            Rule::user => Some(("user", "`user`")),
            Rule::database => Some(("database", "`database`")),
            Rule::release => Some(("release", "`release` block")),
            _ => None,
        };
        if let Some((key, what)) = once_key {
            if !self.once(key, what, start, kw_end) {
                return;
            }
        }
        match pair.as_rule() {
            Rule::app => {
                if let Some(v) = self.first_val(pair) {
                    self.draft.app = self.check(&v, values::dns_label("app name", &v.text));
                }
            }
            Rule::from => {
                if let Some(v) = self.first_val(pair) {
                    if let Some(base) = self.check(&v, checks::base(&v.text)) {
                        self.draft.base = Some((base, start));
                    }
                }
            }
            Rule::packages => self.packages(pair),
            Rule::secret => self.secret(pair),
            Rule::domains => self.domains(pair),
            Rule::build => self.build(pair),
            Rule::env => self.env(pair),
            Rule::vm => self.vm(pair),
            Rule::web => self.web(pair),
            Rule::worker => self.worker(pair),
            Rule::portfolio => self.portfolio(pair),
            Rule::user => self.user(pair),
            Rule::volume => self.volume(pair),
            Rule::database => self.database(pair),
            Rule::release => self.release(pair),
            Rule::unknown_block => {
                self.draft.top_level_confused = true;
                let header = pair.as_str().lines().next().unwrap_or("");
                let e = keywords::explain(Context::Top, header, true);
                self.err(start + e.start, start + e.end, e.message, e.hint);
            }
            Rule::bad => {
                self.draft.top_level_confused = true;
                let _ = self.bad(Context::Top, pair);
            }
            _ => {}
        }
    }

    /// The first `value` inside a directive.
    pub(crate) fn first_val(&mut self, pair: Pair<'_, Rule>) -> Option<Val> {
        let v = pair.into_inner().find(|p| p.as_rule() == Rule::value)?;
        self.val(v)
    }

    fn packages(&mut self, pair: Pair<'_, Rule>) {
        self.draft.packages_at.get_or_insert(pair.as_span().start());
        for p in pair.into_inner().filter(|p| p.as_rule() == Rule::value) {
            let Some(v) = self.val(p) else { continue };
            let Some(name) = self.check(&v, values::package(&v.text)) else {
                continue;
            };
            if self.draft.packages.contains(&name) {
                self.err(
                    v.start,
                    v.end,
                    format!("package `{name}` is listed twice"),
                    None,
                );
            } else if self.draft.packages.len() >= crate::limits::MAX_PACKAGES {
                self.err(
                    v.start,
                    v.end,
                    format!("more than {} packages", crate::limits::MAX_PACKAGES),
                    None,
                );
                return;
            } else {
                self.draft.packages.push(name);
            }
        }
    }

    fn secret(&mut self, pair: Pair<'_, Rule>) {
        let mut at_build = false;
        let mut name = None;
        for p in pair.into_inner() {
            match p.as_rule() {
                Rule::value => name = self.val(p),
                Rule::build_flag => at_build = true,
                _ => {}
            }
        }
        let Some(v) = name else { return };
        let Some(name) = self.check(&v, values::env_name(&v.text)) else {
            return;
        };
        if self.once(
            &format!("secret {name}"),
            &format!("secret `{name}`"),
            v.start,
            v.end,
        ) {
            self.draft
                .secrets
                .push((Secret { name, at_build }, v.start, v.end));
        }
    }

    fn domains(&mut self, pair: Pair<'_, Rule>) {
        let start = pair.as_span().start();
        if !self.once("domains", "`domains`", start, start + "domains".len()) {
            return;
        }
        self.draft.domains_at = Some(start);
        for p in pair.into_inner().filter(|p| p.as_rule() == Rule::value) {
            let Some(v) = self.val(p) else { continue };
            let Some(d) = self.check(&v, values::domain(&v.text)) else {
                continue;
            };
            if self.draft.domains.contains(&d) {
                self.err(
                    v.start,
                    v.end,
                    format!("domain `{d}` is listed twice"),
                    None,
                );
            } else if self.draft.domains.len() >= crate::limits::MAX_DOMAINS {
                self.err(
                    v.start,
                    v.end,
                    format!("more than {} domains", crate::limits::MAX_DOMAINS),
                    None,
                );
                return;
            } else {
                self.draft.domains.push(d);
            }
        }
    }
}
