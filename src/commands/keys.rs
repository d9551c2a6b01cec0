//! `byteport keys …` and `byteport users …`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use super::{fmt_time, open_store, read_stdin_value};
use crate::cli::{KeysCommand, UsersCommand};
use crate::config::Config;

pub async fn keys(cmd: KeysCommand, config: &Config) -> anyhow::Result<ExitCode> {
    let store = open_store(config).await?;
    match cmd {
        KeysCommand::Add { name, pubkey_file } => {
            let text = if pubkey_file == Path::new("-") {
                read_stdin_value("the public key")?
            } else {
                read_small_file(&pubkey_file)?
            };
            let key = store
                .add_key(&name, &text)
                .await
                .with_context(|| format!("adding {} for `{name}`", pubkey_file.display()))?;
            println!(
                "added {} key {} for {}",
                key.algorithm, key.fingerprint, key.user
            );
        }
        KeysCommand::List(flag) => {
            let keys = store.list_keys().await?;
            if flag.json {
                println!("{}", serde_json::to_string_pretty(&keys)?);
            } else if keys.is_empty() {
                println!("no keys yet: byteport keys add NAME ~/.ssh/id_ed25519.pub");
            } else {
                for k in keys {
                    println!(
                        "{:<16} {:<12} {}  added {}",
                        k.user,
                        k.algorithm,
                        k.fingerprint,
                        fmt_time(k.created_at)
                    );
                }
            }
        }
        KeysCommand::Remove { name } => {
            let n = store.remove_keys(&name).await?;
            println!("removed {n} key(s)");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn users(cmd: UsersCommand, config: &Config) -> anyhow::Result<ExitCode> {
    let store = open_store(config).await?;
    match cmd {
        UsersCommand::Add { name, operator } => {
            let password = read_stdin_value("the password")?;
            let user = store.add_user(&name, Some(&password)).await?;
            if operator {
                store.set_operator(&user.name, true).await?;
            }
            println!(
                "created {} {}",
                if operator { "operator" } else { "user" },
                user.name
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn read_small_file(path: &Path) -> anyhow::Result<String> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    anyhow::ensure!(
        meta.len() <= 64 * 1024,
        "{} is {} bytes: a public key file is a single short line",
        path.display(),
        meta.len()
    );
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    String::from_utf8(bytes).with_context(|| format!("{} is not text", path.display()))
}
