//! `portfolio`: turns a live BytePort app into a reviewed page of its
//! owner's portfolio site — screenshots in headless Chromium, facts from
//! the pushed commit, a drafted write-up, the owner's review, and a static
//! site served, exported or pushed to a git remote.
//!
//! The crate owns the portfolio and nothing else: it never opens the
//! platform's database (the platform implements [`review::PortfolioStore`]),
//! never reads config files or secrets (the caller passes
//! [`PortfolioConfig`] and an API key), and never learns an app's env.
//!
//! ```no_run
//! # async fn demo<S: portfolio::review::PortfolioStore>(store: S) -> Result<(), Box<dyn std::error::Error>> {
//! use portfolio::{Portfolio, PortfolioConfig, RefreshRequest};
//! let portfolio = Portfolio::new(PortfolioConfig::new("/var/lib/byteport/portfolio/images"), store)?;
//! let outcome = portfolio
//!     .refresh(RefreshRequest {
//!         app: "hello".into(),
//!         repo_path: "/var/lib/byteport/repos/hello.git".into(),
//!         commit: "0123456789abcdef0123456789abcdef01234567".into(),
//!         live_url: Some("http://hello.localhost:8000".into()),
//!         repository_url: None,
//!         deploy: Some(4),
//!     })
//!     .await?;
//! println!("draft v{} in {:?}", outcome.version.unwrap().number, outcome.timings);
//! # Ok(()) }
//! ```
//!
//! Modules in pipeline order: [`facts`], [`capture`], [`draft`], [`review`],
//! [`site`]; [`refresh`] runs the first four.
#![deny(missing_docs)]

pub mod capture;
pub mod dates;
pub mod draft;
pub mod facts;
pub mod refresh;
pub mod review;
pub mod site;

pub use refresh::{
    PhaseTimings, Portfolio, PortfolioConfig, RefreshError, RefreshOutcome, RefreshRequest,
};
