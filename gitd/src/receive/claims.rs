//! Which refs a push in progress is updating, so that two pushes never
//! update one ref at the same time, without holding any lock while a
//! deploy runs.
//!
//! A push claims each ref it is about to check and deploy; a second push
//! to a claimed ref is rejected at once ("another push to this ref is
//! still in progress") instead of waiting for a deploy that, once done,
//! makes the second push stale anyway. Pushes to other refs of the same
//! repository go on in parallel; their ref transactions are serialized by
//! the ref files' own locks and old-id checks. Claims live in memory: a
//! restart ends every push, and with it every claim.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Refs being updated, by repository.
#[derive(Debug, Default)]
pub struct Claims(Mutex<HashSet<(PathBuf, String)>>);

/// A claimed ref; dropping it releases the claim.
#[derive(Debug)]
pub struct Claim<'a> {
    claims: &'a Claims,
    key: (PathBuf, String),
}

impl Claims {
    /// Claims `name` in `repo`, or `None` while another push holds it.
    pub fn claim(&self, repo: &Path, name: &str) -> Option<Claim<'_>> {
        let key = (repo.to_path_buf(), name.to_string());
        let fresh = self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.clone());
        fresh.then_some(Claim { claims: self, key })
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.claims
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_claim_per_ref_until_released() {
        let claims = Claims::default();
        let repo = Path::new("/r/app.git");
        let main = claims.claim(repo, "refs/heads/main").unwrap();
        assert!(claims.claim(repo, "refs/heads/main").is_none());
        // Another ref, or the same ref of another repository, is free.
        let _dev = claims.claim(repo, "refs/heads/dev").unwrap();
        let _other = claims
            .claim(Path::new("/r/other.git"), "refs/heads/main")
            .unwrap();
        drop(main);
        assert!(claims.claim(repo, "refs/heads/main").is_some());
    }
}
