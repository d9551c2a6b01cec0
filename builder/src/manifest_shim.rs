//! Mirror of the `manifest-spec` contract until branch `manifest` lands (replaced by the real crate on merge); its `parse` always errors.
#![allow(missing_docs, dead_code)]
use std::collections::BTreeMap;
pub const MANIFEST_FILE_NAME: &str = "Byteport";
#[derive(Debug)]
pub struct Diagnostics(pub String);
impl std::fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
pub fn parse(_s: &[u8], origin: &str) -> Result<Manifest, Diagnostics> {
    Err(Diagnostics(format!(
        "{origin}: manifest-spec is not merged into the builder branch yet"
    )))
}
pub struct Manifest {
    pub app: String,
    pub base: Base,
    pub packages: Vec<String>,
    pub build: Vec<BuildStep>,
    pub env: BTreeMap<String, String>,
    pub secrets: Vec<Secret>,
    pub vm: VmResources,
    pub web: Option<WebProcess>,
    pub workers: Vec<Worker>,
    pub domains: Vec<String>,
}
pub enum Base {
    Scratch,
    Busybox,
    Debian { suite: String },
}
pub enum BuildStep {
    Copy { from: String, to: String },
    Workdir { path: String },
    Run { command: String },
}
pub struct VmResources {
    pub cpus: u32,
    pub memory_bytes: u64,
    pub disk_bytes: u64,
}
pub struct WebProcess {
    pub run: String,
    pub port: u16,
    pub health: Option<HealthCheck>,
}
pub struct HealthCheck {
    pub method: String,
    pub path: String,
    pub interval_ms: u64,
    pub timeout_ms: u64,
}
pub struct Worker {
    pub name: String,
    pub run: String,
}
pub struct Secret {
    pub name: String,
    pub build: bool,
}
