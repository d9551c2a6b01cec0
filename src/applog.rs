//! App log streams: every line an app's processes print (and the router's
//! request lines, and BytePort's own events) goes to a per-deploy file
//! under `$BYTEPORT_HOME/logs` and to live followers (`logs -f`, the
//! dashboard).
//!
//! The router writes a line per request, so the hot path is a copy into a
//! buffer kept per (app, deploy): files stay open, and the buffers reach
//! the disk every [`FLUSH_EVERY`] (and before `logs` reads them), as
//! nginx's `access_log ... buffer= flush=` does. Followers get each line at
//! once.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::broadcast;

/// How many open log files are kept; older ones are closed (and reopened
/// if they are written again).
const MAX_OPEN_FILES: usize = 256;

/// Longest a written line waits in memory before it is on disk.
pub const FLUSH_EVERY: Duration = Duration::from_millis(500);

/// Lines kept in memory per app, so `logs` (and the dashboard) show the
/// recent past without reading files.
pub const RECENT_LINES: usize = 1000;

struct Inner {
    channels: HashMap<String, broadcast::Sender<String>>,
    recent: HashMap<String, std::collections::VecDeque<String>>,
    /// Open log files by app, then deploy.
    files: HashMap<String, HashMap<i64, BufWriter<File>>>,
    open_files: usize,
    last_flush: Instant,
}

impl Default for Inner {
    fn default() -> Self {
        Inner {
            channels: HashMap::new(),
            recent: HashMap::new(),
            files: HashMap::new(),
            open_files: 0,
            last_flush: Instant::now(),
        }
    }
}

impl Inner {
    fn flush_all(&mut self) {
        for (app, files) in &mut self.files {
            for (deploy, f) in files.iter_mut() {
                if let Err(e) = f.flush() {
                    tracing::warn!(app, deploy, error = %e, "cannot write the app log");
                }
            }
        }
        self.last_flush = Instant::now();
    }

    fn close_all(&mut self) {
        self.flush_all();
        self.files.clear();
        self.open_files = 0;
    }
}

/// Per-app log files and live subscribers.
#[derive(Clone)]
pub struct AppLogs {
    dir: PathBuf,
    inner: Arc<Mutex<Inner>>,
}

impl AppLogs {
    /// Logs under `dir` (`$BYTEPORT_HOME/logs`).
    pub fn new(dir: PathBuf) -> AppLogs {
        AppLogs {
            dir,
            inner: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Follows an app's new lines.
    pub fn subscribe(&self, app: &str) -> broadcast::Receiver<String> {
        self.lock()
            .channels
            .entry(app.to_string())
            .or_insert_with(|| broadcast::channel(1024).0)
            .subscribe()
    }

    /// The file holding `app`'s lines for `deploy`.
    pub fn file(&self, app: &str, deploy: i64) -> PathBuf {
        self.dir.join(app).join(format!("{deploy}.log"))
    }

    fn open(&self, app: &str, deploy: i64) -> std::io::Result<File> {
        let path = self.file(app, deploy);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
    }

    /// Appends one line for (`app`, `deploy`) and hands it to followers.
    pub fn append(&self, app: &str, deploy: i64, line: &str) {
        let mut inner = self.lock();
        let open = inner
            .files
            .get(app)
            .is_some_and(|files| files.contains_key(&deploy));
        if !open {
            if inner.open_files >= MAX_OPEN_FILES {
                inner.close_all();
            }
            match self.open(app, deploy) {
                Ok(f) => {
                    inner
                        .files
                        .entry(app.to_string())
                        .or_default()
                        .insert(deploy, BufWriter::with_capacity(16 * 1024, f));
                    inner.open_files += 1;
                }
                Err(e) => tracing::warn!(app, deploy, error = %e, "cannot open the app log"),
            }
        }
        let failed = match inner.files.get_mut(app).and_then(|f| f.get_mut(&deploy)) {
            Some(f) => f
                .write_all(line.as_bytes())
                .and_then(|()| f.write_all(b"\n"))
                .is_err(),
            None => false,
        };
        if failed {
            tracing::warn!(app, deploy, "cannot write the app log");
            if let Some(files) = inner.files.get_mut(app) {
                files.remove(&deploy);
                inner.open_files -= 1;
            }
        }
        if inner.last_flush.elapsed() >= FLUSH_EVERY {
            inner.flush_all();
        }
        let recent = match inner.recent.get_mut(app) {
            Some(r) => r,
            None => inner.recent.entry(app.to_string()).or_default(),
        };
        if recent.len() >= RECENT_LINES {
            recent.pop_front();
        }
        recent.push_back(line.to_string());
        if let Some(tx) = inner.channels.get(app) {
            if tx.receiver_count() > 0 {
                let _ = tx.send(line.to_string());
            }
        }
    }

    /// The last `n` lines written for `app` since this process started, if
    /// memory holds that many (else `None`: read the files).
    pub fn recent(&self, app: &str, n: usize) -> Option<Vec<String>> {
        let inner = self.lock();
        let r = inner.recent.get(app)?;
        (r.len() >= n).then(|| r.iter().skip(r.len() - n).cloned().collect())
    }

    /// Writes every buffered line to its file (before reading the files,
    /// and every [`FLUSH_EVERY`] from `byteport up`).
    pub fn flush(&self) {
        self.lock().flush_all();
    }

    /// Closes the files of `app` and forgets its recent lines (destroyed).
    pub fn close(&self, app: &str) {
        let mut inner = self.lock();
        inner.recent.remove(app);
        if let Some(mut files) = inner.files.remove(app) {
            inner.open_files -= files.len();
            for f in files.values_mut() {
                let _ = f.flush();
            }
        }
    }

    /// A sink for the runtime: (process, stream, text) lines of one deploy.
    pub fn sink(&self, app: &str, deploy: i64) -> runtime::drivers::AppLog {
        let logs = self.clone();
        let app = app.to_string();
        Arc::new(move |process: &str, stream: &str, text: &str| {
            let ts = crate::commands::fmt_time(crate::store::now_ms());
            let tag = if stream == "err" { "!" } else { " " };
            logs.append(&app, deploy, &format!("{ts} {process}{tag} {text}"));
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_reach_the_file_and_followers() {
        let dir = tempfile::tempdir().unwrap();
        let logs = AppLogs::new(dir.path().to_path_buf());
        let mut rx = logs.subscribe("a");
        logs.append("a", 1, "one");
        logs.append("a", 1, "two");
        logs.append("a", 2, "three");
        logs.append("b", 1, "other app");
        logs.flush();
        assert_eq!(
            std::fs::read_to_string(logs.file("a", 1)).unwrap(),
            "one\ntwo\n"
        );
        assert_eq!(
            std::fs::read_to_string(logs.file("a", 2)).unwrap(),
            "three\n"
        );
        let got: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(got, ["one", "two", "three"]);
        assert_eq!(logs.recent("a", 2).unwrap(), ["two", "three"]);
        assert_eq!(logs.recent("a", 4), None, "memory holds 3 lines only");
        for i in 0..RECENT_LINES + 5 {
            logs.append("c", 1, &i.to_string());
        }
        let last = logs.recent("c", RECENT_LINES).unwrap();
        assert_eq!(last.first().map(String::as_str), Some("5"));
    }

    #[test]
    fn a_removed_log_directory_is_recreated() {
        let dir = tempfile::tempdir().unwrap();
        let logs = AppLogs::new(dir.path().join("logs"));
        logs.append("a", 1, "before");
        logs.close("a");
        std::fs::remove_dir_all(dir.path().join("logs")).unwrap();
        logs.append("a", 1, "after");
        logs.flush();
        assert_eq!(
            std::fs::read_to_string(logs.file("a", 1)).unwrap(),
            "after\n"
        );
    }
}
