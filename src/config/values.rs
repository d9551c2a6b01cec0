//! Parsing and checking the values of configuration keys: addresses,
//! counts, sizes, allow lists. Each error names the key and where its
//! value came from.

use std::net::SocketAddr;

use super::{ConfigError, Source};

pub(super) fn parse_addr(
    key: &'static str,
    (value, source): (String, Source),
) -> Result<SocketAddr, ConfigError> {
    value.parse().map_err(|e| ConfigError::Value {
        key,
        source_name: source.to_string(),
        message: format!("`{value}` is not an address like 127.0.0.1:8080 ({e})"),
    })
}

/// A positive whole number.
pub(super) fn parse_count(
    key: &'static str,
    (value, source): (String, Source),
) -> Result<u64, ConfigError> {
    value
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ConfigError::Value {
            key,
            source_name: source.to_string(),
            message: format!("`{value}` is not a positive whole number"),
        })
}

/// A size in bytes, with an optional K, M or G suffix (powers of 1024).
pub(super) fn parse_size(
    key: &'static str,
    (value, source): (String, Source),
) -> Result<u64, ConfigError> {
    let v = value.trim();
    let (digits, unit) = match v.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&v[..i], c.to_ascii_uppercase()),
        _ => (v, 'B'),
    };
    let shift = match unit {
        'B' => 0,
        'K' => 10,
        'M' => 20,
        'G' => 30,
        _ => 64,
    };
    digits
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|n| *n > 0 && shift < 64)
        .and_then(|n| n.checked_mul(1u64 << shift.min(63)))
        .ok_or_else(|| ConfigError::Value {
            key,
            source_name: source.to_string(),
            message: format!("`{value}` is not a size like 1G, 512M or 1048576"),
        })
}

/// `egress_allow`: comma-separated `ADDR:PORT` or `CIDR` entries, each
/// checked here so a typo fails at start, not at the first connection.
pub(super) fn parse_allow_list(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        item.parse::<egress::Allow>().map_err(|e| {
            format!("`{item}`: {e} (expected ADDR:PORT such as 10.1.2.3:5432, or a CIDR such as 10.8.0.0/16)")
        })?;
        out.push(item.to_string());
    }
    Ok(out)
}
