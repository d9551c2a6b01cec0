//! What pages and the API show, computed once: an app's state and live
//! deploy, its deploys and jobs, who may see and change what. Pages render
//! these with askama; the API returns them as JSON.

use std::collections::{BTreeMap, HashMap};

use platform::jobs::{Job, JobSpec};
use platform::store::{App, Deploy, DeployStatus, SecretInfo};
use platform::VmStatus;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Viewer;
use crate::{Ctx, Error};

/// An app as the apps list shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AppSummary {
    /// The app's name.
    pub name: String,
    /// Its owner.
    pub owner: String,
    /// `running`, `deploying`, `failed`, `stopped`, `crashed-restarting`,
    /// `down` (should run, no VM) or `new` (never deployed).
    pub state: String,
    /// The live deploy's number.
    pub live_deploy: Option<i64>,
    /// The live deploy's commit.
    pub live_commit: Option<String>,
    /// Where it answers.
    pub url: String,
    /// The runtime driver (`qemu`, `kvm`).
    pub driver: String,
    /// Seconds its VM has served.
    pub uptime_secs: Option<u64>,
    /// Crashes in a row before the current VM.
    pub crashes: u32,
    /// The job running now, if any.
    pub running_job: Option<JobView>,
}

impl AppSummary {
    /// The live commit, shortened.
    pub fn short_commit(&self) -> String {
        self.live_commit
            .as_deref()
            .map(short)
            .unwrap_or_default()
            .to_string()
    }

    /// Uptime for people (`3h 12m`).
    pub fn uptime(&self) -> String {
        self.uptime_secs
            .map(fmt_duration)
            .unwrap_or_else(|| "—".into())
    }
}

/// A job.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobView {
    /// Queue-wide id.
    pub id: i64,
    /// `deploy`, `restart`, `rollback`, `stop`, `start`, `destroy`,
    /// `recover`, `restore`.
    pub kind: String,
    /// `queued`, `running`, `succeeded`, `failed`, `cancelled`.
    pub state: String,
    /// Who asked.
    pub requested_by: Option<String>,
    /// Queued at, Unix ms.
    pub created_at: i64,
    /// Started at.
    pub started_at: Option<i64>,
    /// Ended at.
    pub finished_at: Option<i64>,
    /// Why it failed or was cancelled.
    pub failure: Option<String>,
    /// The deploy it made or ran.
    pub deploy_number: Option<i64>,
    /// For a rollback: the deploy asked for.
    pub rollback_target: Option<i64>,
}

impl JobView {
    /// From the platform's job.
    pub fn new(job: &Job) -> JobView {
        JobView {
            id: job.id,
            kind: job.spec.kind().to_string(),
            state: job.state.as_str().to_string(),
            requested_by: job.requested_by.clone(),
            created_at: job.created_at,
            started_at: job.started_at,
            finished_at: job.finished_at,
            failure: job.failure.as_ref().map(|f| f.to_string()),
            deploy_number: job.deploy_number,
            rollback_target: match job.spec {
                JobSpec::Rollback { target } => target,
                _ => None,
            },
        }
    }

    /// When it was queued, for people.
    pub fn created(&self) -> String {
        platform::time::fmt_time(self.created_at)
    }

    /// How long it ran.
    pub fn took(&self) -> String {
        match (self.started_at, self.finished_at) {
            (Some(s), Some(f)) => format!("{:.1} s", (f - s) as f64 / 1000.0),
            (Some(_), None) => "running".into(),
            _ => "—".into(),
        }
    }

    /// Has it ended?
    pub fn is_active(&self) -> bool {
        self.state == "queued" || self.state == "running"
    }
}

/// A deploy.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeployView {
    /// Per-app number.
    pub number: i64,
    /// The commit.
    pub commit: String,
    /// The pushed ref.
    pub git_ref: String,
    /// The commit's author.
    pub author: Option<String>,
    /// The commit message's first line.
    pub message: Option<String>,
    /// Who pushed.
    pub pushed_by: Option<String>,
    /// `pending`, `building`, `booting`, `live`, `superseded`, `failed`, …
    pub status: String,
    /// Milliseconds per phase (manifest, build, boot, health, switch).
    pub timings: BTreeMap<String, i64>,
    /// Why it failed.
    pub failure_reason: Option<String>,
    /// Where in the manifest, `Byteport:LINE:COL`, when the manifest was at fault.
    pub manifest_location: Option<String>,
    /// For a rollback: the deploy it runs again.
    pub rollback_of: Option<i64>,
    /// The job that made it (its build log).
    pub job_id: Option<i64>,
    /// Started at, Unix ms.
    pub created_at: i64,
    /// Finished at.
    pub finished_at: Option<i64>,
    /// Can be rolled back to (was live, has its artifact, is not live now).
    pub can_roll_back_to: bool,
}

/// `Byteport:11:8` from a failure reason, if it names one.
pub fn manifest_location(reason: &str) -> Option<String> {
    let at = reason.find("Byteport:")?;
    let rest = &reason[at + "Byteport:".len()..];
    let mut parts = rest.splitn(3, ':');
    let line = parts.next()?.trim();
    let col: String = parts
        .next()?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    (line.parse::<u32>().is_ok() && !col.is_empty()).then(|| format!("Byteport:{line}:{col}"))
}

impl DeployView {
    /// From a stored deploy.
    pub fn new(d: &Deploy) -> DeployView {
        DeployView {
            number: d.number,
            commit: d.commit.clone(),
            git_ref: d.git_ref.clone(),
            author: d.commit_author.clone(),
            message: d.commit_message.clone(),
            pushed_by: d.pushed_by.clone(),
            status: d.status.as_str().to_string(),
            timings: d.timings.clone(),
            manifest_location: d.failure_reason.as_deref().and_then(manifest_location),
            failure_reason: d.failure_reason.clone(),
            rollback_of: d.rollback_of,
            job_id: d.job_id,
            created_at: d.created_at,
            finished_at: d.finished_at,
            can_roll_back_to: d.status == DeployStatus::Superseded && d.artifact.is_some(),
        }
    }

    /// The commit, shortened.
    pub fn short_commit(&self) -> &str {
        short(&self.commit)
    }

    /// `build 12.3 s · boot 2.1 s · …` in pipeline order.
    pub fn timings_text(&self) -> String {
        let order = ["manifest", "build", "boot", "health", "switch"];
        let mut phases: Vec<(&String, &i64)> = self.timings.iter().collect();
        phases.sort_by_key(|(p, _)| order.iter().position(|o| o == p).unwrap_or(order.len()));
        phases
            .iter()
            .map(|(p, ms)| format!("{p} {:.1} s", **ms as f64 / 1000.0))
            .collect::<Vec<_>>()
            .join(" · ")
    }

    /// When it started, for people.
    pub fn created(&self) -> String {
        platform::time::fmt_time(self.created_at)
    }
}

/// Everything the app page shows.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AppDetail {
    /// The summary line.
    pub summary: AppSummary,
    /// Deploys, newest first.
    pub deploys: Vec<DeployView>,
    /// Recent jobs, newest first.
    pub jobs: Vec<JobView>,
    /// Config vars.
    pub config: BTreeMap<String, String>,
    /// Secrets: names and update times only.
    #[schema(value_type = Vec<SecretView>)]
    pub secrets: Vec<SecretInfo>,
    /// Collaborators (besides the owner).
    pub collaborators: Vec<String>,
    /// May the viewer manage collaborators (the owner, or an operator)?
    pub can_manage_collaborators: bool,
}

/// A secret's name and when it was set (never its value).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SecretView {
    /// The name.
    pub name: String,
    /// Last set at, Unix ms.
    pub updated_at: i64,
}

/// The first 12 characters of a commit id.
pub fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

/// `3d 4h`, `2h 5m`, `4m 10s`, `12s`.
pub fn fmt_duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {s}s")
    } else {
        format!("{s}s")
    }
}

/// `1.5 GiB`, `320 MiB`, `12 KiB`.
pub fn fmt_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

/// Percent-encodes a URL component.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The app if `viewer` may see it; unknown and foreign apps are the same
/// 404.
pub async fn visible_app(ctx: &Ctx, viewer: &Viewer, app: &str) -> Result<App, Error> {
    let store = &ctx.platform().store;
    if platform::store::validate_dns_label("app", app).is_err() {
        return Err(Error::no_app(app));
    }
    let found = store.app(app).await?.ok_or_else(|| Error::no_app(app))?;
    if viewer.operator || store.can_access(&viewer.user, app).await? {
        Ok(found)
    } else {
        Err(Error::no_app(app))
    }
}

/// The apps `viewer` may see.
pub async fn visible_apps(ctx: &Ctx, viewer: &Viewer) -> Result<Vec<App>, Error> {
    let who = (!viewer.operator).then_some(viewer.user.as_str());
    Ok(ctx.platform().store.list_apps(who).await?)
}

/// One app's summary, given the running VMs.
pub async fn summary(
    ctx: &Ctx,
    app: &App,
    running: &HashMap<String, VmStatus>,
) -> Result<AppSummary, Error> {
    let store = &ctx.platform().store;
    let live = store
        .live_deploy(&app.name)
        .await?
        .map(|d| (d.number, d.commit));
    let latest_failed = store
        .list_deploys(&app.name, 1)
        .await?
        .first()
        .is_some_and(|d| d.status == DeployStatus::Failed);
    let active = store.active_jobs(&app.name).await?;
    Ok(summarize(ctx, app, live, latest_failed, active, running))
}

/// The summary from what the store said about the app.
fn summarize(
    ctx: &Ctx,
    app: &App,
    live: Option<(i64, String)>,
    latest_failed: bool,
    active: Vec<platform::store::JobRow>,
    running: &HashMap<String, VmStatus>,
) -> AppSummary {
    let active: Vec<Job> = active.into_iter().map(Job::from_row).collect();
    let vm = running.get(&app.name);
    let running_job = active
        .iter()
        .find(|j| j.state == platform::JobState::Running)
        .or(active.first());
    let recovering = active
        .iter()
        .any(|j| matches!(j.spec, JobSpec::Recover { .. }));
    let changing = active.iter().any(|j| {
        matches!(
            j.spec,
            JobSpec::Deploy { .. }
                | JobSpec::Restart
                | JobSpec::Rollback { .. }
                | JobSpec::Start
                | JobSpec::Stop
                | JobSpec::Restore
        )
    });
    let state = if recovering && vm.is_none() {
        "crashed-restarting"
    } else if changing {
        "deploying"
    } else if app.stopped {
        "stopped"
    } else if vm.is_some() {
        "running"
    } else if latest_failed {
        "failed"
    } else if live.is_none() {
        "new"
    } else {
        "down"
    };
    AppSummary {
        name: app.name.clone(),
        owner: app.owner.clone(),
        state: state.to_string(),
        live_deploy: live.as_ref().map(|d| d.0),
        live_commit: live.map(|d| d.1),
        url: ctx.platform().app_url(&app.name),
        driver: ctx.host().driver(),
        uptime_secs: vm.map(|v| v.uptime_secs),
        crashes: vm.map(|v| v.crashes).unwrap_or(0),
        running_job: running_job.map(JobView::new),
    }
}

/// The running VMs by app.
pub fn running(ctx: &Ctx) -> HashMap<String, VmStatus> {
    ctx.platform()
        .status()
        .into_iter()
        .map(|s| (s.app.clone(), s))
        .collect()
}

/// Summaries of every app `viewer` may see (a few queries in all).
pub async fn app_list(ctx: &Ctx, viewer: &Viewer) -> Result<Vec<AppSummary>, Error> {
    let running = running(ctx);
    let who = (!viewer.operator).then_some(viewer.user.as_str());
    let overview = ctx.platform().store.apps_overview(who).await?;
    Ok(overview
        .into_iter()
        .map(|o| summarize(ctx, &o.app, o.live, o.latest_failed, o.active, &running))
        .collect())
}

/// Deploys shown on the app page.
pub const DEPLOYS_SHOWN: i64 = 30;
/// Jobs shown on the app page.
pub const JOBS_SHOWN: i64 = 15;

/// Deploys and jobs of an app, newest first.
pub async fn history(ctx: &Ctx, app: &str) -> Result<(Vec<DeployView>, Vec<JobView>), Error> {
    let store = &ctx.platform().store;
    let deploys = store
        .list_deploys(app, DEPLOYS_SHOWN)
        .await?
        .iter()
        .map(DeployView::new)
        .collect();
    let jobs = store
        .list_jobs(app, JOBS_SHOWN)
        .await?
        .into_iter()
        .map(|r| JobView::new(&Job::from_row(r)))
        .collect();
    Ok((deploys, jobs))
}

/// Everything about one app the viewer may see.
pub async fn app_detail(ctx: &Ctx, viewer: &Viewer, app: &App) -> Result<AppDetail, Error> {
    let store = &ctx.platform().store;
    let summary = summary(ctx, app, &running(ctx)).await?;
    let (deploys, jobs) = history(ctx, &app.name).await?;
    Ok(AppDetail {
        summary,
        deploys,
        jobs,
        config: store.config_vars(&app.name).await?,
        secrets: store.secrets_info(&app.name).await?,
        collaborators: app.collaborators.clone(),
        can_manage_collaborators: viewer.operator || app.owner == viewer.user,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_manifest_locations() {
        assert_eq!(
            manifest_location("invalid Byteport manifest: Byteport:11:8: unknown key").as_deref(),
            Some("Byteport:11:8")
        );
        assert_eq!(manifest_location("build failed: exit 2"), None);
        assert_eq!(manifest_location("Byteport:x:1"), None);
    }

    #[test]
    fn formats() {
        assert_eq!(fmt_duration(12), "12s");
        assert_eq!(fmt_duration(3 * 3600 + 120), "3h 2m");
        assert_eq!(fmt_bytes(1536), "1.5 KiB");
        assert_eq!(url_encode("/apps/x?a=b c"), "/apps/x%3Fa%3Db%20c");
    }
}
