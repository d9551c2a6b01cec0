//! Rules for single values: strings and their escapes, names, sizes,
//! durations, ports, paths. Each check returns a [`Problem`] the caller
//! places at the value's position.

use crate::limits::{MAX_TAGS, MAX_TAG_LEN};

/// Why a value was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    pub message: String,
    pub hint: Option<String>,
    /// Byte range inside the value's source text, when narrower than it.
    pub at: Option<(usize, usize)>,
}

impl Problem {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Problem {
            message: message.into(),
            hint: None,
            at: None,
        }
    }

    pub(crate) fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

type Check<T> = Result<T, Problem>;

/// Removes the quotes of a string literal and resolves its escapes:
/// `\\ \" \n \t \r \u{HEX}`.
pub(crate) fn unescape(literal: &str) -> Check<String> {
    let inner = &literal[1..literal.len() - 1];
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.char_indices();
    while let Some((i, c)) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let bad = |len: usize, msg: String| Problem {
            message: msg,
            hint: Some(r#"valid escapes are \\ \" \n \t \r and \u{1F600}"#.into()),
            at: Some((i + 1, i + 1 + len)),
        };
        match chars.next() {
            Some((_, '\\')) => out.push('\\'),
            Some((_, '"')) => out.push('"'),
            Some((_, 'n')) => out.push('\n'),
            Some((_, 't')) => out.push('\t'),
            Some((_, 'r')) => out.push('\r'),
            Some((_, 'u')) => {
                let rest = &inner[i + 2..];
                let Some(end) = rest.find('}').filter(|_| rest.starts_with('{')) else {
                    return Err(bad(2, "`\\u` must be followed by `{HEX}`".into()));
                };
                let hex = &rest[1..end];
                let ch = (1..=6)
                    .contains(&hex.len())
                    .then(|| u32::from_str_radix(hex, 16).ok())
                    .flatten()
                    .and_then(char::from_u32);
                match ch {
                    Some(ch) if !ch.is_control() || matches!(ch, '\t' | '\n' | '\r') => {
                        out.push(ch)
                    }
                    _ => {
                        return Err(bad(
                            end + 2,
                            format!("`\\u{{{hex}}}` is not a valid character"),
                        ))
                    }
                }
                for _ in 0..=end {
                    chars.next();
                }
            }
            Some((_, other)) => {
                return Err(bad(
                    other.len_utf8() + 1,
                    format!("unknown escape `\\{other}`"),
                ))
            }
            None => return Err(bad(1, "string ends with a lone `\\`".into())),
        }
    }
    Ok(out)
}

/// A DNS label: `[a-z0-9]([a-z0-9-]*[a-z0-9])?`, at most 63 characters.
pub(crate) fn dns_label(what: &str, s: &str) -> Check<String> {
    let ok_chars = s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !s.is_empty() && s.len() <= 63 && ok_chars && !s.starts_with('-') && !s.ends_with('-') {
        return Ok(s.to_string());
    }
    let mut p = Problem::new(format!(
        "{what} `{s}` is not a DNS label (lowercase letters, digits and `-`, 1-63 characters, no `-` at either end)"
    ));
    let fixed: String = s
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect::<String>()
        .trim_matches('-')
        .chars()
        .take(63)
        .collect();
    let fixed = fixed.trim_end_matches('-').to_string();
    if !fixed.is_empty() && fixed != s {
        p = p.hint(format!("try `{fixed}`"));
    }
    Err(p)
}

/// An environment or secret name: `[A-Z_][A-Z0-9_]*`.
pub(crate) fn env_name(s: &str) -> Check<String> {
    let mut bytes = s.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_uppercase() || b == b'_');
    if first_ok && bytes.all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_') {
        return Ok(s.to_string());
    }
    let mut p = Problem::new(format!(
        "`{s}` is not a valid variable name (uppercase letters, digits and `_`, not starting with a digit)"
    ));
    let upper = s.to_ascii_uppercase().replace('-', "_");
    if upper != s && env_name_plain(&upper) && !upper.is_empty() {
        p = p.hint(format!("did you mean `{upper}`?"));
    }
    Err(p)
}

fn env_name_plain(s: &str) -> bool {
    let mut b = s.bytes();
    b.next()
        .is_some_and(|c| c.is_ascii_uppercase() || c == b'_')
        && b.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_')
}

/// Splits `123abc` into the number and its unit.
fn number_unit(s: &str) -> (&str, &str) {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    s.split_at(split)
}

/// A size with a binary unit `K`, `M` or `G`, in bytes.
pub(crate) fn size(s: &str) -> Check<u64> {
    let (num, unit) = number_unit(s);
    let example =
        "sizes are a whole number with a unit K, M or G (powers of 1024), e.g. `256M` or `1G`";
    let mult: u64 = match unit {
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        _ => {
            let hint = match unit {
                "" => format!("add a unit, e.g. `{num}M`"),
                "k" | "m" | "g" | "KB" | "MB" | "GB" | "Ki" | "Mi" | "Gi" | "KiB" | "MiB"
                | "GiB" => {
                    format!("write `{num}{}`", unit[..1].to_ascii_uppercase())
                }
                "T" | "TB" | "Ti" | "TiB" => "write terabytes as gigabytes, e.g. `1024G`".into(),
                _ => example.into(),
            };
            return Err(Problem::new(format!("`{s}` is not a size")).hint(hint));
        }
    };
    let n: u64 = num
        .parse()
        .map_err(|_| Problem::new(format!("`{s}` is not a size")).hint(example))?;
    n.checked_mul(mult)
        .ok_or_else(|| Problem::new(format!("size `{s}` is too large")))
}

/// A duration with unit `ms`, `s` or `m`, in milliseconds.
pub(crate) fn duration(s: &str) -> Check<u64> {
    let (num, unit) = number_unit(s);
    let example = "durations are a whole number with a unit ms, s or m, e.g. `500ms`, `5s`, `1m`";
    let mult: u64 =
        match unit {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "" => {
                return Err(Problem::new(format!("`{s}` is not a duration"))
                    .hint(format!("add a unit, e.g. `{num}s`")))
            }
            "h" => {
                return Err(Problem::new(format!("`{s}` is not a duration"))
                    .hint("hours are not supported here; use minutes, e.g. `60m`"))
            }
            "sec" | "secs" | "S" => {
                return Err(Problem::new(format!("`{s}` is not a duration"))
                    .hint(format!("write `{num}s`")))
            }
            "min" | "mins" | "M" => {
                return Err(Problem::new(format!("`{s}` is not a duration"))
                    .hint(format!("write `{num}m`")))
            }
            _ => return Err(Problem::new(format!("`{s}` is not a duration")).hint(example)),
        };
    let n: u64 = num
        .parse()
        .map_err(|_| Problem::new(format!("`{s}` is not a duration")).hint(example))?;
    n.checked_mul(mult)
        .ok_or_else(|| Problem::new(format!("duration `{s}` is too large")))
}

/// A whole number in `lo..=hi`.
pub(crate) fn number_in(what: &str, s: &str, lo: u64, hi: u64) -> Check<u64> {
    match s.parse::<u64>() {
        Ok(n) if (lo..=hi).contains(&n) => Ok(n),
        Ok(_) => Err(Problem::new(format!(
            "{what} must be between {lo} and {hi}, not {s}"
        ))),
        Err(_) if s.bytes().all(|b| b.is_ascii_digit()) => Err(Problem::new(format!(
            "{what} must be between {lo} and {hi}, not {s}"
        ))),
        Err(_) => Err(Problem::new(format!(
            "{what} must be a whole number between {lo} and {hi}, not `{s}`"
        ))),
    }
}

/// An absolute path inside the VM: starts with `/`, no `..` component.
pub(crate) fn abs_path(what: &str, s: &str) -> Check<String> {
    if !s.starts_with('/') {
        return Err(
            Problem::new(format!("{what} `{s}` must be an absolute path"))
                .hint(format!("write `/{}`", s.trim_start_matches("./"))),
        );
    }
    if s.split('/').any(|c| c == "..") {
        return Err(Problem::new(format!("{what} `{s}` must not contain `..`")));
    }
    Ok(s.to_string())
}

/// A path inside the repository: relative, no `..` component.
pub(crate) fn repo_path(s: &str) -> Check<String> {
    if s.starts_with('/') {
        return Err(Problem::new(format!(
            "copy source `{s}` must be relative to the repository root"
        ))
        .hint(format!("write `{}`", s.trim_start_matches('/'))));
    }
    if s.split('/').any(|c| c == "..") {
        return Err(Problem::new(format!(
            "copy source `{s}` must stay inside the repository (no `..`)"
        )));
    }
    Ok(s.to_string())
}

/// An HTTP path for health checks and screenshots.
pub(crate) fn http_path(what: &str, s: &str) -> Check<String> {
    if !s.starts_with('/') {
        return Err(
            Problem::new(format!("{what} `{s}` must start with `/`")).hint(format!("write `/{s}`"))
        );
    }
    if s.len() > 1024 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Problem::new(format!(
            "{what} must be at most 1024 characters without spaces"
        )));
    }
    Ok(s.to_string())
}

/// A Debian package name: `[a-z0-9][a-z0-9+.-]+`.
pub(crate) fn package(s: &str) -> Check<String> {
    let ok = s.len() >= 2
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'+' | b'.' | b'-')
        });
    if ok {
        return Ok(s.to_string());
    }
    let lower = s.to_ascii_lowercase();
    let mut p = Problem::new(format!(
        "`{s}` is not a Debian package name (lowercase letters, digits, `+`, `.`, `-`)"
    ));
    if lower != s {
        p = p.hint(format!("try `{lower}`"));
    }
    Err(p)
}

/// A host name for `domains`: at least two DNS labels, at most 253 chars.
pub(crate) fn domain(s: &str) -> Check<String> {
    let lower = s.to_ascii_lowercase();
    let labels: Vec<&str> = lower.split('.').collect();
    let ok = lower.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|l| dns_label("label", l).is_ok())
        && !labels
            .last()
            .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()));
    if ok {
        Ok(lower)
    } else {
        Err(Problem::new(format!("`{s}` is not a domain name"))
            .hint("write a host name such as `hello.example.com` (no scheme, port or path)"))
    }
}

/// A portfolio tag: lowercase, at most [`MAX_TAG_LEN`] characters.
pub(crate) fn tag(s: &str) -> Check<String> {
    let lower = s.to_lowercase();
    if lower.chars().count() > MAX_TAG_LEN {
        return Err(Problem::new(format!(
            "tag `{s}` is longer than {MAX_TAG_LEN} characters"
        )));
    }
    if lower
        .chars()
        .all(|c| c.is_alphanumeric() || matches!(c, '-' | '+' | '#' | '.' | '_'))
    {
        Ok(lower)
    } else {
        Err(Problem::new(format!(
            "tag `{s}` may only hold letters, digits and `- + # . _`"
        ))
        .hint(format!(
            "tags are single words separated by spaces, at most {MAX_TAGS}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_strings() {
        assert_eq!(unescape(r#""a\"b\\c\n\u{e9}""#).unwrap(), "a\"b\\c\né");
        let e = unescape(r#""ab\qc""#).unwrap_err();
        assert_eq!(e.at, Some((3, 5)));
        assert!(unescape(r#""\u{110000}""#).is_err());
        assert!(unescape(r#""\u{0}""#).is_err());
        assert!(unescape(r#""\u12""#).is_err());
        assert_eq!(
            unescape(r#""\""#).unwrap_err().message,
            "string ends with a lone `\\`"
        );
        assert_eq!(unescape(r#""\\""#).unwrap(), "\\");
    }

    #[test]
    fn sizes_and_durations_normalize() {
        assert_eq!(size("256M").unwrap(), 256 << 20);
        assert_eq!(size("1G").unwrap(), 1 << 30);
        assert_eq!(size("4K").unwrap(), 4096);
        assert_eq!(size("256MB").unwrap_err().hint.unwrap(), "write `256M`");
        assert!(size("256").unwrap_err().hint.unwrap().contains("`256M`"));
        assert!(size("99999999999999999999G").is_err());
        assert!(size("18014398509481984G").is_err());
        assert_eq!(duration("5s").unwrap(), 5000);
        assert_eq!(duration("250ms").unwrap(), 250);
        assert_eq!(duration("2m").unwrap(), 120_000);
        assert!(duration("1h").is_err());
        assert!(duration("5").is_err());
    }

    #[test]
    fn names_follow_their_rules() {
        assert!(dns_label("app name", "hello-flask").is_ok());
        assert_eq!(
            dns_label("app name", "Hello_Flask")
                .unwrap_err()
                .hint
                .unwrap(),
            "try `hello-flask`"
        );
        assert!(dns_label("app name", &"a".repeat(64)).is_err());
        assert!(dns_label("app name", "-a").is_err());
        assert!(env_name("GREETING_2").is_ok());
        assert_eq!(
            env_name("greeting").unwrap_err().hint.unwrap(),
            "did you mean `GREETING`?"
        );
        assert!(env_name("2X").is_err());
        assert!(package("python3-flask").is_ok());
        assert!(package("g++").is_ok());
        assert!(package("Foo").is_err());
        assert_eq!(domain("Hello.Example.com").unwrap(), "hello.example.com");
        assert!(domain("localhost").is_err());
        assert!(domain("1.2.3.4").is_err());
        assert!(domain("http://x.com").is_err());
    }

    #[test]
    fn paths_are_checked() {
        assert!(abs_path("workdir", "/app").is_ok());
        assert!(abs_path("workdir", "app").is_err());
        assert!(abs_path("workdir", "/app/../etc").is_err());
        assert!(repo_path(".").is_ok());
        assert!(repo_path("/etc").is_err());
        assert!(repo_path("../x").is_err());
        assert!(http_path("path", "/healthz").is_ok());
        assert!(http_path("path", "healthz").is_err());
        assert!(number_in("port", "70000", 1, 65535).is_err());
        assert!(number_in("port", "x", 1, 65535).is_err());
        assert_eq!(number_in("port", "8080", 1, 65535).unwrap(), 8080);
    }
}
