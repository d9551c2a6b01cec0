//! `byteport config show`: every setting, its value and where it came from.

use super::{ca_text, redact_url, router, Config};

impl Config {
    /// Renders `config show`: one line per setting with its source.
    pub fn render(&self) -> String {
        let mut rows: Vec<(&str, String)> = vec![
            ("home", self.home.display().to_string()),
            ("ssh_addr", self.ssh_addr.to_string()),
            ("http_addr", self.http_addr.to_string()),
            ("router_addr", self.router_addr.to_string()),
            (
                "http_trusted_proxy",
                self.http_trusted_proxy
                    .map_or_else(|| "none".to_string(), |ip| ip.to_string()),
            ),
            ("driver", self.driver.to_string()),
            ("database_url", redact_url(&self.database_url)),
            ("deploy_branches", self.deploy_branches.join(",")),
            ("ssh_max_connections", self.ssh_max_connections.to_string()),
            (
                "ssh_idle_timeout_secs",
                self.ssh_idle_timeout_secs.to_string(),
            ),
            ("max_pack_size", self.max_pack_size.to_string()),
            ("build_ca", ca_text(&self.build_ca)),
            ("ssh_max_startups", self.ssh_max_startups.to_string()),
            (
                "ssh_max_startups_per_source",
                self.ssh_max_startups_per_source.to_string(),
            ),
            (
                "ssh_handshake_timeout_secs",
                self.ssh_handshake_timeout_secs.to_string(),
            ),
            (
                "ssh_login_timeout_secs",
                self.ssh_login_timeout_secs.to_string(),
            ),
            ("max_parallel_jobs", self.max_parallel_jobs.to_string()),
            ("build_deadline_secs", self.build_deadline_secs.to_string()),
            ("job_deadline_secs", self.job_deadline_secs.to_string()),
            ("log_segment_size", self.log_segment_size.to_string()),
            ("log_retention", self.log_retention.to_string()),
            (
                "egress_allow",
                if self.egress_allow.is_empty() {
                    "none".to_string()
                } else {
                    self.egress_allow.join(",")
                },
            ),
            (
                "chromium_path",
                self.chromium_path
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "($CHROME or PATH)".into()),
            ),
            (
                "portfolio_load_timeout_secs",
                self.portfolio_load_timeout_secs.to_string(),
            ),
            (
                "llm_base_url",
                self.llm_base_url
                    .clone()
                    .unwrap_or_else(|| "(offline drafts)".into()),
            ),
            ("llm_model", self.llm_model.clone()),
            ("llm_timeout_secs", self.llm_timeout_secs.to_string()),
            ("llm_max_concurrent", self.llm_max_concurrent.to_string()),
        ];
        rows.extend(router::rows(&self.router));
        let mut out = String::new();
        for (key, value) in rows {
            let src = self
                .sources
                .get(key)
                .map(ToString::to_string)
                .unwrap_or_else(|| "default".into());
            out.push_str(&format!("{key:<27} = {value:<40} ({src})\n"));
        }
        match &self.file {
            Some(p) => out.push_str(&format!("config file                 : {}\n", p.display())),
            None => out.push_str("config file                 : none (all keys optional)\n"),
        }
        out
    }
}
