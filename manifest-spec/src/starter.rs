//! `byteport manifest init`: a commented starter manifest guessed from the
//! names of the files at the repository root. Reads no files itself.

use std::fmt::Write;

/// What kind of app the root files suggest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Node { lockfile: bool },
    Python { requirements: bool },
    Static,
    Generic,
}

fn guess(root_files: &[&str]) -> Kind {
    let has = |name: &str| root_files.iter().any(|f| f.trim_end_matches('/') == name);
    if has("package.json") {
        Kind::Node {
            lockfile: has("package-lock.json"),
        }
    } else if has("requirements.txt") || has("pyproject.toml") {
        Kind::Python {
            requirements: has("requirements.txt"),
        }
    } else if has("index.html") {
        Kind::Static
    } else {
        Kind::Generic
    }
}

/// Turns any directory name into a valid app name (a DNS label).
fn sanitize_app_name(raw: &str) -> String {
    let mut name = String::new();
    for c in raw.to_lowercase().chars() {
        let c = if c.is_ascii_alphanumeric() { c } else { '-' };
        if !(c == '-' && (name.is_empty() || name.ends_with('-'))) {
            name.push(c);
        }
    }
    let name: String = name.chars().take(63).collect();
    let name = name.trim_end_matches('-');
    if name.is_empty() {
        "app".to_string()
    } else {
        name.to_string()
    }
}

/// A commented starter manifest for an app called `app_name` (sanitized to
/// a DNS label), guessed from the file names at the repository root:
/// `package.json` → Node, `requirements.txt`/`pyproject.toml` → Python,
/// `index.html` → static site on busybox, anything else → a generic Debian
/// app. The result always passes [`crate::parse`].
pub fn starter_manifest(app_name: &str, root_files: &[&str]) -> String {
    let name = sanitize_app_name(app_name);
    let kind = guess(root_files);
    let mut s = String::new();
    let what = match kind {
        Kind::Node { .. } => "a Node.js web app (found package.json)",
        Kind::Python { .. } => "a Python web app (found requirements.txt or pyproject.toml)",
        Kind::Static => "a static site (found index.html)",
        Kind::Generic => "a generic app (no package.json, requirements.txt or index.html found)",
    };
    let _ = writeln!(
        s,
        "# Byteport manifest for {what}.\n\
         # Written by `byteport manifest init`; check it with `byteport manifest check`.\n\
         # Every directive is documented in manifest-spec/SPEC.md.\n\
         \n\
         app {name}"
    );
    s.push_str(match kind {
        Kind::Static => STATIC,
        Kind::Node { lockfile } => {
            if lockfile {
                NODE_CI
            } else {
                NODE_INSTALL
            }
        }
        Kind::Python { requirements } => {
            if requirements {
                PYTHON_REQUIREMENTS
            } else {
                PYTHON_PROJECT
            }
        }
        Kind::Generic => GENERIC,
    });
    s.push_str(COMMON_TAIL);
    s
}

const STATIC: &str = r#"from busybox

# The repository is copied to /app (the default build). Serve it as is.
web {
  run busybox httpd -f -p 8080 -h /app
  port 8080
  health GET / every 10s timeout 2s
}
"#;

const NODE_CI: &str = r#"from debian:bookworm
packages nodejs npm ca-certificates

build {
  copy . /app
  workdir /app
  # Installs exactly what package-lock.json pins.
  run npm ci --omit=dev
}

env {
  NODE_ENV = production
}

web {
  # Your server must listen on this port (it is also in $PORT).
  run npm start
  port 8080
  # Point this at a cheap endpoint of your app, e.g. /healthz.
  health GET / every 5s timeout 2s
}
"#;

const NODE_INSTALL: &str = r#"from debian:bookworm
packages nodejs npm ca-certificates

build {
  copy . /app
  workdir /app
  # No package-lock.json found; commit one and use `npm ci --omit=dev`.
  run npm install --omit=dev
}

env {
  NODE_ENV = production
}

web {
  # Your server must listen on this port (it is also in $PORT).
  run npm start
  port 8080
  # Point this at a cheap endpoint of your app, e.g. /healthz.
  health GET / every 5s timeout 2s
}
"#;

const PYTHON_REQUIREMENTS: &str = r#"from debian:bookworm
# Many libraries exist as Debian packages (python3-flask, python3-requests...):
# listing them here is faster than pip.
packages python3 python3-venv ca-certificates

build {
  copy . /app
  workdir /app
  run python3 -m venv /app/.venv && /app/.venv/bin/pip install --no-cache-dir -r requirements.txt
}

env {
  PYTHONUNBUFFERED = 1
}

web {
  # Your server must listen on this port (it is also in $PORT).
  run /app/.venv/bin/python app.py
  port 8080
  # Point this at a cheap endpoint of your app, e.g. /healthz.
  health GET / every 5s timeout 2s
}
"#;

const PYTHON_PROJECT: &str = r#"from debian:bookworm
packages python3 python3-venv ca-certificates

build {
  copy . /app
  workdir /app
  run python3 -m venv /app/.venv && /app/.venv/bin/pip install --no-cache-dir .
}

env {
  PYTHONUNBUFFERED = 1
}

web {
  # Your server must listen on this port (it is also in $PORT).
  run /app/.venv/bin/python -m app
  port 8080
  # Point this at a cheap endpoint of your app, e.g. /healthz.
  health GET / every 5s timeout 2s
}
"#;

const GENERIC: &str = r#"from debian:bookworm
# Debian packages your app needs at build and run time.
packages ca-certificates

build {
  copy . /app
  workdir /app
  # run make          # build steps run in order, inside the root filesystem
}

web {
  # The command that starts your server, listening on this port.
  run ./start.sh
  port 8080
}

# A background process instead of (or next to) a web server:
# worker jobs {
#   run ./jobs.sh
# }
"#;

const COMMON_TAIL: &str = r#"
# Secrets are declared here and set with the CLI; values never go in this file.
# secret DATABASE_URL

vm {
  cpus 1
  memory 256M
  disk 1G
}

# Draft a portfolio page after each deploy (reviewed before publishing):
# portfolio {
#   title "My app"
#   tags web
#   description auto
#   publish review
# }
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guesses_the_kind_from_root_files() {
        assert_eq!(
            guess(&["package.json", "index.html"]),
            Kind::Node { lockfile: false }
        );
        assert_eq!(
            guess(&["package.json", "package-lock.json"]),
            Kind::Node { lockfile: true }
        );
        assert_eq!(
            guess(&["pyproject.toml"]),
            Kind::Python {
                requirements: false
            }
        );
        assert_eq!(
            guess(&["requirements.txt", "index.html"]),
            Kind::Python { requirements: true }
        );
        assert_eq!(guess(&["index.html", "style.css"]), Kind::Static);
        assert_eq!(guess(&["main.go", "src/"]), Kind::Generic);
        assert_eq!(guess(&[]), Kind::Generic);
    }

    #[test]
    fn names_become_dns_labels() {
        assert_eq!(sanitize_app_name("My_Cool App!"), "my-cool-app");
        assert_eq!(sanitize_app_name("--x--"), "x");
        assert_eq!(sanitize_app_name("ünïcode"), "n-code");
        assert_eq!(sanitize_app_name(""), "app");
        assert_eq!(sanitize_app_name("___"), "app");
        assert_eq!(sanitize_app_name(&"a".repeat(100)).len(), 63);
    }
}
