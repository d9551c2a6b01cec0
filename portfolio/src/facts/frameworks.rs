//! Frameworks from dependency files: `package.json`, `requirements.txt`,
//! `pyproject.toml`, `Cargo.toml`, `go.mod`. Only names on a known list are
//! reported (a dependency list is not a description).

use std::collections::BTreeSet;

/// (dependency name as written in the file, display name).
const NPM: &[(&str, &str)] = &[
    ("react", "React"),
    ("next", "Next.js"),
    ("vue", "Vue"),
    ("nuxt", "Nuxt"),
    ("svelte", "Svelte"),
    ("@sveltejs/kit", "SvelteKit"),
    ("@angular/core", "Angular"),
    ("solid-js", "Solid"),
    ("preact", "Preact"),
    ("astro", "Astro"),
    ("express", "Express"),
    ("fastify", "Fastify"),
    ("koa", "Koa"),
    ("hono", "Hono"),
    ("@nestjs/core", "NestJS"),
    ("vite", "Vite"),
    ("tailwindcss", "Tailwind CSS"),
    ("typescript", "TypeScript"),
    ("socket.io", "Socket.IO"),
];
const PYTHON: &[(&str, &str)] = &[
    ("flask", "Flask"),
    ("django", "Django"),
    ("fastapi", "FastAPI"),
    ("starlette", "Starlette"),
    ("aiohttp", "aiohttp"),
    ("tornado", "Tornado"),
    ("bottle", "Bottle"),
    ("streamlit", "Streamlit"),
    ("gradio", "Gradio"),
    ("sqlalchemy", "SQLAlchemy"),
    ("pandas", "pandas"),
    ("numpy", "NumPy"),
    ("gunicorn", "Gunicorn"),
    ("uvicorn", "Uvicorn"),
];
const RUST: &[(&str, &str)] = &[
    ("axum", "axum"),
    ("actix-web", "Actix Web"),
    ("rocket", "Rocket"),
    ("warp", "warp"),
    ("poem", "Poem"),
    ("tokio", "Tokio"),
    ("leptos", "Leptos"),
    ("yew", "Yew"),
    ("dioxus", "Dioxus"),
    ("askama", "Askama"),
    ("sqlx", "SQLx"),
    ("diesel", "Diesel"),
];
const GO: &[(&str, &str)] = &[
    ("github.com/gin-gonic/gin", "Gin"),
    ("github.com/labstack/echo", "Echo"),
    ("github.com/gofiber/fiber", "Fiber"),
    ("github.com/go-chi/chi", "chi"),
    ("github.com/gorilla/mux", "Gorilla mux"),
];

fn lookup(table: &[(&str, &'static str)], name: &str, out: &mut BTreeSet<String>) {
    let name = name.trim().to_ascii_lowercase();
    if let Some((_, display)) = table.iter().find(|(dep, _)| *dep == name) {
        out.insert((*display).to_string());
    }
}

/// Frameworks named by the dependency file `file_name` (at any depth of
/// the tree) with content `text`. Unparseable files give nothing.
pub fn from_file(file_name: &str, text: &str, out: &mut BTreeSet<String>) {
    match file_name {
        "package.json" => {
            let Ok(json) = serde_json::from_str::<serde_json::Value>(text) else {
                return;
            };
            for section in ["dependencies", "devDependencies", "peerDependencies"] {
                if let Some(deps) = json.get(section).and_then(|d| d.as_object()) {
                    for name in deps.keys() {
                        lookup(NPM, name, out);
                    }
                }
            }
        }
        "requirements.txt" => {
            for line in text.lines() {
                let line = line.split('#').next().unwrap_or("").trim();
                if line.starts_with('-') {
                    continue;
                }
                let name = line
                    .split(|c: char| {
                        !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
                    })
                    .next()
                    .unwrap_or("");
                lookup(PYTHON, &name.replace('_', "-"), out);
            }
        }
        "pyproject.toml" => {
            let Ok(doc) = text.parse::<toml::Table>() else {
                return;
            };
            let mut names = Vec::new();
            if let Some(deps) = doc
                .get("project")
                .and_then(|p| p.get("dependencies"))
                .and_then(|d| d.as_array())
            {
                for d in deps.iter().filter_map(|d| d.as_str()) {
                    names.push(
                        d.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
                            .next()
                            .unwrap_or("")
                            .to_string(),
                    );
                }
            }
            if let Some(deps) = doc
                .get("tool")
                .and_then(|t| t.get("poetry"))
                .and_then(|p| p.get("dependencies"))
                .and_then(|d| d.as_table())
            {
                names.extend(deps.keys().cloned());
            }
            for n in names {
                lookup(PYTHON, &n.replace('_', "-"), out);
            }
        }
        "Cargo.toml" => {
            let Ok(doc) = text.parse::<toml::Table>() else {
                return;
            };
            for section in ["dependencies", "dev-dependencies"] {
                for table in [
                    doc.get(section),
                    doc.get("workspace").and_then(|w| w.get(section)),
                ]
                .into_iter()
                .flatten()
                {
                    if let Some(t) = table.as_table() {
                        for name in t.keys() {
                            lookup(RUST, name, out);
                        }
                    }
                }
            }
        }
        "go.mod" => {
            for line in text.lines() {
                let line = line
                    .trim()
                    .trim_start_matches("require")
                    .trim()
                    .trim_start_matches('(')
                    .trim();
                let module = line.split_whitespace().next().unwrap_or("");
                // Major-version suffixes: github.com/labstack/echo/v4.
                let base = match module.rsplit_once('/') {
                    Some((head, tail))
                        if tail.starts_with('v') && tail[1..].parse::<u32>().is_ok() =>
                    {
                        head
                    }
                    _ => module,
                };
                lookup(GO, base, out);
            }
        }
        _ => {}
    }
}

/// Whether a file name is one of the dependency files read here.
pub fn is_dependency_file(name: &str) -> bool {
    matches!(
        name,
        "package.json" | "requirements.txt" | "pyproject.toml" | "Cargo.toml" | "go.mod"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(file: &str, text: &str) -> Vec<String> {
        let mut out = BTreeSet::new();
        from_file(file, text, &mut out);
        out.into_iter().collect()
    }

    #[test]
    fn each_ecosystem() {
        assert_eq!(
            names(
                "package.json",
                r#"{"dependencies":{"express":"^4"},"devDependencies":{"vite":"5"}}"#
            ),
            ["Express", "Vite"]
        );
        assert_eq!(
            names(
                "requirements.txt",
                "Flask==3.0 # web\n-r other.txt\ngunicorn\n"
            ),
            ["Flask", "Gunicorn"]
        );
        assert_eq!(
            names(
                "pyproject.toml",
                "[project]\ndependencies = [\"fastapi>=0.1\", \"uvicorn[standard]\"]\n"
            ),
            ["FastAPI", "Uvicorn"]
        );
        assert_eq!(
            names(
                "Cargo.toml",
                "[dependencies]\naxum = \"0.8\"\ntokio = { version = \"1\" }\n"
            ),
            ["Tokio", "axum"]
        );
        assert_eq!(
            names(
                "go.mod",
                "module x\n\nrequire (\n\tgithub.com/labstack/echo/v4 v4.11.0\n)\n"
            ),
            ["Echo"]
        );
    }

    #[test]
    fn garbage_gives_nothing() {
        assert!(names("package.json", "{not json").is_empty());
        assert!(names("Cargo.toml", "[[[").is_empty());
    }
}
