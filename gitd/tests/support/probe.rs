//! Test admin commands that report what gitd gave them: the terminal,
//! stdin (echoed untouched or counted) and window sizes, or that write
//! output without reading.

use std::sync::Arc;

use gitd::{BoxFuture, CommandOutput, Commands, Interactive, Stream};

/// Test commands that report what gitd gave them.
pub struct Probe {
    /// `count` and `hold` read nothing and `spew` writes until this turns
    /// true.
    pub go: tokio::sync::watch::Sender<bool>,
}

impl Probe {
    pub fn new() -> Arc<Probe> {
        Arc::new(Probe {
            go: tokio::sync::watch::channel(false).0,
        })
    }
}

fn describe(session: &Interactive) -> String {
    match &session.tty {
        None => "tty: none\r\n".into(),
        Some(t) => format!("tty: {} {}x{}\r\n", t.term, t.size.cols, t.size.rows),
    }
}

impl Commands for Probe {
    fn run<'a>(
        &'a self,
        _user: &'a str,
        line: &'a str,
        out: &'a dyn CommandOutput,
    ) -> BoxFuture<'a, u32> {
        Box::pin(async move {
            out.write(Stream::Stdout, &format!("plain {line}\n")).await;
            0
        })
    }

    fn run_interactive<'a>(
        &'a self,
        _user: &'a str,
        line: &'a str,
        mut session: Interactive,
        out: &'a dyn CommandOutput,
    ) -> BoxFuture<'a, u32> {
        Box::pin(async move {
            out.write_bytes(Stream::Stdout, describe(&session).as_bytes())
                .await;
            match line {
                // Echoes stdin untouched until EOF.
                "echo" => {
                    while let Some(data) = session.input.recv().await {
                        out.write_bytes(Stream::Stdout, &data).await;
                    }
                    out.write(Stream::Stdout, "[eof]\r\n").await;
                    0
                }
                // Reports each window size until it reads a `q`.
                "winch" => loop {
                    tokio::select! {
                        data = session.input.recv() => match data {
                            Some(d) if !d.contains(&b'q') => {}
                            _ => return 0,
                        },
                        changed = session.window.changed() => {
                            if changed.is_err() {
                                return 1;
                            }
                            let s = *session.window.borrow_and_update();
                            out.write(Stream::Stdout, &format!("size {}x{}\r\n", s.cols, s.rows)).await;
                        }
                    }
                },
                // Reads nothing until told, then counts stdin to EOF.
                "count" => {
                    let mut go = self.go.subscribe();
                    let _ = go.wait_for(|g| *g).await;
                    let mut n = 0u64;
                    while let Some(data) = session.input.recv().await {
                        n += data.len() as u64;
                    }
                    out.write(Stream::Stdout, &format!("bytes {n}\r\n")).await;
                    0
                }
                // Writes output without pause and reads nothing until
                // told; then counts what stdin still gives it up to EOF
                // and exits 3.
                "spew" => {
                    let mut go = self.go.subscribe();
                    let chunk = vec![b'.'; 32 * 1024];
                    loop {
                        tokio::select! {
                            biased;
                            _ = go.wait_for(|g| *g) => break,
                            () = out.write_bytes(Stream::Stdout, &chunk) => {}
                        }
                    }
                    let mut n = 0u64;
                    while let Some(data) = session.input.recv().await {
                        n += data.len() as u64;
                    }
                    out.write(Stream::Stdout, &format!("\r\nread {n}\r\n"))
                        .await;
                    3
                }
                // Reads nothing until told, then writes ten lines (as
                // many messages as russh's session queue holds) and exits
                // 5 without reading.
                "hold" => {
                    let mut go = self.go.subscribe();
                    let _ = go.wait_for(|g| *g).await;
                    for i in 0..10 {
                        out.write(Stream::Stdout, &format!("line {i}\n")).await;
                    }
                    5
                }
                _ => 2,
            }
        })
    }
}
