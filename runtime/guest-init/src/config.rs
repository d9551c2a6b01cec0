//! `/byteport/init.json`: what the host tells PID 1 (written by the builder
//! into the initramfs).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The whole init configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitConfig {
    /// Host name inside the guest (the app's name).
    pub hostname: String,
    /// Kernel modules to load, in order (paths inside the initramfs).
    #[serde(default)]
    pub modules: Vec<String>,
    /// The root filesystem to switch to; `None` runs from the initramfs.
    pub root: Option<RootFs>,
    /// Unprivileged user the app runs as.
    #[serde(default = "default_user")]
    pub user: UserIds,
    /// Environment for every process.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory of the processes.
    #[serde(default = "default_workdir")]
    pub workdir: String,
    /// Processes to start and keep running.
    pub processes: Vec<Process>,
    /// Static network set-up (QEMU user-mode networking), if any.
    pub network: Option<Network>,
    /// The host link over virtio-vsock (BytePort's own VMM), if any: log
    /// records go to the host over it and host connections reach the app.
    #[serde(default)]
    pub vsock: Option<VsockLink>,
}

/// Host port (on CID 2) the guest init ships its log records to.
pub const VSOCK_LOG_PORT: u32 = 1100;

/// What runs over vsock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VsockLink {
    /// Host port the init connects to for its log records (else the serial
    /// console carries them).
    #[serde(default = "default_log_port")]
    pub log_port: u32,
    /// Guest vsock port whose connections are proxied to the app.
    pub proxy: Option<VsockProxy>,
}

fn default_log_port() -> u32 {
    VSOCK_LOG_PORT
}

/// A vsock port proxied to a TCP port on the guest's loopback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VsockProxy {
    /// Port the init listens on (any CID may connect; the host is CID 2).
    pub vsock_port: u32,
    /// The app's TCP port on 127.0.0.1.
    pub tcp_port: u16,
}

/// The root filesystem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootFs {
    /// Block device, e.g. `/dev/vda`.
    pub device: String,
    /// Filesystem type, e.g. `ext4`.
    pub fstype: String,
    /// Mount read-only.
    #[serde(default)]
    pub readonly: bool,
}

/// Numeric user and group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserIds {
    /// User id (never 0 for apps).
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

fn default_user() -> UserIds {
    UserIds {
        uid: 1000,
        gid: 1000,
    }
}

fn default_workdir() -> String {
    "/".into()
}

/// One supervised process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Process {
    /// `web` or a worker's name; prefixes its log lines.
    pub name: String,
    /// The command line (run by `/bin/sh -c` when the rootfs has a shell).
    pub command: String,
}

/// A static IPv4 set-up for one interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// Interface name, e.g. `eth0`.
    pub interface: String,
    /// Address, e.g. `10.0.2.15`.
    pub address: std::net::Ipv4Addr,
    /// Prefix length, e.g. 24.
    pub prefix: u8,
    /// Default gateway.
    pub gateway: Option<std::net::Ipv4Addr>,
}

/// Why the configuration is unusable.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl InitConfig {
    /// Parses and checks the configuration.
    pub fn parse(text: &[u8]) -> Result<InitConfig, ConfigError> {
        if text.len() > 1 << 20 {
            return Err(ConfigError(format!(
                "init.json is {} bytes; limit 1 MiB",
                text.len()
            )));
        }
        let c: InitConfig =
            serde_json::from_slice(text).map_err(|e| ConfigError(format!("init.json: {e}")))?;
        if c.user.uid == 0 {
            return Err(ConfigError(
                "init.json: apps never run as root (uid 0)".into(),
            ));
        }
        if c.processes.is_empty() {
            return Err(ConfigError("init.json: no processes to run".into()));
        }
        if let Some(n) = &c.network {
            if n.prefix > 32 {
                return Err(ConfigError(format!(
                    "init.json: prefix /{} is not IPv4",
                    n.prefix
                )));
            }
        }
        if let Some(v) = &c.vsock {
            if v.log_port == u32::MAX
                || v.proxy
                    .is_some_and(|p| p.vsock_port == u32::MAX || p.tcp_port == 0)
            {
                return Err(ConfigError(
                    "init.json: vsock ports must be below 4294967295 and the TCP port above 0"
                        .into(),
                ));
            }
        }
        for p in &c.processes {
            if p.command.trim().is_empty() || p.name.is_empty() {
                return Err(ConfigError(format!(
                    "init.json: process `{}` has no command",
                    p.name
                )));
            }
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"hostname":"hello","modules":["/lib/modules/virtio_ring.ko"],
        "root":{"device":"/dev/vda","fstype":"ext4"},"env":{"PORT":"8080"},"workdir":"/app",
        "processes":[{"name":"web","command":"python3 app.py"}],
        "network":{"interface":"eth0","address":"10.0.2.15","prefix":24,"gateway":"10.0.2.2"}}"#;

    #[test]
    fn parses_a_full_config_with_defaults() {
        let c = InitConfig::parse(GOOD.as_bytes()).unwrap();
        assert_eq!(
            c.user,
            UserIds {
                uid: 1000,
                gid: 1000
            }
        );
        assert_eq!(c.processes[0].name, "web");
        assert_eq!(c.network.unwrap().prefix, 24);
        assert_eq!(c.vsock, None);
    }

    #[test]
    fn parses_a_vsock_link() {
        let text = r#"{"hostname":"a","processes":[{"name":"web","command":"x"}],
            "vsock":{"proxy":{"vsock_port":8080,"tcp_port":8080}}}"#;
        let c = InitConfig::parse(text.as_bytes()).unwrap();
        assert_eq!(
            c.vsock,
            Some(VsockLink {
                log_port: VSOCK_LOG_PORT,
                proxy: Some(VsockProxy {
                    vsock_port: 8080,
                    tcp_port: 8080
                })
            })
        );
        let bad = r#"{"hostname":"a","processes":[{"name":"web","command":"x"}],
            "vsock":{"proxy":{"vsock_port":8080,"tcp_port":0}}}"#;
        assert!(InitConfig::parse(bad.as_bytes())
            .unwrap_err()
            .0
            .contains("vsock"));
    }

    #[test]
    fn refuses_bad_configs_with_reasons() {
        for (text, why) in [
            ("", "init.json"),
            ("{", "init.json"),
            (r#"{"hostname":"a","processes":[]}"#, "no processes"),
            (
                r#"{"hostname":"a","user":{"uid":0,"gid":0},"processes":[{"name":"w","command":"x"}]}"#,
                "root",
            ),
            (
                r#"{"hostname":"a","processes":[{"name":"w","command":" "}]}"#,
                "no command",
            ),
            (
                r#"{"hostname":"a","bogus":1,"processes":[{"name":"w","command":"x"}]}"#,
                "unknown field",
            ),
        ] {
            let e = InitConfig::parse(text.as_bytes()).unwrap_err().0;
            assert!(e.contains(why), "{text}: {e}");
        }
        assert!(InitConfig::parse(&vec![b' '; (1 << 20) + 1])
            .unwrap_err()
            .0
            .contains("limit"));
    }
}
