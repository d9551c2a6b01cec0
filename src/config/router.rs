//! The router's keys (`router_*`): deadlines, caps, limits and trusted
//! proxies, turned into a [`router::RouterConfig`] (defaults from
//! [`router::RouterConfig::default`]).

use std::time::Duration;

use super::{parse_count, parse_size, ConfigError, Source};

/// The `router_*` keys as read from `byteport.toml`.
#[derive(Debug, Default, Clone)]
pub(super) struct RouterFile {
    pub header_timeout_secs: Option<u64>,
    pub idle_timeout_secs: Option<u64>,
    pub upstream_timeout_secs: Option<u64>,
    pub max_connections: Option<u64>,
    pub max_connections_per_client: Option<u64>,
    pub max_header_size: Option<String>,
    pub max_body_size: Option<String>,
    pub trusted_proxies: Option<String>,
}

/// What `pick` is in [`super::Config::load`]: (key, env var, file value,
/// default) → (value, where it came from).
pub(super) type Pick<'a> =
    dyn FnMut(&'static str, Option<&'static str>, Option<String>, &str) -> (String, Source) + 'a;

/// Builds the router's settings from the keys.
pub(super) fn load(
    pick: &mut Pick<'_>,
    file: RouterFile,
    listen: std::net::SocketAddr,
) -> Result<router::RouterConfig, ConfigError> {
    let d = router::RouterConfig::new(listen);
    let n = |v: Option<u64>| v.map(|v| v.to_string());
    let secs = |key, (v, s)| parse_count(key, (v, s)).map(Duration::from_secs);
    let header = pick(
        "router_header_timeout_secs",
        Some("BYTEPORT_ROUTER_HEADER_TIMEOUT_SECS"),
        n(file.header_timeout_secs),
        &d.header_read_timeout.as_secs().to_string(),
    );
    let idle = pick(
        "router_idle_timeout_secs",
        Some("BYTEPORT_ROUTER_IDLE_TIMEOUT_SECS"),
        n(file.idle_timeout_secs),
        &d.idle_timeout.as_secs().to_string(),
    );
    let upstream = pick(
        "router_upstream_timeout_secs",
        Some("BYTEPORT_ROUTER_UPSTREAM_TIMEOUT_SECS"),
        n(file.upstream_timeout_secs),
        &d.upstream_response_timeout.as_secs().to_string(),
    );
    let conns = pick(
        "router_max_connections",
        Some("BYTEPORT_ROUTER_MAX_CONNECTIONS"),
        n(file.max_connections),
        &d.max_connections.to_string(),
    );
    let per_client = pick(
        "router_max_connections_per_client",
        Some("BYTEPORT_ROUTER_MAX_CONNECTIONS_PER_CLIENT"),
        n(file.max_connections_per_client),
        &d.max_connections_per_client.to_string(),
    );
    let header_size = pick(
        "router_max_header_size",
        Some("BYTEPORT_ROUTER_MAX_HEADER_SIZE"),
        file.max_header_size,
        "32K",
    );
    let body_size = pick(
        "router_max_body_size",
        Some("BYTEPORT_ROUTER_MAX_BODY_SIZE"),
        file.max_body_size,
        "100M",
    );
    let proxies = pick(
        "router_trusted_proxies",
        Some("BYTEPORT_ROUTER_TRUSTED_PROXIES"),
        file.trusted_proxies,
        "",
    );
    let config = router::RouterConfig {
        listen,
        header_read_timeout: secs("router_header_timeout_secs", header)?,
        idle_timeout: secs("router_idle_timeout_secs", idle)?,
        upstream_response_timeout: secs("router_upstream_timeout_secs", upstream)?,
        max_connections: parse_count("router_max_connections", conns)? as usize,
        max_connections_per_client: parse_count("router_max_connections_per_client", per_client)?
            as usize,
        max_header_bytes: parse_size("router_max_header_size", header_size)? as usize,
        max_body_bytes: parse_size("router_max_body_size", body_size)?,
        trusted_proxies: router::parse_trusted_proxies(&proxies.0).map_err(|e| {
            ConfigError::Value {
                key: "router_trusted_proxies",
                source_name: proxies.1.to_string(),
                message: e.to_string(),
            }
        })?,
    };
    config.validate().map_err(|e| ConfigError::Value {
        key: "router_*",
        source_name: "the router settings".into(),
        message: e.to_string(),
    })?;
    Ok(config)
}

/// `config show` rows.
pub(super) fn rows(c: &router::RouterConfig) -> Vec<(&'static str, String)> {
    vec![
        (
            "router_header_timeout_secs",
            c.header_read_timeout.as_secs().to_string(),
        ),
        (
            "router_idle_timeout_secs",
            c.idle_timeout.as_secs().to_string(),
        ),
        (
            "router_upstream_timeout_secs",
            c.upstream_response_timeout.as_secs().to_string(),
        ),
        ("router_max_connections", c.max_connections.to_string()),
        (
            "router_max_connections_per_client",
            c.max_connections_per_client.to_string(),
        ),
        ("router_max_header_size", c.max_header_bytes.to_string()),
        ("router_max_body_size", c.max_body_bytes.to_string()),
        (
            "router_trusted_proxies",
            if c.trusted_proxies.is_empty() {
                "none".into()
            } else {
                c.trusted_proxies
                    .iter()
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            },
        ),
    ]
}
