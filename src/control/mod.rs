//! The local control socket: how `byteport restart|rollback|stop|start|
//! logs|ps` on the CLI reach the running `byteport up`. The socket lives at
//! `$BYTEPORT_HOME/byteport.sock` (mode 0600; only its owner and root may
//! connect, checked again with `SO_PEERCRED`) and runs the same admin
//! command lines as SSH, as the operator (every app).
//!
//! Wire format, one JSON object per line: the client sends
//! `{"line":"restart hello"}`; the server answers with any number of
//! `{"out":"..."}` / `{"err":"..."}` and ends with `{"exit":N}`. A client
//! that disconnects cancels its command (that is how Ctrl-C ends
//! `logs -f`).
//!
//! A client on a terminal (`byteport run APP -- bash`) adds
//! `"tty":{"term":"xterm","cols":80,"rows":24}` to its request and then
//! sends its keystrokes and window changes ([`terminal`]); the terminal's
//! bytes come back as `{"raw":"<base64>"}`.

mod terminal;

pub use terminal::{call_on_terminal, stdin_is_terminal as terminal_is_stdin};

use std::path::{Path, PathBuf};
use std::sync::Arc;

use gitd::{BoxFuture, CommandOutput, Stream};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::admin::Caller;
use platform::Platform;

/// Longest request line accepted.
const MAX_REQUEST: usize = 64 * 1024;

/// The control socket of the daemon for `home`.
pub fn socket_path(home: &Path) -> PathBuf {
    home.join("byteport.sock")
}

#[derive(Debug, Serialize, Deserialize)]
struct Request {
    line: String,
    /// The client's terminal, if it runs on one and wants it used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tty: Option<terminal::TtyRequest>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Reply {
    Out(String),
    Err(String),
    /// A terminal's bytes, base64.
    Raw(String),
    Exit(u32),
}

/// Errors starting the control socket.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Another `byteport up` already serves this home.
    #[error("another `byteport up` is already running for this data directory (its control socket {0} answers)")]
    InUse(PathBuf),
    /// The socket cannot be created.
    #[error("cannot create the control socket {path}")]
    Bind {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Listens on the control socket; commands run on `platform`.
pub async fn serve(
    home: &Path,
    platform: Arc<Platform>,
) -> Result<tokio::task::JoinHandle<()>, ControlError> {
    let path = socket_path(home);
    if UnixStream::connect(&path).await.is_ok() {
        return Err(ControlError::InUse(path));
    }
    // A socket file left by a daemon that died.
    let _ = std::fs::remove_file(&path);
    let bind_err = |source| ControlError::Bind {
        path: path.clone(),
        source,
    };
    let listener = {
        // The socket is created with the umask's mode; make it 0600 from the start.
        // SAFETY: umask only changes this process's file-creation mask.
        let old = unsafe { libc::umask(0o177) };
        let l = UnixListener::bind(&path);
        // SAFETY: as above, restoring the previous mask.
        unsafe { libc::umask(old) };
        l.map_err(bind_err)?
    };
    Ok(tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let platform = platform.clone();
            tokio::spawn(async move {
                if let Err(e) = handle(stream, &platform).await {
                    tracing::debug!(error = %e, "control: connection ended with an error");
                }
            });
        }
    }))
}

/// Only the daemon's own user and root may drive it.
fn peer_allowed(stream: &UnixStream) -> bool {
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    stream
        .peer_cred()
        .map(|c| c.uid() == me || c.uid() == 0)
        .unwrap_or(false)
}

struct SocketOutput {
    writer: tokio::sync::Mutex<tokio::net::unix::OwnedWriteHalf>,
}

impl SocketOutput {
    async fn send(&self, reply: &Reply) {
        let mut line = serde_json::to_vec(reply).expect("replies serialize");
        line.push(b'\n');
        let _ = self.writer.lock().await.write_all(&line).await;
    }
}

impl CommandOutput for SocketOutput {
    fn write<'a>(&'a self, stream: Stream, text: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let reply = match stream {
                Stream::Stdout => Reply::Out(text.to_string()),
                Stream::Stderr => Reply::Err(text.to_string()),
            };
            self.send(&reply).await
        })
    }

    fn write_bytes<'a>(&'a self, stream: Stream, bytes: &'a [u8]) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let reply = match stream {
                Stream::Stdout => Reply::Raw(terminal::encode(bytes)),
                // Nothing writes raw bytes to stderr; keep them readable.
                Stream::Stderr => Reply::Err(String::from_utf8_lossy(bytes).into_owned()),
            };
            self.send(&reply).await
        })
    }
}

async fn handle(stream: UnixStream, platform: &Platform) -> std::io::Result<()> {
    let allowed = peer_allowed(&stream);
    let (read, write) = stream.into_split();
    let out = SocketOutput {
        writer: tokio::sync::Mutex::new(write),
    };
    if !allowed {
        out.send(&Reply::Err(
            "byteport: only the user running `byteport up` (or root) may use its control socket\n"
                .into(),
        ))
        .await;
        out.send(&Reply::Exit(1)).await;
        return Ok(());
    }
    let mut read = BufReader::new(read);
    let mut line = Vec::new();
    let n = (&mut read)
        .take(MAX_REQUEST as u64 + 1)
        .read_until(b'\n', &mut line)
        .await?;
    let request = if n > MAX_REQUEST {
        Err(format!("request longer than {MAX_REQUEST} bytes"))
    } else {
        serde_json::from_slice::<Request>(&line).map_err(|e| format!("malformed request: {e}"))
    };
    let code = match request {
        Err(e) => {
            out.send(&Reply::Err(format!("byteport: {e}\n"))).await;
            2
        }
        Ok(Request {
            line,
            tty: Some(tty),
        }) => {
            let (session, pump) = terminal::session(tty, read);
            let run =
                crate::admin::run_interactive(platform, Caller::Operator, &line, session, &out);
            tokio::select! {
                code = run => code,
                // The client left (or broke the protocol): cancel.
                () = pump => return Ok(()),
            }
        }
        Ok(req) => {
            let run = crate::admin::run(platform, Caller::Operator, &req.line, &out);
            // Anything (or EOF) from the client after its request means it left.
            let mut rest = [0u8; 1];
            tokio::select! {
                code = run => code,
                _ = read.read(&mut rest) => return Ok(()),
            }
        }
    };
    out.send(&Reply::Exit(code)).await;
    Ok(())
}

/// Errors reaching the daemon from the CLI.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Nothing listens on the socket.
    #[error("`byteport up` is not running for {home} (no answer on {socket}); start it with `byteport up`")]
    NotRunning {
        /// `$BYTEPORT_HOME`.
        home: PathBuf,
        /// The socket path.
        socket: PathBuf,
    },
    /// The daemon closed the connection before the command ended.
    #[error(
        "`byteport up` closed the control connection before the command finished (did it stop?)"
    )]
    Interrupted,
    /// I/O on the socket.
    #[error("control socket: {0}")]
    Io(#[from] std::io::Error),
    /// The daemon sent something this CLI does not understand.
    #[error("unexpected reply from `byteport up` (is it another version?): {0}")]
    Protocol(String),
}

/// Connects to the daemon for `home` and sends `request`.
async fn open(
    home: &Path,
    request: &Request,
) -> Result<
    (
        tokio::net::unix::OwnedReadHalf,
        tokio::net::unix::OwnedWriteHalf,
    ),
    CallError,
> {
    let socket = socket_path(home);
    let stream = UnixStream::connect(&socket)
        .await
        .map_err(|_| CallError::NotRunning {
            home: home.to_path_buf(),
            socket: socket.clone(),
        })?;
    let (read, mut write) = stream.into_split();
    let mut line = serde_json::to_vec(request).expect("requests serialize");
    line.push(b'\n');
    write.write_all(&line).await?;
    Ok((read, write))
}

/// Runs `line` on the daemon for `home`, printing its output as it comes;
/// returns the command's exit status.
pub async fn call(home: &Path, line: &str) -> Result<u32, CallError> {
    let (read, _write) = open(
        home,
        &Request {
            line: line.to_string(),
            tty: None,
        },
    )
    .await?;
    let mut lines = BufReader::new(read).lines();
    let mut stdout = tokio::io::stdout();
    let mut stderr = tokio::io::stderr();
    while let Some(line) = lines.next_line().await? {
        match serde_json::from_str::<Reply>(&line) {
            Ok(Reply::Out(text)) => {
                stdout.write_all(text.as_bytes()).await?;
                stdout.flush().await?;
            }
            Ok(Reply::Err(text)) => {
                stderr.write_all(text.as_bytes()).await?;
                stderr.flush().await?;
            }
            Ok(Reply::Raw(bytes)) => {
                let bytes = terminal::decode(&bytes)
                    .ok_or_else(|| CallError::Protocol("a raw reply that is not base64".into()))?;
                stdout.write_all(&bytes).await?;
                stdout.flush().await?;
            }
            Ok(Reply::Exit(code)) => return Ok(code),
            Err(_) => return Err(CallError::Protocol(line.chars().take(200).collect())),
        }
    }
    Err(CallError::Interrupted)
}
