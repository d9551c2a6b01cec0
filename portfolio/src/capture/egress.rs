//! What the captured page may make the browser fetch.
//!
//! The browser runs on the host, so a tenant's page could point it at the
//! host's own services (`<iframe src="http://127.0.0.1:8080/...">`, cloud
//! metadata at 169.254.169.254, another app at `other.localhost`) and the
//! screenshot would publish what came back. Every request of the tab is
//! paused (CDP `Fetch`) and let through only when it goes to the app's own
//! origin, or to a host that is not loopback, private, link-local, shared
//! (CGNAT) or a `*.localhost` name — names are resolved and every address
//! checked. Known gaps: WebSockets are not seen by `Fetch`, and a name
//! could resolve differently when Chromium resolves it again (DNS
//! rebinding); both would need a network namespace around Chromium.

use std::net::{IpAddr, ToSocketAddrs};

/// The app's origin: scheme, host (lowercase), port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl Origin {
    /// The origin of `url`, if it is an http(s) URL.
    pub fn of(url: &str) -> Option<Origin> {
        let u = url::Url::parse(url).ok()?;
        if !matches!(u.scheme(), "http" | "https") {
            return None;
        }
        Some(Origin {
            scheme: u.scheme().to_string(),
            host: u.host_str()?.trim_matches(['[', ']']).to_ascii_lowercase(),
            port: u.port_or_known_default()?,
        })
    }
}

/// Whether `ip` is one the page must not reach.
pub fn internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || (o[0] == 100 && (64..128).contains(&o[1])) // shared address space (CGNAT)
                || o[0] == 0
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return internal(IpAddr::V4(v4));
            }
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link local
        }
    }
}

/// `Ok(())` when the page may fetch `url`; `Err(why)` otherwise.
pub fn check(url: &str, app: &Origin) -> Result<(), String> {
    let lower = url.trim_start().to_ascii_lowercase();
    if lower.starts_with("data:") || lower.starts_with("blob:") || lower.starts_with("about:") {
        return Ok(());
    }
    let Some(origin) = Origin::of(url) else {
        return Err("not an http(s) URL".into());
    };
    if origin == *app {
        return Ok(());
    }
    if origin.host == "localhost" || origin.host.ends_with(".localhost") {
        return Err("another local host".into());
    }
    if let Ok(ip) = origin.host.parse::<IpAddr>() {
        return if internal(ip) {
            Err(format!("internal address {ip}"))
        } else {
            Ok(())
        };
    }
    // A name: every address it resolves to must be public. A name that
    // does not resolve cannot be fetched anyway.
    if let Ok(addrs) = (origin.host.as_str(), origin.port).to_socket_addrs() {
        for a in addrs {
            if internal(a.ip()) {
                return Err(format!(
                    "{} resolves to internal address {}",
                    origin.host,
                    a.ip()
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_app_yes_the_host_no() {
        let app = Origin::of("http://hello.localhost:8000/").unwrap();
        assert_eq!(check("http://hello.localhost:8000/style.css", &app), Ok(()));
        assert_eq!(check("data:image/png;base64,AAAA", &app), Ok(()));
        for bad in [
            "http://127.0.0.1:8080/api/v1/apps",
            "http://localhost:8080/",
            "http://other.localhost:8000/",
            "http://hello.localhost:8001/",
            "https://hello.localhost:8000/",
            "http://169.254.169.254/latest/meta-data/",
            "http://10.0.0.1/",
            "http://192.168.1.1/",
            "http://100.64.0.1/",
            "http://[::1]:8080/",
            "http://[::ffff:127.0.0.1]/",
            "http://[fd00::1]/",
            "http://0.0.0.0:8080/",
            "file:///etc/passwd",
        ] {
            assert!(check(bad, &app).is_err(), "{bad} allowed");
        }
        assert_eq!(check("https://93.184.215.14/logo.png", &app), Ok(()));
    }
}
