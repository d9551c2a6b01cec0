//! `byteport run APP -- bash` on the operator's terminal, through the
//! control socket: the CLI puts its terminal in raw mode and sends what is
//! typed and each window change; the daemon hands them to the admin command
//! as SSH would (`gitd::Interactive`), and the terminal's bytes come back
//! untranslated.
//!
//! After a request with `"tty"`, the client sends one JSON value per line:
//! `{"in":"<base64>"}` (keystrokes), `{"size":[cols,rows]}` (a window
//! change) or `"eof"` (its input ended). Anything else ends the session.

use std::io::IsTerminal;
use std::path::Path;

use base64::Engine;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::OwnedReadHalf;
use tokio::sync::{mpsc, watch};

use super::{CallError, Reply, Request};

/// Longest input line from a client (a base64 packet of keystrokes).
const MAX_INPUT_LINE: usize = 64 * 1024;

/// Keystroke packets queued for the command: a command that does not read
/// holds the client back.
const QUEUED_INPUT: usize = 16;

/// The client's terminal, in its request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct TtyRequest {
    term: String,
    cols: u16,
    rows: u16,
}

/// What a client on a terminal sends after its request.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Input {
    In(String),
    Size([u16; 2]),
    Eof,
}

pub(super) fn encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub(super) fn decode(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

/// The admin command's side of a client's terminal, and the pump that
/// feeds it from the client's lines; the pump ends when the client leaves
/// or sends something that is not [`Input`].
pub(super) fn session(
    tty: TtyRequest,
    mut read: BufReader<OwnedReadHalf>,
) -> (gitd::Interactive, impl std::future::Future<Output = ()>) {
    let size = gitd::WindowSize::clamped(u32::from(tty.cols), u32::from(tty.rows));
    let tty = gitd::Tty::from_request(&tty.term, size.cols.into(), size.rows.into()).unwrap_or(
        gitd::Tty {
            term: gitd::terminal::FALLBACK_TERM.into(),
            size,
        },
    );
    let (input_tx, input) = mpsc::channel::<Bytes>(QUEUED_INPUT);
    let (window_tx, window) = watch::channel(size);
    let pump = async move {
        let mut input_tx = Some(input_tx);
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = (&mut read)
                .take(MAX_INPUT_LINE as u64 + 1)
                .read_until(b'\n', &mut line)
                .await;
            let Ok(n @ 1..=MAX_INPUT_LINE) = n else {
                return; // the client left, or sent an overlong line
            };
            match serde_json::from_slice::<Input>(&line[..n]) {
                Ok(Input::In(text)) => {
                    let (Some(tx), Some(bytes)) = (&input_tx, decode(&text)) else {
                        continue;
                    };
                    if tx.send(Bytes::from(bytes)).await.is_err() {
                        input_tx = None; // the command reads no more
                    }
                }
                Ok(Input::Size([cols, rows])) => {
                    window_tx.send_replace(gitd::WindowSize::clamped(cols.into(), rows.into()));
                }
                Ok(Input::Eof) => input_tx = None,
                Err(_) => return,
            }
        }
    };
    let session = gitd::Interactive {
        tty: Some(tty),
        input,
        window,
    };
    (session, pump)
}

/// Puts stdin's terminal in raw mode until dropped (keystrokes, Ctrl-C
/// included, go to the remote terminal; its echo comes back from there).
struct RawMode(libc::termios);

impl RawMode {
    fn enter() -> std::io::Result<RawMode> {
        // SAFETY: termios is plain data; tcgetattr fills it for fd 0.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        if unsafe { libc::tcgetattr(0, &mut saved) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut raw = saved;
        // SAFETY: cfmakeraw edits the struct; tcsetattr applies it to fd 0.
        unsafe { libc::cfmakeraw(&mut raw) };
        if unsafe { libc::tcsetattr(0, libc::TCSANOW, &raw) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(RawMode(saved))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: restores the settings read in `enter`.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &self.0) };
    }
}

/// stdin's window size (0×0 if unknown).
fn window_size() -> (u16, u16) {
    // SAFETY: TIOCGWINSZ writes a winsize to a valid pointer.
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    if unsafe { libc::ioctl(0, libc::TIOCGWINSZ, &mut size) } != 0 {
        return (0, 0);
    }
    (size.ws_col, size.ws_row)
}

/// Whether `byteport run` should use the caller's terminal.
pub fn stdin_is_terminal() -> bool {
    std::io::stdin().is_terminal()
}

/// Sends one [`Input`] line.
async fn send(write: &mut tokio::net::unix::OwnedWriteHalf, input: &Input) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(input).expect("input serializes");
    line.push(b'\n');
    write.write_all(&line).await
}

/// [`super::call`] on the caller's terminal: `line` (a `run`) gets the
/// terminal in raw mode, its keystrokes and window changes; what the
/// command's terminal shows is written to stdout as is.
pub async fn call_on_terminal(home: &Path, line: &str) -> Result<u32, CallError> {
    let (cols, rows) = window_size();
    let term = std::env::var("TERM").unwrap_or_else(|_| "dumb".into());
    let request = Request {
        line: line.to_string(),
        tty: Some(TtyRequest { term, cols, rows }),
    };
    let (read, mut write) = super::open(home, &request).await?;
    let _raw = RawMode::enter()?;

    // Keystrokes: stdin is read on a thread of its own (a blocking read
    // of a terminal cannot be cancelled; it ends with the process).
    let (keys_tx, mut keys) = mpsc::channel::<Option<Vec<u8>>>(QUEUED_INPUT);
    std::thread::spawn(move || {
        use std::io::Read;
        let mut buf = [0u8; 4096];
        let mut stdin = std::io::stdin().lock();
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = keys_tx.blocking_send(None);
                    return;
                }
                Ok(n) => {
                    if keys_tx.blocking_send(Some(buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
            }
        }
    });
    let mut winch = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())?;
    let mut lines = BufReader::new(read).lines();
    let mut stdout = tokio::io::stdout();
    let mut stderr = tokio::io::stderr();
    let mut typing = true;
    loop {
        tokio::select! {
            key = keys.recv(), if typing => match key.flatten() {
                Some(bytes) => send(&mut write, &Input::In(encode(&bytes))).await?,
                None => {
                    typing = false;
                    send(&mut write, &Input::Eof).await?;
                }
            },
            _ = winch.recv() => {
                let (cols, rows) = window_size();
                send(&mut write, &Input::Size([cols, rows])).await?;
            }
            reply = lines.next_line() => {
                let Some(reply) = reply? else {
                    return Err(CallError::Interrupted);
                };
                match serde_json::from_str::<Reply>(&reply) {
                    Ok(Reply::Raw(text)) => {
                        let bytes = decode(&text).ok_or_else(|| {
                            CallError::Protocol("a raw reply that is not base64".into())
                        })?;
                        stdout.write_all(&bytes).await?;
                        stdout.flush().await?;
                    }
                    // Messages (errors, notes): the terminal is raw, so
                    // each line needs its carriage return.
                    Ok(Reply::Out(text)) => {
                        stdout.write_all(text.replace('\n', "\r\n").as_bytes()).await?;
                        stdout.flush().await?;
                    }
                    Ok(Reply::Err(text)) => {
                        stderr.write_all(text.replace('\n', "\r\n").as_bytes()).await?;
                        stderr.flush().await?;
                    }
                    Ok(Reply::Exit(code)) => return Ok(code),
                    Err(_) => return Err(CallError::Protocol(reply.chars().take(200).collect())),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_lines_have_the_documented_shape() {
        let json = |i: &Input| serde_json::to_string(i).unwrap();
        assert_eq!(json(&Input::In(encode(b"ls\r"))), r#"{"in":"bHMN"}"#);
        assert_eq!(json(&Input::Size([132, 43])), r#"{"size":[132,43]}"#);
        assert_eq!(json(&Input::Eof), r#""eof""#);
        for bad in [
            r#"{"size":[1]}"#,
            r#"{"size":[70000,1]}"#,
            r#"{"in":3}"#,
            "{}",
        ] {
            assert!(serde_json::from_str::<Input>(bad).is_err(), "{bad}");
        }
        assert_eq!(decode("bHMN").as_deref(), Some(&b"ls\r"[..]));
        assert_eq!(decode("not base64!"), None);
    }

    /// A session fed `lines` by a client; what the command got, the window
    /// it ended with, and whether the pump ended by itself.
    async fn feed(tty: TtyRequest, lines: &[u8]) -> (Vec<u8>, gitd::WindowSize, String, bool) {
        let (server, mut client) = tokio::net::UnixStream::pair().unwrap();
        let (read, _write) = server.into_split();
        let (mut session, pump) = session(tty, BufReader::new(read));
        client.write_all(lines).await.unwrap();
        let pump = tokio::spawn(pump);
        let mut got = Vec::new();
        let collect = async {
            while let Some(b) = session.input.recv().await {
                got.extend_from_slice(&b);
            }
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), collect).await;
        let ended = tokio::time::timeout(std::time::Duration::from_secs(2), pump)
            .await
            .is_ok();
        let term = session.tty.unwrap().term;
        let window = *session.window.borrow();
        (got, window, term, ended)
    }

    fn tty(term: &str) -> TtyRequest {
        TtyRequest {
            term: term.into(),
            cols: 80,
            rows: 24,
        }
    }

    #[tokio::test]
    async fn hostile_client_lines_end_the_session_or_are_dropped_never_passed_on() {
        // Keystrokes, a resize, EOF; what comes after EOF is dropped.
        let (got, window, term, _) = feed(
            tty("xterm"),
            b"{\"in\":\"bHMN\"}\n{\"size\":[132,43]}\n\"eof\"\n{\"in\":\"bHMN\"}\n",
        )
        .await;
        assert_eq!(got, b"ls\r");
        assert_eq!((window.cols, window.rows), (132, 43));
        assert_eq!(term, "xterm");
        // Not base64: skipped, the next packet still arrives.
        let (got, ..) = feed(
            tty("xterm"),
            b"{\"in\":\"!!\"}\n{\"in\":\"bHMN\"}\n\"eof\"\n",
        )
        .await;
        assert_eq!(got, b"ls\r");
        // Not the protocol, or an overlong line: the session ends there.
        let (got, _, _, ended) = feed(
            tty("xterm"),
            b"{\"in\":\"bHMN\"}\nrm -rf /\n{\"in\":\"bHMN\"}\n",
        )
        .await;
        assert!(ended && got == b"ls\r", "{got:?}");
        let mut long = vec![b'x'; MAX_INPUT_LINE + 10];
        long.push(b'\n');
        let (got, _, _, ended) = feed(tty("xterm"), &long).await;
        assert!(ended && got.is_empty());
        // A TERM holding an escape sequence becomes `dumb`; a huge window is
        // clamped.
        let (_, window, term, _) = feed(
            TtyRequest {
                term: "xterm\u{1b}[2J".into(),
                cols: u16::MAX,
                rows: 3,
            },
            b"\"eof\"\n",
        )
        .await;
        assert_eq!(term, "dumb");
        assert_eq!(
            (window.cols, window.rows),
            (gitd::terminal::MAX_DIMENSION, 3)
        );
    }
}
