//! `logs APP [-n LINES] [-f]`: the last lines of an app's log (its
//! processes, the router's request lines, BytePort's own events), newest
//! deploys last, then — with `-f` — every new line as it is written, until
//! the client goes away.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use gitd::CommandOutput;
use tokio::sync::broadcast::error::RecvError;

use super::say;
use crate::platform::Platform;
use crate::store::StoreError;

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

/// The last `n` lines of `path` (reads from the end, not the whole file).
fn tail_lines(path: &Path, n: usize) -> std::io::Result<Vec<String>> {
    let mut file = std::fs::File::open(path)?;
    let len = file.seek(SeekFrom::End(0))?;
    let mut start = len;
    let mut buf: Vec<u8> = Vec::new();
    const CHUNK: u64 = 64 * 1024;
    while start > 0 && buf.iter().filter(|b| **b == b'\n').count() <= n {
        let step = CHUNK.min(start);
        start -= step;
        file.seek(SeekFrom::Start(start))?;
        let mut chunk = vec![0; step as usize];
        file.read_exact(&mut chunk)?;
        chunk.extend_from_slice(&buf);
        buf = chunk;
    }
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().collect();
    // The first line may be cut when we did not read from the start.
    let skip_first = usize::from(start > 0);
    let usable = &all[skip_first.min(all.len())..];
    Ok(usable[usable.len().saturating_sub(n)..]
        .iter()
        .map(|l| l.to_string())
        .collect())
}

/// Prints the tail of `app`'s logs and, with `follow`, new lines until the
/// caller's future is dropped (the client left).
pub async fn show(
    platform: &Platform,
    app: &str,
    opts: &LogsOptions,
    out: &dyn CommandOutput,
) -> Result<(), StoreError> {
    // Subscribe before reading the files: a line written in between is
    // printed twice at worst, never lost.
    let mut live = opts.follow.then(|| platform.logs().subscribe(app));
    if let Some(lines) = platform.logs().recent(app, opts.lines) {
        for line in &lines {
            say(out, line).await;
        }
        return follow(live.as_mut(), out).await;
    }
    platform.logs().flush();
    let segments = platform.store.log_segments(app).await?;
    // Newest segments first; take lines until we have enough, then print
    // them oldest first.
    let mut chunks: Vec<Vec<String>> = Vec::new();
    let mut have = 0;
    for s in &segments {
        if have >= opts.lines {
            break;
        }
        match tail_lines(Path::new(&s.path), opts.lines - have) {
            Ok(lines) => {
                have += lines.len();
                chunks.push(lines);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(app, path = %s.path, error = %e, "cannot read a log file"),
        }
    }
    if chunks.is_empty() && live.is_none() {
        say(out, &format!("{app} has no logs yet")).await;
    }
    for line in chunks.iter().rev().flatten() {
        say(out, line).await;
    }
    follow(live.as_mut(), out).await
}

/// With `-f`: every new line until the caller's future is dropped.
async fn follow(
    live: Option<&mut tokio::sync::broadcast::Receiver<String>>,
    out: &dyn CommandOutput,
) -> Result<(), StoreError> {
    let Some(live) = live else {
        return Ok(());
    };
    loop {
        match live.recv().await {
            Ok(line) => say(out, &line).await,
            Err(RecvError::Lagged(n)) => {
                say(
                    out,
                    &format!("byteport: {n} log lines skipped (this client reads too slowly)"),
                )
                .await
            }
            Err(RecvError::Closed) => return Ok(()),
        }
    }
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

    #[test]
    fn tail_reads_only_the_end_and_keeps_whole_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.log");
        let text: String = (0..50_000).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&path, &text).unwrap();
        let t = tail_lines(&path, 3).unwrap();
        assert_eq!(t, ["line 49997", "line 49998", "line 49999"]);
        let t = tail_lines(&path, 20_000).unwrap();
        assert_eq!(t.len(), 20_000);
        assert_eq!(t[0], "line 30000");
        std::fs::write(&path, "only\n").unwrap();
        assert_eq!(tail_lines(&path, 10).unwrap(), ["only"]);
        std::fs::write(&path, "").unwrap();
        assert!(tail_lines(&path, 10).unwrap().is_empty());
        // No trailing newline, invalid UTF-8: still lines, no panic.
        std::fs::write(&path, b"a\nb\xff\xfe").unwrap();
        assert_eq!(tail_lines(&path, 1).unwrap().len(), 1);
    }
}
