//! `platform`: BytePort's control core — one owner for everything that
//! happens to an app.
//!
//! Flow of a change: a request (a push, `restart`, a crash noticed by the
//! [`supervise`] task) becomes a job in the queue ([`jobs`]: written to the
//! [`store`] first, claimed by this node's dispatcher, one job per app at a
//! time); the job runs the [`pipeline`] (manifest → build → boot → health
//! → switch) or a [`lifecycle`] operation, which boot VMs and switch the
//! router ([`boot`]); everything that happens is an event in the app's
//! stream ([`events`]), which every reader follows: `git push`, `logs -f`,
//! the dashboard. After a deploy goes live, a [`portfolio`] job drafts its
//! page for the owner's review.
//!
//! The public handle is [`Platform`]: [`Platform::submit`] queues a job
//! and follows it, [`Platform::cancel`] stops one, [`Events::follow`]
//! reads an app's stream, [`Platform::status`] lists running VMs.
//!
//! It has no CLI and no HTTP: the `byteport` binary wires it to gitd, the
//! control socket and the dashboard; the [`router`] crate serves its
//! routes.
#![deny(missing_docs)]

pub mod apps;
pub mod boot;
pub mod database;
pub mod egress;
pub mod events;
pub mod jobs;
pub mod lifecycle;
pub mod metrics;
pub mod pipeline;
pub mod portfolio;
pub mod release;
pub mod repo_files;
pub mod run_command;
pub mod scale;
pub mod store;
pub mod supervise;
pub mod time;
pub mod volumes;

pub use apps::{Platform, PlatformSettings, VmStatus};
pub use events::{Event, EventKind, Events};
pub use jobs::follow::{JobFollower, JobUpdate};
pub use jobs::{Job, JobError, JobSpec, JobState};
