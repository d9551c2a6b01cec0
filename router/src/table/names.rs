//! Host names: normalising a `Host` header, and which names an app may
//! claim as extra domains.

use std::borrow::Cow;

/// Why a route change was refused (nothing was changed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// A switch to no instance at all (use `mark_down` to stop serving).
    #[error("the app {app} cannot be switched to an empty list of instances")]
    NoInstances {
        /// The app.
        app: String,
    },
    /// The same instance address twice (the balancer would weigh it double).
    #[error("the app {app} already has an instance at {addr}")]
    DuplicateInstance {
        /// The app.
        app: String,
        /// The repeated address.
        addr: std::net::SocketAddr,
    },
    /// Another app serves this name already; it keeps it until it lets go.
    #[error(
        "the domain {domain} is already served by the app {owner}; \
         remove it from {owner}'s Byteport manifest first"
    )]
    DomainTaken {
        /// The name asked for (normalised).
        domain: String,
        /// The app that holds it.
        owner: String,
    },
    /// `<app>.<base>` and the names under it are that app's alone.
    #[error("the domain {domain} belongs to the app {owner} (every app owns <app>.{base})")]
    OtherAppsName {
        /// The name asked for (normalised).
        domain: String,
        /// The app whose default name it is (or is under).
        owner: String,
        /// The base name apps are served under (`localhost`).
        base: String,
    },
    /// The base name itself is nobody's to claim.
    #[error("the domain {domain} is BytePort's own; apps are served at <app>.{domain}")]
    BaseName {
        /// The name asked for (normalised).
        domain: String,
    },
    /// Not a DNS name (an IP address, a wildcard, characters hosts never have).
    #[error("{domain:?} is not a domain name an app can be served at: {why}")]
    InvalidDomain {
        /// The name asked for.
        domain: String,
        /// What is wrong with it.
        why: &'static str,
    },
}

/// Normalises a Host header: lower case, port and trailing dot removed.
pub fn normalize_host(host: &str) -> String {
    normalized(host).into_owned()
}

/// [`normalize_host`] without allocating when the name is already lower
/// case (the common case: browsers send `app.localhost:8000`).
pub(crate) fn normalized(host: &str) -> Cow<'_, str> {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port → [v6]
        match rest.find(']') {
            Some(end) => &host[..end + 2],
            None => host,
        }
    } else {
        host.rsplit_once(':')
            .filter(|(_, p)| p.chars().all(|c| c.is_ascii_digit()))
            .map(|(h, _)| h)
            .unwrap_or(host)
    };
    let name = name.trim_end_matches('.');
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    }
}

/// Checks that `domain` (normalised) is a DNS name, not an address.
fn check_dns_name(domain: &str) -> Result<(), RouteError> {
    let invalid = |why| {
        Err(RouteError::InvalidDomain {
            domain: domain.to_string(),
            why,
        })
    };
    if domain.is_empty() {
        return invalid("it is empty");
    }
    if domain.len() > 253 {
        return invalid("it is longer than 253 characters");
    }
    if domain.parse::<std::net::IpAddr>().is_ok() {
        // A bare address would catch every request sent to the server's IP.
        return invalid("it is an IP address");
    }
    if !domain
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    {
        return invalid(
            "only letters, digits, '-' and '.' are allowed (no wildcards, ports or paths)",
        );
    }
    for label in domain.split('.') {
        if label.is_empty() {
            return invalid("it has an empty label");
        }
        if label.len() > 63 {
            return invalid("a label is longer than 63 characters");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return invalid("a label starts or ends with '-'");
        }
    }
    Ok(())
}

/// Whether `app` may ever have `domain` (normalised), whoever holds it now:
/// a DNS name, not the base name, and, under the base name, only the app's
/// own `<app>.<base>` and the names below it (another app's subdomain
/// would receive that app's cookies scoped to `<app>.<base>`).
pub(crate) fn check_claimable(app: &str, domain: &str, base: &str) -> Result<(), RouteError> {
    check_dns_name(domain)?;
    if domain == base {
        return Err(RouteError::BaseName {
            domain: domain.to_string(),
        });
    }
    if let Some(under) = domain
        .strip_suffix(base)
        .and_then(|rest| rest.strip_suffix('.'))
    {
        // `under` is everything before `.<base>`; its last label names the app.
        let owner = under.rsplit('.').next().unwrap_or(under);
        if owner != app {
            return Err(RouteError::OtherAppsName {
                domain: domain.to_string(),
                owner: owner.to_string(),
                base: base.to_string(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_normalised() {
        assert_eq!(normalize_host("Hello.LOCALHOST:8000"), "hello.localhost");
        assert_eq!(normalize_host("example.com."), "example.com");
        assert_eq!(normalize_host("[::1]:80"), "[::1]");
        assert_eq!(normalize_host("a:b"), "a:b");
        assert_eq!(normalize_host("  App.localhost.:8000 "), "app.localhost");
        assert_eq!(normalize_host("[::1"), "[::1");
        assert_eq!(normalize_host(""), "");
        assert_eq!(normalize_host(":"), "");
        assert!(matches!(
            normalized("app.localhost:1"),
            Cow::Borrowed("app.localhost")
        ));
    }

    #[test]
    fn names_under_the_base_belong_to_their_app() {
        let ok = |app, d| check_claimable(app, d, "localhost");
        assert_eq!(ok("blog", "blog.example.com"), Ok(()));
        assert_eq!(ok("blog", "blog.localhost"), Ok(()));
        assert_eq!(ok("blog", "www.blog.localhost"), Ok(()));
        assert!(matches!(
            ok("evil", "victim.localhost"),
            Err(RouteError::OtherAppsName { owner, .. }) if owner == "victim"
        ));
        assert!(matches!(
            ok("evil", "admin.victim.localhost"),
            Err(RouteError::OtherAppsName { owner, .. }) if owner == "victim"
        ));
        assert!(matches!(
            ok("evil", "localhost"),
            Err(RouteError::BaseName { .. })
        ));
        // Not under the base: `notlocalhost` merely ends with the same letters.
        assert_eq!(ok("evil", "victim.notlocalhost"), Ok(()));
    }

    #[test]
    fn only_dns_names_are_claimable() {
        for bad in [
            "",
            "127.0.0.1",
            "*.example.com",
            "example.com/x",
            "a..b",
            "-a.example.com",
            "exa mple.com",
            "[::1]",
        ] {
            assert!(
                matches!(
                    check_claimable("app", bad, "localhost"),
                    Err(RouteError::InvalidDomain { .. })
                ),
                "{bad:?} must be refused"
            );
        }
        let message = check_claimable("app", "10.0.0.1", "localhost")
            .unwrap_err()
            .to_string();
        assert!(message.contains("IP address"), "{message}");
    }
}
