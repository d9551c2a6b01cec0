//! `portfolio …`: the owner's review of drafted portfolio pages, over SSH
//! (own apps only) and from the CLI (the operator, every app):
//!
//! ```text
//! portfolio list                          apps with drafts, their state
//! portfolio show APP [N]                  a version: text, facts, screenshots, notes
//! portfolio diff APP [N]                  what changed against the previous version
//! portfolio edit APP [--title T] [--summary S] [--body B] [--tags a,b]
//! portfolio approve APP [N] | reject APP  publish (or not) the newest draft
//! portfolio regenerate APP                draft again from the live deploy
//! portfolio profile [--name N] [--bio B] [--site-url U] [--link LABEL=URL]...   (operator)
//! portfolio export DIR                    the site as static files (operator)
//! portfolio publish [--remote R --branch B]   commit the site to a git remote (operator)
//! ```

use gitd::CommandOutput;
use platform::portfolio::{PublishSettings, PROFILE_SETTING, PUBLISH_SETTING};
use platform::{JobSpec, Platform};
use portfolio::review::{TextEdit, Version};
use portfolio::site::{Profile, ProfileLink};

use super::{fail, require_access, run_job, say, AdminError, Caller};

/// Runs a `portfolio` subcommand.
pub async fn run(
    platform: &Platform,
    caller: Caller<'_>,
    words: &[&str],
    out: &dyn CommandOutput,
) -> Result<u32, AdminError> {
    let Some(service) = platform.portfolio().cloned() else {
        return Ok(fail(
            out,
            "the portfolio is not set up on this host (byteport doctor says why)",
        )
        .await);
    };
    let review = service.generator.review();
    let by = caller.name().unwrap_or("operator");
    let version_arg = |w: Option<&&str>| -> Result<Option<u32>, AdminError> {
        w.map(|w| {
            w.trim_start_matches(['v', '#'])
                .parse::<u32>()
                .map_err(|_| {
                    AdminError::Usage(format!(
                        "`{}` is not a version number (e.g. 3 or v3)",
                        w.escape_default()
                    ))
                })
        })
        .transpose()
    };
    match words {
        ["list"] | ["list", "--json"] => {
            let mut rows = Vec::new();
            for s in review.list().await.map_err(usage)? {
                if allowed(platform, caller, &s.app).await? {
                    rows.push(s);
                }
            }
            if words.get(1) == Some(&"--json") {
                say(out, &serde_json::to_string_pretty(&rows).unwrap_or_default()).await;
                return Ok(0);
            }
            if rows.is_empty() {
                say(out, "no portfolio drafts yet: apps with a `portfolio` block get one after each deploy").await;
            }
            for s in rows {
                say(
                    out,
                    &format!(
                        "{:<24} v{:<3} {:<10} published {}{}",
                        s.app,
                        s.latest,
                        s.latest_state.as_str(),
                        s.published.map(|n| format!("v{n}")).unwrap_or_else(|| "-".into()),
                        s.blocked.map(|b| format!("  (cannot publish: {b})")).unwrap_or_default()
                    ),
                )
                .await;
            }
            Ok(0)
        }
        ["show", app, rest @ ..] => {
            require_access(platform, caller, app).await?;
            let versions = review.show(app).await.map_err(usage)?;
            let wanted = version_arg(rest.first())?;
            let Some(v) = (match wanted {
                Some(n) => versions.iter().find(|v| v.number == n),
                None => versions.last(),
            }) else {
                return Ok(fail(out, &format!("{app} has no such portfolio version")).await);
            };
            say(out, &describe(v)).await;
            Ok(0)
        }
        ["diff", app, rest @ ..] => {
            require_access(platform, caller, app).await?;
            let n = version_arg(rest.first())?;
            say(out, &review.diff(app, n).await.map_err(usage)?).await;
            Ok(0)
        }
        ["edit", app, flags @ ..] => {
            require_access(platform, caller, app).await?;
            let edit = parse_edit(flags)?;
            let v = service.edit(app, by, edit).await.map_err(job)?;
            say(out, &format!("{app}: v{} saved; approve it to publish (portfolio approve {app})", v.number)).await;
            Ok(0)
        }
        ["approve", app, rest @ ..] => {
            require_access(platform, caller, app).await?;
            let n = version_arg(rest.first())?;
            let v = service.approve(app, by, n).await.map_err(job)?;
            say(out, &format!("{app}: v{} is published at /portfolio/", v.number)).await;
            Ok(0)
        }
        ["reject", app] => {
            require_access(platform, caller, app).await?;
            let v = service.reject(app, by).await.map_err(job)?;
            say(out, &format!("{app}: v{} rejected; the published page (if any) stays", v.number)).await;
            Ok(0)
        }
        ["regenerate", app] => {
            require_access(platform, caller, app).await?;
            let live = platform.store.live_deploy(app).await?.ok_or_else(|| {
                AdminError::Usage(format!("{app} has no live deploy to draft a page from"))
            })?;
            let spec = JobSpec::Portfolio {
                deploy: Some(live.number),
                commit: live.commit,
            };
            run_job(platform, caller, app, spec, out).await
        }
        ["profile", flags @ ..] => {
            operator_only(caller)?;
            let mut profile = service.profile().await;
            if flags.is_empty() {
                say(out, &serde_json::to_string_pretty(&profile).unwrap_or_default()).await;
                return Ok(0);
            }
            apply_profile(&mut profile, flags)?;
            platform.store.set_setting(PROFILE_SETTING, &profile).await?;
            service.rebuild_site().await.map_err(job)?;
            say(out, "profile saved; the site is rebuilt").await;
            Ok(0)
        }
        ["export", dir] => {
            operator_only(caller)?;
            let site = service.site.get();
            let dir = std::path::PathBuf::from(dir);
            let stats = tokio::task::spawn_blocking(move || site.export(&dir))
                .await
                .map_err(|e| AdminError::Usage(format!("export failed: {e}")))?
                .map_err(|e| AdminError::Usage(e.to_string()))?;
            say(out, &format!("exported {stats:?}")).await;
            Ok(0)
        }
        ["publish", flags @ ..] => {
            operator_only(caller)?;
            let mut target: Option<PublishSettings> = platform.store.setting(PUBLISH_SETTING).await?;
            let mut it = flags.iter();
            let (mut remote, mut branch) = (None, None);
            while let Some(f) = it.next() {
                match *f {
                    "--remote" => remote = it.next().map(|s| s.to_string()),
                    "--branch" => branch = it.next().map(|s| s.to_string()),
                    other => return Err(AdminError::Usage(format!("unknown option `{}` for portfolio publish", other.escape_default()))),
                }
            }
            if let Some(remote) = remote {
                target = Some(PublishSettings {
                    remote,
                    branch: branch.clone().unwrap_or_else(|| "main".into()),
                });
                platform.store.set_setting(PUBLISH_SETTING, &target).await?;
            }
            let Some(target) = target else {
                return Ok(fail(out, "no publish target yet: portfolio publish --remote URL [--branch main]").await);
            };
            let site = service.site.get();
            let publish_target = portfolio::site::PublishTarget {
                remote: target.remote.clone(),
                branch: target.branch.clone(),
                work_dir: platform.home().join("portfolio/publish"),
                author_name: "BytePort".into(),
                author_email: "byteport@localhost".into(),
            };
            let outcome = tokio::task::spawn_blocking(move || portfolio::site::publish(&site, &publish_target))
                .await
                .map_err(|e| AdminError::Usage(format!("publish failed: {e}")))?
                .map_err(|e| AdminError::Usage(format!("publish to {} failed: {e}", target.remote)))?;
            say(out, &format!("{outcome:?}")).await;
            Ok(0)
        }
        _ => Ok(fail(out, "usage: portfolio list|show APP [N]|diff APP [N]|edit APP --title T ...|approve APP [N]|reject APP|regenerate APP|profile ...|export DIR|publish [--remote R --branch B]").await),
    }
}

fn usage(e: portfolio::review::ReviewError) -> AdminError {
    AdminError::Usage(e.to_string())
}

fn job(e: platform::JobError) -> AdminError {
    AdminError::Usage(e.to_string())
}

fn operator_only(caller: Caller<'_>) -> Result<(), AdminError> {
    match caller {
        Caller::Operator => Ok(()),
        Caller::User(_) => Err(AdminError::Usage(
            "only the operator (byteport on the host) may change the site's profile, export or publish it".into(),
        )),
    }
}

async fn allowed(platform: &Platform, caller: Caller<'_>, app: &str) -> Result<bool, AdminError> {
    Ok(match caller {
        Caller::Operator => true,
        Caller::User(u) => platform.store.can_access(u, app).await?,
    })
}

fn parse_edit(flags: &[&str]) -> Result<TextEdit, AdminError> {
    let mut edit = TextEdit::default();
    let mut it = flags.iter();
    while let Some(f) = it.next() {
        let value = |v: Option<&&str>| {
            v.map(|s| s.to_string())
                .ok_or_else(|| AdminError::Usage(format!("{f} needs a value")))
        };
        match *f {
            "--title" => edit.title = Some(value(it.next())?),
            "--summary" => edit.summary = Some(value(it.next())?),
            "--body" => edit.body = Some(value(it.next())?),
            "--tags" => {
                edit.tags = Some(
                    value(it.next())?
                        .split(',')
                        .map(|t| t.trim().to_string())
                        .filter(|t| !t.is_empty())
                        .collect(),
                )
            }
            other => {
                return Err(AdminError::Usage(format!(
                "unknown option `{}` for portfolio edit (use --title, --summary, --body, --tags)",
                other.escape_default()
            )))
            }
        }
    }
    if edit == TextEdit::default() {
        return Err(AdminError::Usage(
            "portfolio edit needs at least one of --title, --summary, --body, --tags".into(),
        ));
    }
    Ok(edit)
}

fn apply_profile(p: &mut Profile, flags: &[&str]) -> Result<(), AdminError> {
    let mut it = flags.iter();
    let mut links: Option<Vec<ProfileLink>> = None;
    while let Some(f) = it.next() {
        let v = it
            .next()
            .map(|s| s.to_string())
            .ok_or_else(|| AdminError::Usage(format!("{f} needs a value")))?;
        match *f {
            "--name" => p.name = v,
            "--bio" => p.bio = v,
            "--site-url" => p.site_url = v,
            "--title" => p.site_title = Some(v),
            "--link" => {
                let (label, url) = v.split_once('=').ok_or_else(|| {
                    AdminError::Usage(format!(
                        "--link wants LABEL=URL, not `{}`",
                        v.escape_default()
                    ))
                })?;
                links.get_or_insert_with(Vec::new).push(ProfileLink {
                    label: label.to_string(),
                    url: url.to_string(),
                });
            }
            other => {
                return Err(AdminError::Usage(format!(
                    "unknown option `{}` for portfolio profile",
                    other.escape_default()
                )))
            }
        }
    }
    if let Some(links) = links {
        p.links = links;
    }
    Ok(())
}

/// A version for people: state, text, where it came from, screenshots.
fn describe(v: &Version) -> String {
    let mut s = format!(
        "{} v{} — {} (by {}, {:?})\n\n{}\n\n{}\n\n{}\n\ntags: {}\n",
        v.app,
        v.number,
        v.state.as_str(),
        v.author,
        v.drafted_by,
        v.text.title,
        v.text.summary,
        v.text.body,
        v.text.tags.join(", ")
    );
    match &v.capture {
        portfolio::capture::CaptureOutcome::Captured { shots, .. } => {
            s.push_str(&format!(
                "screenshots: {}\n",
                serde_json::to_string(shots).unwrap_or_default()
            ));
        }
        portfolio::capture::CaptureOutcome::Refused { reason, .. } => {
            s.push_str(&format!("no screenshots: {reason}\n"));
        }
        portfolio::capture::CaptureOutcome::NotRequested => {}
    }
    for n in &v.notes {
        s.push_str(&format!("note: {n}\n"));
    }
    s
}
