//! What the client asked for: the exec command line, parsed and checked
//! before anything touches the disk.

/// A git service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// `git-receive-pack` (push).
    ReceivePack,
    /// `git-upload-pack` (clone, fetch).
    UploadPack,
}

/// A parsed exec request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// A git service on an app's repository.
    Git {
        /// Which service.
        service: Service,
        /// The app (a DNS label).
        app: String,
    },
    /// Any other command line (admin commands).
    Command(String),
}

/// Is `name` a DNS label: 1-63 of `a-z0-9-`, no leading or trailing `-`?
/// The one rule for app (and user) names across BytePort.
pub fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// A name that is not a DNS label (the message is written for the user).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid app name `{}`: use 1-63 lower-case letters, digits and '-' (e.g. ssh://git@host:2222/my-app.git)", .0.escape_default())]
pub struct InvalidAppName(pub String);

/// An exec line that cannot be run (messages written for the user).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecError {
    /// Over 64 KiB.
    #[error("command line too long")]
    TooLong,
    /// Not UTF-8.
    #[error("the command is not UTF-8")]
    NotUtf8,
    /// Unbalanced quotes.
    #[error("cannot parse the command (unbalanced quotes)")]
    Unbalanced,
    /// A git service with no or several repository arguments.
    #[error("expected exactly one repository argument, e.g. git-receive-pack 'my-app.git'")]
    RepositoryArguments,
    /// The repository's name is not a valid app name.
    #[error(transparent)]
    AppName(#[from] InvalidAppName),
}

/// Checks an app name (see [`is_dns_label`]).
pub fn validate_app_name(name: &str) -> Result<(), InvalidAppName> {
    if is_dns_label(name) {
        Ok(())
    } else {
        Err(InvalidAppName(name.to_string()))
    }
}

/// Parses an exec request such as `git-receive-pack '/hello.git'`.
pub fn parse_exec(line: &[u8]) -> Result<Request, ExecError> {
    if line.len() > 64 * 1024 {
        return Err(ExecError::TooLong);
    }
    let line = std::str::from_utf8(line).map_err(|_| ExecError::NotUtf8)?;
    let words = shlex::split(line).ok_or(ExecError::Unbalanced)?;
    let service = match words.first().map(String::as_str) {
        Some("git-receive-pack") => Service::ReceivePack,
        Some("git-upload-pack") => Service::UploadPack,
        Some("git") if matches!(words.get(1).map(String::as_str), Some("receive-pack")) => {
            Service::ReceivePack
        }
        Some("git") if matches!(words.get(1).map(String::as_str), Some("upload-pack")) => {
            Service::UploadPack
        }
        _ => return Ok(Request::Command(line.to_string())),
    };
    let path_arg = if words[0] == "git" {
        words.get(2)
    } else {
        words.get(1)
    };
    let (Some(path), true) = (
        path_arg,
        words.len() == if words[0] == "git" { 3 } else { 2 },
    ) else {
        return Err(ExecError::RepositoryArguments);
    };
    let name = path.strip_prefix('/').unwrap_or(path);
    let name = name.strip_suffix(".git").unwrap_or(name);
    validate_app_name(name)?;
    Ok(Request::Git {
        service,
        app: name.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_services_in_every_spelling() {
        for line in [
            "git-receive-pack 'hello.git'",
            "git-receive-pack '/hello.git'",
            "git-receive-pack hello",
            "git receive-pack '/hello.git'",
        ] {
            assert_eq!(
                parse_exec(line.as_bytes()).unwrap(),
                Request::Git {
                    service: Service::ReceivePack,
                    app: "hello".into()
                },
                "{line}"
            );
        }
        assert!(matches!(
            parse_exec(b"git-upload-pack '/a-1.git'").unwrap(),
            Request::Git {
                service: Service::UploadPack,
                ..
            }
        ));
        assert_eq!(
            parse_exec(b"apps").unwrap(),
            Request::Command("apps".into())
        );
    }

    #[test]
    fn hostile_names_are_refused_with_a_message() {
        for line in [
            "git-receive-pack '../x.git'",
            "git-receive-pack '/etc/passwd'",
            "git-receive-pack 'a/b.git'",
            "git-receive-pack 'Hello.git'",
            "git-receive-pack ''",
            "git-receive-pack '-x.git'",
            "git-upload-pack 'a b.git'",
        ] {
            let e = parse_exec(line.as_bytes()).unwrap_err().to_string();
            assert!(e.contains("invalid app name"), "{line}: {e}");
        }
        let long = format!("git-receive-pack '{}.git'", "a".repeat(64));
        assert!(parse_exec(long.as_bytes()).is_err());
        let e = |line: &[u8]| parse_exec(line).unwrap_err().to_string();
        assert!(e(b"git-receive-pack").contains("exactly one"));
        assert!(e(b"git-receive-pack a b").contains("exactly one"));
        assert!(e(b"git-receive-pack 'a").contains("unbalanced"));
        assert!(e(&[0xff, 0xfe]).contains("UTF-8"));
        assert!(e(&vec![b'a'; 70_000]).contains("too long"));
    }
}
