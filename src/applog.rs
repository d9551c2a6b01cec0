//! App log streams: every line an app's processes print (and the router's
//! request lines) goes to a per-deploy file under `$BYTEPORT_HOME/logs`
//! and to live followers (`logs -f`, the dashboard).

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

/// Per-app log files and live subscribers.
#[derive(Clone)]
pub struct AppLogs {
    dir: PathBuf,
    channels: Arc<Mutex<HashMap<String, broadcast::Sender<String>>>>,
}

impl AppLogs {
    /// Logs under `dir` (`$BYTEPORT_HOME/logs`).
    pub fn new(dir: PathBuf) -> AppLogs {
        AppLogs {
            dir,
            channels: Arc::default(),
        }
    }

    fn channel(&self, app: &str) -> broadcast::Sender<String> {
        let mut map = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(app.to_string())
            .or_insert_with(|| broadcast::channel(1024).0)
            .clone()
    }

    /// Follows an app's new lines.
    pub fn subscribe(&self, app: &str) -> broadcast::Receiver<String> {
        self.channel(app).subscribe()
    }

    /// The file holding `app`'s lines for `deploy`.
    pub fn file(&self, app: &str, deploy: i64) -> PathBuf {
        self.dir.join(app).join(format!("{deploy}.log"))
    }

    /// Appends one line for (`app`, `deploy`).
    pub fn append(&self, app: &str, deploy: i64, line: &str) {
        let path = self.file(app, deploy);
        if let Some(parent) = path.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
        {
            let _ = writeln!(f, "{line}");
        }
        let _ = self.channel(app).send(line.to_string());
    }

    /// A sink for the runtime: (process, stream, text) lines of one deploy.
    pub fn sink(&self, app: &str, deploy: i64) -> runtime::drivers::qemu::AppLog {
        let logs = self.clone();
        let app = app.to_string();
        Arc::new(move |process: &str, stream: &str, text: &str| {
            let ts = crate::commands::fmt_time(crate::store::now_ms());
            let tag = if stream == "err" { "!" } else { " " };
            logs.append(&app, deploy, &format!("{ts} {process}{tag} {text}"));
        })
    }
}
