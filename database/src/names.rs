//! From an app's name to the names PostgreSQL sees, and SQL quoting.
//!
//! An app's database and role share one name: `app_` and the app's name
//! with `-` turned into `_` (`my-app` → `app_my_app`). App names are DNS
//! labels (`[a-z0-9-]`, at most 63 characters) but PostgreSQL keeps only 63
//! bytes of a name and silently cuts the rest, so a name that would be
//! longer is shortened *with a digest of the whole app name* — two apps can
//! never end up sharing a database because their names agree on a prefix.
//! Anything else is refused before a single statement is sent; the SQL
//! still quotes every name and literal.

use sha2::{Digest, Sha256};

/// Longest PostgreSQL identifier (NAMEDATALEN - 1).
const MAX_IDENT: usize = 63;
/// Longest app name accepted (a DNS label).
const MAX_APP: usize = 63;
/// What every app database and role name starts with.
pub const PREFIX: &str = "app_";

/// Why an app name cannot name a database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadName(pub String);

/// The database and role name of `app`, or why `app` is not an app name.
pub fn ident_for(app: &str) -> Result<String, BadName> {
    if app.is_empty() || app.len() > MAX_APP {
        return Err(BadName(format!(
            "an app name has 1 to {MAX_APP} characters (this one has {})",
            app.len()
        )));
    }
    if let Some(c) = app
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(BadName(format!(
            "an app name has only a-z, 0-9 and '-' (found {c:?})"
        )));
    }
    if app.starts_with('-') || app.ends_with('-') {
        return Err(BadName(
            "an app name neither starts nor ends with '-'".into(),
        ));
    }
    let plain = format!("{PREFIX}{}", app.replace('-', "_"));
    if plain.len() <= MAX_IDENT {
        return Ok(plain);
    }
    // `app_` + 46 characters + `_` + 12 hex digits = 63.
    let digest = hex::encode(Sha256::digest(app.as_bytes()));
    let keep = MAX_IDENT - PREFIX.len() - 1 - 12;
    Ok(format!(
        "{}_{}",
        &plain[..PREFIX.len() + keep],
        &digest[..12]
    ))
}

/// `name` as a quoted SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `text` as a quoted SQL string literal (standard conforming strings, the
/// default since PostgreSQL 9.1: backslashes are plain characters).
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_names_map_to_prefixed_identifiers() {
        assert_eq!(ident_for("my-app").unwrap(), "app_my_app");
        assert_eq!(ident_for("a").unwrap(), "app_a");
        assert_eq!(ident_for("0day").unwrap(), "app_0day");
    }

    #[test]
    fn hostile_names_are_refused() {
        for bad in [
            "",
            "App",
            "a_b",
            "a\"; DROP DATABASE x; --",
            "a'b",
            "a b",
            "-a",
            "a-",
            "ä",
            "a\0b",
            &"a".repeat(64),
        ] {
            assert!(ident_for(bad).is_err(), "{bad:?} was accepted");
        }
        let e = ident_for("x;y").unwrap_err();
        assert!(e.0.contains("';'"), "{e:?}");
    }

    #[test]
    fn long_names_stay_within_postgres_limit_and_distinct() {
        let a = format!("{}-a", "x".repeat(60));
        let b = format!("{}-b", "x".repeat(60));
        let (ia, ib) = (ident_for(&a).unwrap(), ident_for(&b).unwrap());
        assert_eq!(ia.len(), 63);
        assert_eq!(ib.len(), 63);
        assert_ne!(ia, ib, "a shared prefix must not mean a shared database");
        assert!(ia.starts_with("app_xxx"));
        // Exactly 59 characters still fits unchanged.
        let fits = "y".repeat(59);
        assert_eq!(ident_for(&fits).unwrap(), format!("app_{fits}"));
    }

    #[test]
    fn quoting_doubles_quotes() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal("a\\'"), "'a\\'''");
    }
}
