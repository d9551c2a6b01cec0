//! `logs APP [-n LINES] [-f]`: the last lines of an app's log (its
//! processes, the router's request lines, BytePort's own events), newest
//! deploys last, then — with `-f` — every new line as it is written, until
//! the client goes away.

use gitd::CommandOutput;
use platform::events::{Event, Item};

use super::say;
use platform::store::StoreError;
use platform::Platform;

/// Lines shown before following, unless `-n` says otherwise.
const DEFAULT_LINES: usize = 100;
/// Most lines `-n` may ask for.
const MAX_LINES: usize = 100_000;

/// Parsed `logs` arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogsOptions {
    /// The app.
    pub app: String,
    /// How many past lines to print.
    pub lines: usize,
    /// Keep printing new lines.
    pub follow: bool,
}

impl LogsOptions {
    /// Parses `APP [-n LINES] [-f]` in any order (`--num`, `--tail`,
    /// `--follow` too).
    pub fn parse(words: &[&str]) -> Result<LogsOptions, String> {
        let mut app = None;
        let mut lines = DEFAULT_LINES;
        let mut follow = false;
        let mut words = words.iter();
        while let Some(w) = words.next() {
            match *w {
                "-f" | "--follow" | "-t" | "--tail" => follow = true,
                "-n" | "--num" => {
                    let n = words
                        .next()
                        .ok_or("-n needs a number of lines, e.g. logs APP -n 500")?;
                    lines = n
                        .parse::<usize>()
                        .ok()
                        .filter(|n| *n <= MAX_LINES)
                        .ok_or_else(|| {
                            format!(
                                "-n wants a number of lines up to {MAX_LINES}, not `{}`",
                                n.escape_default()
                            )
                        })?;
                }
                flag if flag.starts_with('-') => {
                    return Err(format!(
                        "unknown option `{}` for logs (try: logs APP -n 200 -f)",
                        flag.escape_default()
                    ))
                }
                name if app.is_none() => app = Some(name.to_string()),
                extra => {
                    return Err(format!(
                        "logs takes one app, not also `{}`",
                        extra.escape_default()
                    ))
                }
            }
        }
        let app = app.ok_or("logs needs an app: logs APP [-n LINES] [-f]")?;
        Ok(LogsOptions { app, lines, follow })
    }
}

/// Prints the tail of `app`'s runtime log (its processes, the router's
/// request lines, BytePort's events) and, with `follow`, new lines until
/// the caller's future is dropped (the client left). The tail and the
/// follow come from one snapshot of the app's stream: no line is lost or
/// printed twice between them.
pub async fn show(
    platform: &Platform,
    app: &str,
    opts: &LogsOptions,
    out: &dyn CommandOutput,
) -> Result<(), StoreError> {
    let keep = |e: &Event| e.kind.is_runtime_log();
    let events = platform.events.clone();
    let (app_s, n) = (app.to_string(), opts.lines);
    // Reading older lines may touch the journal files: off the async workers.
    let (tail, mut live) = tokio::task::spawn_blocking(move || events.tail(&app_s, n, keep))
        .await
        .map_err(|e| StoreError::Invalid(format!("reading the log failed: {e}")))?;
    if tail.is_empty() && !opts.follow {
        say(out, &format!("{app} has no logs yet")).await;
    }
    for e in &tail {
        say(out, &e.to_line()).await;
    }
    if !opts.follow {
        return Ok(());
    }
    while let Some(item) = live.next().await {
        match item {
            Item::Event(e) if keep(&e) => say(out, &e.to_line()).await,
            Item::Event(_) => {}
            Item::Skipped(n) => {
                say(
                    out,
                    &format!("byteport: … {n} lines skipped (this client reads too slowly)"),
                )
                .await
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse_in_any_order() {
        let o = LogsOptions::parse(&["-f", "hello"]).unwrap();
        assert_eq!((o.app.as_str(), o.lines, o.follow), ("hello", 100, true));
        let o = LogsOptions::parse(&["hello", "-n", "5"]).unwrap();
        assert_eq!((o.lines, o.follow), (5, false));
        assert!(LogsOptions::parse(&[])
            .unwrap_err()
            .contains("needs an app"));
        assert!(LogsOptions::parse(&["a", "-n"])
            .unwrap_err()
            .contains("needs a number"));
        assert!(LogsOptions::parse(&["a", "-n", "-3"])
            .unwrap_err()
            .contains("not `-3`"));
        assert!(LogsOptions::parse(&["a", "-n", "999999999"]).is_err());
        assert!(LogsOptions::parse(&["a", "--rm"])
            .unwrap_err()
            .contains("unknown option"));
        assert!(LogsOptions::parse(&["a", "b"])
            .unwrap_err()
            .contains("one app"));
    }
}
