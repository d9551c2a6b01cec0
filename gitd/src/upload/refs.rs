//! The repository's refs as upload-pack shows them: the v0/v1 ref
//! advertisement (with capabilities and HEAD's symref) and the v2
//! `ls-refs` command (ref-prefix, symrefs, peel, unborn).

use std::io::Write;

use gix::ObjectId;

use super::UploadError;
use crate::pktline::{self, Pkt};

/// One ref.
#[derive(Debug, Clone)]
pub struct RefEntry {
    /// Full name (`refs/heads/main`).
    pub name: String,
    /// What it points to.
    pub id: ObjectId,
    /// For an annotated tag: the object it finally points to.
    pub peeled: Option<ObjectId>,
}

/// HEAD and the refs, read once per session.
#[derive(Debug, Clone, Default)]
pub struct Refs {
    /// HEAD's value, if it points to a commit.
    pub head_id: Option<ObjectId>,
    /// HEAD's target ref name (even when unborn).
    pub head_target: Option<String>,
    /// All other refs, sorted by name.
    pub refs: Vec<RefEntry>,
}

impl Refs {
    /// Reads HEAD and every direct ref (symbolic refs other than HEAD are
    /// not advertised).
    pub fn read(repo: &gix::Repository) -> Result<Refs, UploadError> {
        let mut refs = vec![];
        let platform = repo.references().map_err(|e| UploadError::repo(repo, e))?;
        for r in platform.all().map_err(|e| UploadError::repo(repo, e))? {
            let mut r = r.map_err(|e| UploadError::repo(repo, e))?;
            let Some(id) = r.target().try_id().map(|i| i.to_owned()) else {
                continue;
            };
            let peeled = r.peel_to_id().ok().map(|p| p.detach()).filter(|p| *p != id);
            refs.push(RefEntry {
                name: r.name().as_bstr().to_string(),
                id,
                peeled,
            });
        }
        refs.sort_by(|a, b| a.name.cmp(&b.name));
        let head = repo.head().ok();
        Ok(Refs {
            head_id: head.as_ref().and_then(|h| h.id()).map(|i| i.detach()),
            head_target: head
                .as_ref()
                .and_then(|h| h.referent_name().map(|n| n.as_bstr().to_string())),
            refs,
        })
    }

    /// Every advertised id (what a v0 client may `want` directly).
    pub fn tips(&self) -> impl Iterator<Item = ObjectId> + '_ {
        self.head_id.into_iter().chain(
            self.refs
                .iter()
                .flat_map(|r| std::iter::once(r.id).chain(r.peeled)),
        )
    }

    /// The commit a ref name resolves to (full name or a short name under
    /// `refs/heads/` or `refs/tags/`).
    pub fn resolve(&self, name: &str) -> Option<ObjectId> {
        if name == "HEAD" {
            return self.head_id;
        }
        [
            name.to_string(),
            format!("refs/{name}"),
            format!("refs/tags/{name}"),
            format!("refs/heads/{name}"),
        ]
        .iter()
        .find_map(|full| self.refs.iter().find(|r| &r.name == full))
        .map(|r| r.peeled.unwrap_or(r.id))
    }

    /// Writes the v0/v1 advertisement: HEAD, then the refs with peeled
    /// tags, capabilities behind a NUL on the first line, then flush.
    pub fn advertise(&self, out: &mut dyn Write, capabilities: &str) -> std::io::Result<()> {
        let symref = self
            .head_target
            .as_ref()
            .filter(|_| self.head_id.is_some())
            .map(|t| format!(" symref=HEAD:{t}"))
            .unwrap_or_default();
        let mut lines: Vec<(ObjectId, String)> = vec![];
        if let Some(id) = self.head_id {
            lines.push((id, "HEAD".into()));
        }
        for r in &self.refs {
            lines.push((r.id, r.name.clone()));
            if let Some(p) = r.peeled {
                lines.push((p, format!("{}^{{}}", r.name)));
            }
        }
        if lines.is_empty() {
            lines.push((
                ObjectId::null(gix::hash::Kind::Sha1),
                "capabilities^{}".into(),
            ));
        }
        for (i, (id, name)) in lines.iter().enumerate() {
            let l = if i == 0 {
                format!("{id} {name}\0{capabilities}{symref}\n")
            } else {
                format!("{id} {name}\n")
            };
            pktline::data(out, l.as_bytes())?;
        }
        pktline::flush(out)
    }
}

/// `ls-refs` arguments.
#[derive(Debug, Default)]
pub struct LsRefs {
    symrefs: bool,
    peel: bool,
    unborn: bool,
    prefixes: Vec<String>,
}

/// Beyond this many prefixes git stops filtering; so do we.
const MAX_PREFIXES: usize = 65_536;

impl LsRefs {
    /// Parses the argument lines of one `ls-refs` request.
    pub fn parse<'a>(args: impl IntoIterator<Item = Pkt<'a>>) -> Result<LsRefs, UploadError> {
        let mut a = LsRefs::default();
        for pkt in args {
            let line = pkt.text().unwrap_or_default();
            match line {
                b"symrefs" => a.symrefs = true,
                b"peel" => a.peel = true,
                b"unborn" => a.unborn = true,
                _ => match line.strip_prefix(b"ref-prefix ") {
                    Some(p) => a.prefixes.push(String::from_utf8_lossy(p).to_string()),
                    None => {
                        return Err(UploadError::Refused(format!(
                            "ls-refs: unexpected argument `{}`",
                            String::from_utf8_lossy(line).escape_default()
                        )))
                    }
                },
            }
        }
        if a.prefixes.len() > MAX_PREFIXES {
            a.prefixes.clear();
        }
        Ok(a)
    }

    fn wants(&self, name: &str) -> bool {
        self.prefixes.is_empty() || self.prefixes.iter().any(|p| name.starts_with(p.as_str()))
    }

    /// Writes the listing and the closing flush.
    pub fn write(&self, refs: &Refs, out: &mut dyn Write) -> std::io::Result<()> {
        if self.wants("HEAD") {
            let target = refs
                .head_target
                .as_ref()
                .filter(|_| self.symrefs)
                .map(|t| format!(" symref-target:{t}"))
                .unwrap_or_default();
            match refs.head_id {
                Some(id) => {
                    pktline::data(out, format!("{id} HEAD{target}\n").as_bytes())?;
                }
                None if self.unborn && !target.is_empty() => {
                    pktline::data(out, format!("unborn HEAD{target}\n").as_bytes())?;
                }
                None => {}
            }
        }
        for r in refs.refs.iter().filter(|r| self.wants(&r.name)) {
            let peeled = match (self.peel, r.peeled) {
                (true, Some(p)) => format!(" peeled:{p}"),
                _ => String::new(),
            };
            pktline::data(out, format!("{} {}{peeled}\n", r.id, r.name).as_bytes())?;
        }
        pktline::flush(out)
    }
}
