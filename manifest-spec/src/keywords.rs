//! Keywords per context, their usage lines, and the explanation of a line the
//! grammar could not match (unknown keyword with a did-you-mean hint, a known
//! keyword in the wrong place, or a known keyword with the wrong shape).

/// Where a line stands: the top level or inside one kind of block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Context {
    Top,
    Build,
    Env,
    Vm,
    Web,
    Worker,
    Release,
    Portfolio,
}

impl Context {
    fn keywords(self) -> &'static [&'static str] {
        match self {
            Context::Top => &[
                "app",
                "from",
                "packages",
                "build",
                "env",
                "secret",
                "vm",
                "web",
                "worker",
                "domains",
                "portfolio",
                "user",
                "volume",
                "database",
                "release",
            ],
            Context::Build => &["copy", "workdir", "run", "network"],
            Context::Env => &[],
            Context::Vm => &["cpus", "memory", "disk", "network"],
            Context::Web => &["run", "port", "health", "instances"],
            Context::Worker => &["run"],
            Context::Release => &["run"],
            Context::Portfolio => &["title", "tags", "screenshot", "description", "publish"],
        }
    }

    fn place(self) -> &'static str {
        match self {
            Context::Top => "at the top level",
            Context::Build => "in the `build` block",
            Context::Env => "in the `env` block",
            Context::Vm => "in the `vm` block",
            Context::Web => "in the `web` block",
            Context::Worker => "in a `worker` block",
            Context::Release => "in the `release` block",
            Context::Portfolio => "in the `portfolio` block",
        }
    }
}

const ALL: [Context; 8] = [
    Context::Top,
    Context::Build,
    Context::Env,
    Context::Vm,
    Context::Web,
    Context::Worker,
    Context::Release,
    Context::Portfolio,
];

/// How a directive is written.
fn usage(keyword: &str) -> Option<&'static str> {
    Some(match keyword {
        "app" => "app NAME",
        "from" => "from debian:SUITE | from busybox | from scratch",
        "packages" => "packages NAME...",
        "build" | "env" | "vm" | "web" | "portfolio" | "release" => {
            "NAME {   (entries on the following lines, then `}` on a line of its own)"
        }
        "worker" => {
            "worker [NAME] {   (entries on the following lines, then `}` on a line of its own)"
        }
        "secret" => "secret NAME [build]",
        "domains" => "domains HOST...",
        "copy" => "copy SOURCE /DEST",
        "workdir" => "workdir /PATH",
        "run" => "run COMMAND",
        "cpus" => "cpus N",
        "memory" => "memory SIZE   (e.g. 256M)",
        "disk" => "disk SIZE   (e.g. 1G)",
        "port" => "port N",
        "health" => "health [GET|HEAD] /PATH [every 5s] [timeout 2s]",
        "title" => "title \"TEXT\"",
        "tags" => "tags WORD...",
        "screenshot" => "screenshot /PATH [wait 2s]",
        "description" => "description auto | description off | description \"TEXT\"",
        "publish" => "publish review | auto | off",
        "network" => "network on | off",
        "user" => "user app | user root",
        "volume" => "volume NAME /PATH SIZE   (e.g. volume data /app/data 1G)",
        "database" => "database postgres",
        "instances" => "instances N",
        _ => return None,
    })
}

/// A diagnostic for a line the grammar kept as `bad`: message, hint and the
/// byte range (relative to the line's text) to underline.
pub(crate) struct Explained {
    pub message: String,
    pub hint: Option<String>,
    pub start: usize,
    pub end: usize,
    /// The keyword of `ctx` the line most likely meant, if any.
    pub meant: Option<&'static str>,
}

/// Explains `text`, a line (from its first non-blank character) that matched
/// nothing in context `ctx`. `block_header` is set for `NAME ... {` lines.
pub(crate) fn explain(ctx: Context, text: &str, block_header: bool) -> Explained {
    if let Some(at) = unterminated_quote(text) {
        return Explained {
            message: "unterminated string".into(),
            hint: Some("close it with `\"` on the same line; strings cannot span lines".into()),
            start: at,
            end: text.len(),
            meant: None,
        };
    }
    let token_end = text
        .find(|c: char| c.is_whitespace() || matches!(c, '{' | '}' | '"' | '='))
        .unwrap_or(text.len());
    let token = &text[..token_end];
    let first = text.chars().next().map_or(0, char::len_utf8);
    let at = |message: String, hint: Option<String>, end: usize| Explained {
        message,
        hint,
        start: 0,
        end,
        meant: None,
    };
    if token.is_empty() {
        let c = &text[..first];
        if c == "}" && ctx == Context::Top {
            return at(
                "unmatched `}`".into(),
                Some("no block is open here".into()),
                1,
            );
        }
        return at(
            format!("expected a directive {}, found `{c}`", ctx.place()),
            Some(expected_list(ctx)),
            first,
        );
    }
    if ctx == Context::Env {
        return explain_env(text, token_end);
    }
    let is_block = matches!(
        token,
        "build" | "env" | "vm" | "web" | "portfolio" | "worker" | "release"
    );
    if block_header && ctx != Context::Top {
        let message = if is_block {
            format!("blocks do not nest: `{token}` must be at the top level")
        } else if ctx.keywords().contains(&token) {
            format!("`{token}` is not a block")
        } else {
            format!("unknown block `{token}` {}", ctx.place())
        };
        let hint = match usage(token) {
            Some(u) if !is_block && ctx.keywords().contains(&token) => {
                format!("write it on one line: `{u}`")
            }
            _ => "blocks do not nest; close this block with `}` first".into(),
        };
        return at(message, Some(hint), token_end);
    }
    if ctx.keywords().contains(&token) {
        let mut hint = format!("write `{}`", usage(token).unwrap_or(token));
        if is_block && (block_header || text.contains('{')) {
            hint = format!(
                "a block header is `{token} {{` alone on its line, with entries on the next lines and `}}` on a line of its own"
            );
            if token == "worker" {
                hint = "a worker block header is `worker NAME {` alone on its line, with `run ...` on the next line and `}` on a line of its own".into();
            }
        } else if !block_header && is_block {
            hint = format!("`{token}` opens a block: write `{token} {{` at the end of the line");
        } else if text.split_whitespace().count() > 2
            && matches!(
                token,
                "app"
                    | "from"
                    | "title"
                    | "description"
                    | "cpus"
                    | "memory"
                    | "disk"
                    | "port"
                    | "workdir"
                    | "publish"
                    | "user"
                    | "database"
                    | "instances"
            )
        {
            hint = format!("`{token}` takes one value; quote text that contains spaces");
        }
        return at(
            format!("malformed `{token}` directive"),
            Some(hint),
            token_end,
        );
    }
    for other in ALL {
        if other != ctx && other.keywords().contains(&token) {
            let home = ALL
                .iter()
                .filter(|c| c.keywords().contains(&token))
                .map(|c| c.place())
                .collect::<Vec<_>>()
                .join(" or ");
            return at(
                format!("`{token}` is not allowed {}", ctx.place()),
                Some(format!("`{token}` belongs {home}")),
                token_end,
            );
        }
    }
    let kind = if block_header { "block" } else { "directive" };
    let meant = closest(ctx, token);
    at(
        format!("unknown {kind} `{token}` {}", ctx.place()),
        Some(meant.map_or_else(|| expected_list(ctx), |k| format!("did you mean `{k}`?"))),
        token_end,
    )
    .with_meant(meant)
}

fn explain_env(text: &str, token_end: usize) -> Explained {
    let name = &text[..token_end];
    let rest = text[token_end..].trim_start();
    let (message, hint) = if let Err(p) = crate::values::env_name(name) {
        (p.message, p.hint)
    } else if !rest.starts_with('=') {
        (
            format!("expected `NAME = value` in the `env` block, found `{name}`"),
            Some("write e.g. `GREETING = \"hello\"`".to_string()),
        )
    } else if rest[1..].trim().is_empty() || rest[1..].trim_start().starts_with('#') {
        (
            format!("`{name}` has no value"),
            Some("write `NAME = \"\"` for an empty value".to_string()),
        )
    } else {
        (
            format!("the value of `{name}` must be one word or a quoted string"),
            Some("quote values that contain spaces: `NAME = \"two words\"`".to_string()),
        )
    };
    Explained {
        message,
        hint,
        start: 0,
        end: token_end.max(1),
        meant: None,
    }
}

impl Explained {
    fn with_meant(self, meant: Option<&'static str>) -> Self {
        Explained { meant, ..self }
    }
}

/// The keyword of `ctx` closest to a misspelled one, if close enough.
fn closest(ctx: Context, token: &str) -> Option<&'static str> {
    let lower = token.to_ascii_lowercase();
    let best = ctx
        .keywords()
        .iter()
        .map(|k| (strsim::damerau_levenshtein(&lower, k), *k))
        .min()?;
    let limit = if best.1.len() <= 4 { 1 } else { 2 };
    (best.0 <= limit).then_some(best.1)
}

fn expected_list(ctx: Context) -> String {
    if ctx == Context::Env {
        return "each line is `NAME = value`".into();
    }
    let list: Vec<String> = ctx.keywords().iter().map(|k| format!("`{k}`")).collect();
    format!("expected one of {}", list.join(", "))
}

/// Byte offset of a `"` that opens a string never closed on this line.
fn unterminated_quote(text: &str) -> Option<usize> {
    let mut open = None;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match (open, c) {
            (None, '#') if i == 0 || text[..i].ends_with([' ', '\t']) => return None,
            (None, '"') => open = Some(i),
            (Some(_), '\\') if !escaped => {
                escaped = true;
                continue;
            }
            (Some(_), '"') if !escaped => open = None,
            _ => {}
        }
        escaped = false;
    }
    open
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_miss_keywords_get_a_suggestion() {
        let e = explain(Context::Vm, "memroy 256M", false);
        assert_eq!(e.message, "unknown directive `memroy` in the `vm` block");
        assert_eq!(e.hint.as_deref(), Some("did you mean `memory`?"));
        assert_eq!((e.start, e.end), (0, 6));
        let e = explain(Context::Top, "App hello", false);
        assert_eq!(e.hint.as_deref(), Some("did you mean `app`?"));
        let e = explain(Context::Top, "zzzzzz", false);
        assert!(e.hint.unwrap().starts_with("expected one of `app`"));
    }

    #[test]
    fn keywords_in_the_wrong_place_say_where_they_belong() {
        let e = explain(Context::Top, "port 8080", false);
        assert_eq!(e.message, "`port` is not allowed at the top level");
        assert_eq!(e.hint.as_deref(), Some("`port` belongs in the `web` block"));
        let e = explain(Context::Vm, "run x", false);
        assert!(e
            .hint
            .unwrap()
            .contains("in the `build` block or in the `web` block or in a `worker` block"));
    }

    #[test]
    fn malformed_known_directives_show_usage() {
        let e = explain(Context::Web, "health", false);
        assert_eq!(e.message, "malformed `health` directive");
        assert!(e.hint.unwrap().contains("[every 5s]"));
        let e = explain(Context::Top, "vm { cpus 2 }", false);
        assert!(e.hint.unwrap().contains("alone on its line"));
        let e = explain(Context::Top, "title \"unterminated", false);
        assert_eq!(e.message, "unterminated string");
        assert_eq!(e.start, 6);
    }

    #[test]
    fn env_lines_are_explained() {
        assert!(explain(Context::Env, "GREETING hello", false)
            .message
            .contains("NAME = value"));
        assert!(explain(Context::Env, "A =", false)
            .message
            .contains("no value"));
        assert!(explain(Context::Env, "A = two words", false)
            .message
            .contains("quoted"));
    }
}
