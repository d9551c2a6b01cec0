//! `run APP [--stop-app] [--] CMD...`: a one-off VM of the live deploy
//! runs CMD; its output streams back as it is printed and the exit status
//! is the command's (Heroku's `heroku run`, Dokku's `dokku run`). With
//! `--stop-app` (needed for an app with a volume) the app stops for the
//! command and boots again after.

use gitd::{CommandOutput, Stream};
use platform::release::OutputLine;
use platform::run_command::Terminal;
use platform::{JobSpec, Platform};

use super::{fail, require_access, run_job, AdminError, Caller};

/// What a `run` line asks for.
struct RunRequest<'w> {
    app: &'w str,
    stop_app: bool,
    /// The command, quoted for the guest's `sh -c` so each word stays one.
    command: String,
}

fn parse<'w>(words: &[&'w str]) -> Result<RunRequest<'w>, AdminError> {
    let usage = || AdminError::Usage("usage: run APP [--stop-app] [--] COMMAND [ARGS...]".into());
    let (app, mut rest) = words.split_first().ok_or_else(usage)?;
    let mut stop_app = false;
    while let Some((first, tail)) = rest.split_first() {
        match *first {
            "--stop-app" => stop_app = true,
            "--" => {
                rest = tail;
                break;
            }
            _ => break,
        }
        rest = tail;
    }
    if rest.is_empty() {
        return Err(usage());
    }
    let command = shlex::try_join(rest.iter().copied())
        .map_err(|_| AdminError::Usage("the command holds a NUL byte".into()))?;
    Ok(RunRequest {
        app,
        stop_app,
        command,
    })
}

/// Runs the `run` command; `words` are what follows `run`.
pub async fn run(
    platform: &Platform,
    caller: Caller<'_>,
    words: &[&str],
    out: &dyn CommandOutput,
) -> Result<u32, AdminError> {
    let RunRequest {
        app,
        stop_app,
        command,
    } = parse(words)?;
    require_access(platform, caller, app).await?;
    if stop_app {
        let spec = JobSpec::Run { command };
        return run_job(platform, caller, app, spec, out).await;
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<OutputLine>();
    let notes = tx.clone();
    let say = move |text: &str| {
        let _ = notes.send(OutputLine {
            stderr: true,
            text: text.to_string(),
        });
    };
    let by = caller.name().unwrap_or("operator");
    let running = platform.run_command(
        app,
        &command,
        by,
        move |l| {
            let _ = tx.send(l);
        },
        &say,
    );
    let mut running = std::pin::pin!(running);
    let result = loop {
        tokio::select! {
            Some(line) = rx.recv() => write_line(out, line).await,
            done = &mut running => break done,
        }
    };
    while let Ok(line) = rx.try_recv() {
        write_line(out, line).await;
    }
    match result {
        Ok(status) => Ok(u32::try_from(status).unwrap_or(1)),
        Err(e) => Ok(fail(out, &format!("error: {e}")).await),
    }
}

async fn write_line(out: &dyn CommandOutput, line: OutputLine) {
    let stream = if line.stderr {
        Stream::Stderr
    } else {
        Stream::Stdout
    };
    out.write(stream, &format!("{}\n", line.text)).await;
}

/// Output frames queued between the console and the client: a client that
/// reads slowly holds the command back.
const QUEUED_OUTPUT: usize = 16;

/// `run` when the client asked for a terminal (`ssh -t git@HOST run APP
/// bash`): the command runs on a pseudo-terminal in a one-off VM, with the
/// client's keystrokes, window size and changes; the client's terminal
/// shows exactly what the guest's does. Returns the exit status.
pub async fn run_on_terminal(
    platform: &Platform,
    caller: Caller<'_>,
    words: &[&str],
    session: gitd::Interactive,
    out: &dyn CommandOutput,
) -> u32 {
    // The client's terminal is raw: lines need their carriage return.
    let fail = |text: String| async move {
        out.write(
            Stream::Stderr,
            &format!("{}\r\n", text.replace('\n', "\r\n")),
        )
        .await;
        1
    };
    let request = match parse(words) {
        Ok(r) => r,
        Err(e) => return fail(format!("error: {e}")).await,
    };
    if let Err(e) = require_access(platform, caller, request.app).await {
        return fail(format!("error: {e}")).await;
    }
    if request.stop_app {
        return fail(
            "error: --stop-app runs without a terminal; use `ssh -T` (or leave out -t)".into(),
        )
        .await;
    }
    let gitd::Interactive { tty, input, window } = session;
    let Some(tty) = tty else {
        return fail("error: no terminal was requested; use `ssh -t`".into()).await;
    };
    let (output, mut shown) = tokio::sync::mpsc::channel(QUEUED_OUTPUT);
    let terminal = Terminal {
        tty: runtime::Tty {
            term: tty.term,
            cols: tty.size.cols,
            rows: tty.size.rows,
        },
        input,
        window,
        output,
    };
    let by = caller.name().unwrap_or("operator");
    let notes = tokio::sync::mpsc::unbounded_channel::<String>();
    let (note_tx, mut note_rx) = notes;
    let say = move |text: &str| {
        let _ = note_tx.send(text.to_string());
    };
    let running = platform.run_on_terminal(request.app, &request.command, by, terminal, &say);
    let mut running = std::pin::pin!(running);
    let result = loop {
        tokio::select! {
            Some(bytes) = shown.recv() => out.write_bytes(Stream::Stdout, &bytes).await,
            Some(note) = note_rx.recv() => {
                out.write(Stream::Stderr, &format!("{note}\r\n")).await;
            }
            done = &mut running => break done,
        }
    };
    while let Ok(bytes) = shown.try_recv() {
        out.write_bytes(Stream::Stdout, &bytes).await;
    }
    match result {
        Ok(status) => u32::try_from(status).unwrap_or(1),
        Err(e) => fail(format!("error: {e}")).await,
    }
}
