//! Every sentence the git client's user reads about a failure (`remote:`
//! lines, `! [remote rejected] main -> main (...)` reasons, stderr of
//! `ssh git@host ...`, disconnect reasons), chosen here and nowhere else.
//!
//! The errors themselves ([`AuthError`], [`DeployError`],
//! [`RefRejection`], ...) say what failed, for the server log; this
//! module says it to the user: what happened and what they can do, never
//! a server path or a backend's error chain (those are logged, and the
//! client is told so).

use std::time::Duration;

use crate::hook::{AuthError, DeployError};
use crate::limits::{human, Closing};
use crate::names::ExecError;
use crate::receive::ingest::IngestError;
use crate::receive::RefRejection;

/// An error and its sources as one line, for the server log.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Why access to an app was refused (a stderr line).
pub fn auth(e: &AuthError) -> String {
    match e {
        AuthError::Denied { user, app, .. } => format!(
            "byteport: app `{app}` does not exist or you have no access to it (ask its owner: byteport apps share {app} {user})"
        ),
        AuthError::Refused { reason } => format!("byteport: {reason}"),
        AuthError::Backend(_) => {
            "byteport: the server cannot check access right now (the error is in its log); try again in a moment".into()
        }
    }
}

/// Why a deploy failed, as the reason of a rejected ref: git prints it as
/// `! [remote rejected] main -> main (deploy failed: ...)`.
pub fn deploy(e: &DeployError) -> String {
    let why = match e {
        DeployError::Rejected { reason } => reason.clone(),
        DeployError::Busy { what } => {
            format!("{what}; push again when it has finished")
        }
        DeployError::Cancelled { by } => format!("cancelled by {by}"),
        DeployError::Interrupted { reason } => {
            format!("interrupted ({reason}); the previous version is still live, push again")
        }
        DeployError::TimedOut { deadline } => format!(
            "did not finish within {}; the previous version is still live",
            human(*deadline)
        ),
        DeployError::Internal(_) => {
            "internal error on the server (logged); push again, or ask its operator".into()
        }
    };
    format!("deploy failed: {why}")
}

/// Why one ref of a push was not moved (the `ng` reason).
pub fn ref_rejected(r: &RefRejection) -> String {
    match r {
        RefRejection::Unpack => "unpacker error".into(),
        RefRejection::AlreadyExists => "already exists (fetch first)".into(),
        RefRejection::Stale => "stale info: the ref changed since you fetched (fetch first)".into(),
        RefRejection::MissingObjects => "missing necessary objects".into(),
        RefRejection::Incomplete(e) => format!("missing necessary objects: {e}"),
        RefRejection::RefsUnreadable(_) => {
            "cannot read the repository's refs (logged); push again, or ask its operator".into()
        }
        RefRejection::InProgress => {
            "another push to this ref is still in progress; wait for it, fetch, and push again"
                .into()
        }
        RefRejection::Deploy(e) => deploy(e),
        RefRejection::ClientGone => "the client left before the deploy finished".into(),
        RefRejection::HookPanicked => {
            "deploy failed: internal error on the server (logged); push again, or ask its operator"
                .into()
        }
        RefRejection::Atomic => "atomic push failed".into(),
        RefRejection::Transaction(_) => "ref update failed (logged); fetch and push again".into(),
    }
}

/// Why the pushed pack was refused (a `remote: error:` line and the
/// `unpack` status; git shows the refs as `(unpacker error)`).
pub fn unpack(e: &IngestError) -> String {
    match e {
        IngestError::TooBig { .. } => e.to_string(),
        // What gix says about a bad pack is about the client's data.
        IngestError::Pack(_) => chain(e),
        IngestError::Sync { .. } => {
            "the server cannot store the pack (logged); push again, or ask its operator".into()
        }
    }
}

/// An authenticated client beyond `max_connections`.
pub fn connection_limit(max: usize) -> String {
    format!(
        "byteport: the server is at its connection limit ({max} connections); try again in a moment"
    )
}

/// A git exchange that stalled.
pub fn idle(timeout: Duration) -> String {
    format!(
        "byteport: nothing received from the client for {}: closing the connection (idle timeout)",
        human(timeout)
    )
}

/// A connection closed at a deadline (the disconnect reason).
pub fn closing(c: &Closing) -> String {
    match c {
        Closing::Handshake(d) => format!(
            "byteport: the SSH key exchange did not complete within {}",
            human(*d)
        ),
        Closing::Login(d) => format!(
            "byteport: authentication did not complete within {}",
            human(*d)
        ),
        Closing::Idle(d) => format!(
            "byteport: no command for {}: closing the connection (idle timeout)",
            human(*d)
        ),
    }
}

/// A port, socket or X11 forwarding request.
pub fn forwarding_refused() -> String {
    "byteport: port forwarding is not available here; this server takes git pushes, fetches and `ssh git@host help` commands".into()
}

/// `ssh -s NAME`.
pub fn unsupported_subsystem(name: &str) -> String {
    format!(
        "byteport: subsystem `{}` is not available; this server takes git pushes, fetches and commands (try: ssh git@host help)",
        name.escape_default()
    )
}

/// `ssh -t` with a `TERM` that is no terminfo name: the terminal is
/// granted as `dumb` (OpenSSH gives up on a refused `-t`, with a message
/// that does not say why).
pub fn bad_term(term: &str, e: &crate::terminal::TtyError) -> String {
    format!(
        "byteport: TERM `{}` cannot be used ({e}); the terminal is `{}`",
        term.escape_default(),
        crate::terminal::FALLBACK_TERM
    )
}

/// An admin command kept writing output without reading its stdin while
/// the client kept sending: `cap` bytes piled up on the server, so the
/// command's input was ended there (see [`crate::terminal::MAX_UNREAD_INPUT`]).
pub fn unread_input(cap: usize) -> String {
    format!(
        "byteport: {} of your input piled up unread on the server while the command was writing output, so the command's input ends there (it gets those bytes, then end-of-file) and the rest of your input is dropped; send large input to a command that reads it as it comes, or in smaller pieces",
        human_bytes(cap)
    )
}

/// `8 MiB`, `512 KiB`, `100 bytes`: exact, for sizes people configure.
fn human_bytes(n: usize) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} bytes")
    }
}

/// An exec line that cannot be run.
pub fn bad_command(e: &ExecError) -> String {
    format!("byteport: {e}")
}

/// A fetch from an app nobody pushed to yet.
pub fn no_repository(app: &str) -> String {
    format!("byteport: app `{app}` has no repository yet: push to it first")
}

/// The repository could not be created (details logged).
pub fn repository_unavailable(app: &str) -> String {
    format!("byteport: cannot create the repository for {app} (logged); try again, or ask the server's operator")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_input_cut_says_how_much_and_why() {
        let text = unread_input(8 << 20);
        assert!(text.starts_with("byteport: 8 MiB of your input"), "{text}");
        assert!(text.contains("while the command was writing output"));
        assert!(text.contains("the rest of your input is dropped"));
        assert_eq!(human_bytes(512 << 10), "512 KiB");
        assert_eq!(human_bytes(1000), "1000 bytes");
    }

    #[test]
    fn internals_stay_in_the_log() {
        let secret = std::io::Error::other("/srv/byteport/state.db: disk I/O error");
        let backend = AuthError::Backend(Box::new(secret));
        assert!(!auth(&backend).contains("/srv"), "{}", auth(&backend));
        assert!(chain(&backend).contains("disk I/O error"));
        let internal = DeployError::Internal(Box::new(std::io::Error::other("/srv/x: ENOSPC")));
        assert!(!deploy(&internal).contains("/srv"));
        assert!(deploy(&internal).starts_with("deploy failed: "));
    }

    #[test]
    fn every_deploy_failure_says_what_to_do() {
        let cases = [
            DeployError::Rejected {
                reason: "invalid Byteport manifest: Byteport:3:1: unknown key".into(),
            },
            DeployError::Busy {
                what: "deploy #5 (pushed by bob) is still running".into(),
            },
            DeployError::Cancelled {
                by: "alice (byteport deploys cancel)".into(),
            },
            DeployError::Interrupted {
                reason: "byteport restarted".into(),
            },
            DeployError::TimedOut {
                deadline: Duration::from_secs(900),
            },
        ];
        let words: Vec<String> = cases.iter().map(deploy).collect();
        assert_eq!(
            words[0],
            "deploy failed: invalid Byteport manifest: Byteport:3:1: unknown key"
        );
        assert!(words[1].ends_with("push again when it has finished"));
        assert!(words[2].contains("cancelled by alice"));
        assert!(words[3].contains("previous version is still live, push again"));
        assert!(words[4].contains("within 15 min"));
        let denied = AuthError::Denied {
            user: "bob".into(),
            app: "hello".into(),
            access: crate::Access::Write,
        };
        assert!(auth(&denied).contains("byteport apps share hello bob"));
    }
}
