//! `run APP [--stop-app] [--] CMD...`: a one-off VM of the live deploy
//! runs CMD; its output streams back as it is printed and the exit status
//! is the command's (Heroku's `heroku run`, Dokku's `dokku run`). With
//! `--stop-app` (needed for an app with a volume) the app stops for the
//! command and boots again after.

use gitd::{CommandOutput, Stream};
use platform::release::OutputLine;
use platform::{JobSpec, Platform};

use super::{fail, require_access, run_job, AdminError, Caller};

/// Runs the `run` command; `words` are what follows `run`.
pub async fn run(
    platform: &Platform,
    caller: Caller<'_>,
    words: &[&str],
    out: &dyn CommandOutput,
) -> Result<u32, AdminError> {
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
    // The guest runs the command with `sh -c`: quoting keeps each word.
    let command = shlex::try_join(rest.iter().copied())
        .map_err(|_| AdminError::Usage("the command holds a NUL byte".into()))?;
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
