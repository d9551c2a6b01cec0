//! `byteport config get|set|unset APP …` and `byteport secrets …`.

use std::process::ExitCode;

use super::{open_store, read_stdin_value};
use crate::cli::{ConfigCommand, SecretsCommand};
use crate::config::Config;

/// Splits `KEY=VALUE` arguments; the value may itself contain `=`.
pub fn parse_pairs(pairs: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    pairs
        .iter()
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => anyhow::bail!("`{p}` is not KEY=VALUE"),
        })
        .collect()
}

pub async fn config(cmd: ConfigCommand, config: &Config) -> anyhow::Result<ExitCode> {
    let store = open_store(config).await?;
    match cmd {
        ConfigCommand::Show(_) => unreachable!("handled by dispatch"),
        ConfigCommand::Get { app, json } => {
            store.require_app(&app).await?;
            let vars = store.config_vars(&app).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&vars)?);
            } else {
                for (k, v) in vars {
                    println!("{k}={v}");
                }
            }
        }
        ConfigCommand::Set {
            app,
            pairs,
            no_restart,
        } => {
            let parsed = parse_pairs(&pairs)?;
            // With `byteport up` running, it applies the change (and
            // restarts the app); without it, the store is written here.
            let mut words: Vec<&str> = vec!["config", &app, "set"];
            words.extend(pairs.iter().map(String::as_str));
            if no_restart {
                words.push("--no-restart");
            }
            if let Some(code) = through_daemon(config, &words).await? {
                return Ok(code);
            }
            store.set_config(&app, &parsed).await?;
            let keys: Vec<_> = parsed.iter().map(|(k, _)| k.as_str()).collect();
            println!(
                "set {} on {app} (takes effect on the next deploy or restart)",
                keys.join(", ")
            );
        }
        ConfigCommand::Unset {
            app,
            keys,
            no_restart,
        } => {
            let mut words: Vec<&str> = vec!["config", &app, "unset"];
            words.extend(keys.iter().map(String::as_str));
            if no_restart {
                words.push("--no-restart");
            }
            if let Some(code) = through_daemon(config, &words).await? {
                return Ok(code);
            }
            let n = store.unset_config(&app, &keys).await?;
            println!("removed {n} var(s) from {app}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs an admin command line on `byteport up` if it is running
/// (`None`: it is not).
async fn through_daemon(config: &Config, words: &[&str]) -> anyhow::Result<Option<ExitCode>> {
    let line = shlex::try_join(words.iter().copied())?;
    match crate::control::call(&config.home, &line).await {
        Ok(code) => Ok(Some(ExitCode::from(u8::try_from(code).unwrap_or(1)))),
        Err(crate::control::CallError::NotRunning { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub async fn secrets(cmd: SecretsCommand, config: &Config) -> anyhow::Result<ExitCode> {
    let store = open_store(config).await?;
    match cmd {
        SecretsCommand::Set { app, name } => {
            let value = read_stdin_value("the secret value")?;
            store.set_secret(&app, &name, &value).await?;
            println!("set secret {name} on {app}");
        }
        SecretsCommand::Unset { app, name } => {
            if !store.unset_secret(&app, &name).await? {
                anyhow::bail!("app `{app}` has no secret `{name}`");
            }
            println!("removed secret {name} from {app}");
        }
        SecretsCommand::List { app, json } => {
            store.require_app(&app).await?;
            let names = store.secret_names(&app).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&names)?);
            } else {
                for n in names {
                    println!("{n}=********");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::parse_pairs;

    #[test]
    fn pairs() {
        let p = parse_pairs(&["A=1".into(), "B=x=y".into(), "C=".into()]).unwrap();
        assert_eq!(p[1], ("B".into(), "x=y".into()));
        assert_eq!(p[2].1, "");
        assert!(parse_pairs(&["=1".into()]).is_err());
        assert!(parse_pairs(&["NOEQ".into()]).is_err());
    }
}
