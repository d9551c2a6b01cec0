//! `byteport tokens …`: API tokens for scripts and Prometheus.

use std::process::ExitCode;

use platform::store::TokenScope;

use super::{fmt_time, open_store};
use crate::cli::TokensCommand;
use crate::config::Config;

pub async fn tokens(cmd: TokensCommand, config: &Config) -> anyhow::Result<ExitCode> {
    let store = open_store(config).await?;
    match cmd {
        TokensCommand::Create {
            name,
            label,
            metrics,
        } => {
            let scope = if metrics {
                TokenScope::Metrics
            } else {
                TokenScope::Api
            };
            let (token, secret) = store.create_token(&name, &label, scope).await?;
            eprintln!(
                "created {} token {} for {} (shown once: store it now)",
                scope.as_str(),
                token.id,
                token.user
            );
            println!("{secret}");
        }
        TokensCommand::List(flag) => {
            let tokens = store.list_tokens(None).await?;
            if flag.json {
                println!("{}", serde_json::to_string_pretty(&tokens)?);
            } else if tokens.is_empty() {
                println!("no tokens yet: byteport tokens create USER");
            } else {
                for t in tokens {
                    let state = match t.revoked_at {
                        Some(at) => format!("revoked {}", fmt_time(at)),
                        None => match t.last_used_at {
                            Some(at) => format!("used {}", fmt_time(at)),
                            None => "never used".into(),
                        },
                    };
                    println!(
                        "{}  {:<12} {:<8} created {}  {state}  {}",
                        t.id,
                        t.user,
                        t.scope.as_str(),
                        fmt_time(t.created_at),
                        t.label
                    );
                }
            }
        }
        TokensCommand::Revoke { id } => {
            store.revoke_token(&id).await?;
            println!("revoked");
        }
    }
    Ok(ExitCode::SUCCESS)
}
