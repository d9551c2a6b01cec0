//! `/byteport/init.json`: what the host tells PID 1 (written by the builder
//! into the initramfs).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The whole init configuration.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
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
    /// Environment for every process (config vars and secrets: never
    /// printed, see the `Debug` impl).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory of the processes.
    #[serde(default = "default_workdir")]
    pub workdir: String,
    /// Processes to start and keep running.
    pub processes: Vec<Process>,
    /// Static network set-up (QEMU user-mode networking), if any.
    pub network: Option<Network>,
    /// Where PID 1 ships its records (app output and events) to the host: a
    /// channel only PID 1 holds, so an app cannot forge them.
    pub records: RecordChannel,
    /// What else runs over virtio-vsock (BytePort's own VMM), if anything:
    /// host connections to the app, and the app's way out.
    #[serde(default)]
    pub vsock: Option<VsockLink>,
    /// Where the init probes, from inside the guest, that the app listens
    /// (the `LISTENING` event; the host's health check waits for it).
    #[serde(default)]
    pub listen_check: Option<ListenCheck>,
    /// Persistent volumes to mount before any process starts.
    #[serde(default)]
    pub volumes: Vec<VolumeMount>,
    /// One-off VM (a release command, `byteport run`): every process runs
    /// once, is never restarted, and the VM powers off when the last one
    /// has exited (its `EXITED ... status=N` event carries the result).
    #[serde(default)]
    pub once: bool,
    /// A terminal for the one process of a one-off VM (`byteport run` with
    /// a TTY): its stdin, stdout and stderr are a pseudo-terminal whose
    /// bytes travel over this console's port, raw, both ways; `None`: stdin
    /// is `/dev/null` and output goes line by line into the records.
    #[serde(default)]
    pub console: Option<Console>,
}

/// Name of the virtio-serial port carrying a one-off process's terminal
/// under QEMU.
pub const CONSOLE_PORT_NAME: &str = "org.byteport.console";

/// Longest `TERM` value accepted.
pub const MAX_TERM: usize = 64;

/// A terminal for a one-off process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Console {
    /// Where the terminal's bytes travel.
    pub channel: ConsoleChannel,
    /// The process's `TERM` (e.g. `xterm-256color`).
    pub term: String,
    /// Columns of the window (0: unknown).
    pub cols: u16,
    /// Rows of the window (0: unknown).
    pub rows: u16,
}

/// Where a console's bytes travel, and its window changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ConsoleChannel {
    /// A virtio-serial port with this name (QEMU); window changes come on
    /// the records port, as `STOP` does.
    VirtioPort {
        /// The port's name (`/sys/class/virtio-ports/*/name`).
        name: String,
    },
    /// Two vsock connections to the host (own VMM), both from privileged
    /// ports, so only PID 1 can make them: the bytes on `data`, the
    /// host's `WINCH <cols> <rows>` lines on `control`.
    Vsock {
        /// Host port of the terminal's bytes.
        data: u32,
        /// Host port of the window changes.
        control: u32,
    },
}

/// Host port of a console's bytes under the own VMM.
pub const VSOCK_CONSOLE_PORT: u32 = 1101;

/// Host port of a console's window changes under the own VMM.
pub const VSOCK_CONSOLE_CONTROL_PORT: u32 = 1102;

/// Whether `t` can be a `TERM` value: 1 to [`MAX_TERM`] bytes of ASCII
/// letters, digits and `.+-_`.
pub fn is_term_name(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= MAX_TERM
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".+-_".contains(&b))
}

/// A persistent volume: an ext4 disk found by its filesystem UUID (device
/// names depend on the order the kernel probes disks in), mounted at
/// `path` and handed to the app's user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeMount {
    /// The volume's name (for messages).
    pub name: String,
    /// Filesystem UUID, `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (lowercase hex).
    pub uuid: String,
    /// Absolute mount path.
    pub path: String,
}

/// Whether `p` is a plain absolute path other than `/`: no empty, `.` or
/// `..` component, no trailing `/`, at most 255 bytes, no control
/// characters (what a volume may be mounted at).
pub fn is_plain_abs_path(p: &str) -> bool {
    p.starts_with('/')
        && p.len() > 1
        && p.len() <= 255
        && !p.ends_with('/')
        && !p.chars().any(char::is_control)
        && p.split('/')
            .skip(1)
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

/// Whether `s` is a UUID in its usual text form (8-4-4-4-12 hex digits).
pub fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12])
        && parts
            .iter()
            .all(|p| p.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl std::fmt::Debug for InitConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InitConfig")
            .field("hostname", &self.hostname)
            .field("modules", &self.modules)
            .field("root", &self.root)
            .field("user", &self.user)
            .field("env", &RedactedEnv(&self.env))
            .field("workdir", &self.workdir)
            .field("processes", &self.processes)
            .field("network", &self.network)
            .field("records", &self.records)
            .field("vsock", &self.vsock)
            .field("listen_check", &self.listen_check)
            .field("volumes", &self.volumes)
            .field("once", &self.once)
            .field("console", &self.console)
            .finish()
    }
}

/// An environment map that prints its names only: values hold secrets.
pub struct RedactedEnv<'a>(pub &'a BTreeMap<String, String>);

impl std::fmt::Debug for RedactedEnv<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.0.keys().map(|k| (k, "<redacted>")))
            .finish()
    }
}

/// Host port (on CID 2) the guest init ships its records to under
/// BytePort's own VMM; the VMM lets only guest root connect to it.
pub const VSOCK_RECORDS_PORT: u32 = 1100;

/// Name of the virtio-serial port carrying the records under QEMU.
pub const RECORDS_PORT_NAME: &str = "org.byteport.records";

/// The channel for PID 1's records. Both kinds are out of an app's reach:
/// the virtio-serial port's device node is root's (0600) and admits one
/// opener, which PID 1 is; a vsock connection to the records port is only
/// accepted from a guest port below 1024, which only root can bind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum RecordChannel {
    /// A virtio-serial port with this name (QEMU); the host also writes
    /// `STOP` lines to it.
    VirtioPort {
        /// The port's name (`/sys/class/virtio-ports/*/name`).
        name: String,
    },
    /// A vsock connection to the host (CID 2) on this port (own VMM).
    Vsock {
        /// Host port.
        port: u32,
    },
}

/// What runs over vsock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VsockLink {
    /// Guest vsock port whose connections are proxied to the app.
    pub proxy: Option<VsockProxy>,
    /// The app's outbound proxy: a TCP listener in the guest whose
    /// connections go to a host vsock port.
    #[serde(default)]
    pub egress: Option<VsockEgress>,
    /// The app's managed database: a TCP listener in the guest (e.g.
    /// `127.0.0.1:5432`) whose connections go to a host vsock port, the
    /// runtime's database door.
    #[serde(default)]
    pub database: Option<VsockEgress>,
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

/// A TCP listener in the guest relayed to a host vsock port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VsockEgress {
    /// Where the init listens in the guest, e.g. `127.0.0.1:3128`.
    pub listen: std::net::SocketAddrV4,
    /// The host (CID 2) vsock port each connection goes to.
    pub host_port: u32,
}

/// The address whose accepting connections means "the app listens".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenCheck {
    /// The process expected to listen (`web`).
    pub process: String,
    /// The address the host's forward connects to, e.g. `10.0.2.15:8080`.
    pub addr: std::net::SocketAddrV4,
}

/// The root filesystem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootFs {
    /// Block device, e.g. `/dev/vda`; used when `uuid` is not given.
    pub device: String,
    /// The filesystem's UUID: the disk that holds it is the root, whatever
    /// its name (a VM with volumes has several disks).
    #[serde(default)]
    pub uuid: Option<String>,
    /// Filesystem type, e.g. `ext4`.
    pub fstype: String,
    /// Mount read-only.
    #[serde(default)]
    pub readonly: bool,
}

/// Numeric user and group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserIds {
    /// User id: 1000 for apps, 0 only for apps whose manifest says
    /// `user root`.
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
        if (c.user.uid == 0) != (c.user.gid == 0) {
            return Err(ConfigError(
                "init.json: an app runs as root (uid 0, gid 0) or as neither".into(),
            ));
        }
        if let Some(u) = c.root.as_ref().and_then(|r| r.uuid.as_deref()) {
            if !is_uuid(u) {
                return Err(ConfigError(format!(
                    "init.json: root uuid {u:?} is not a UUID"
                )));
            }
        }
        let mut paths = std::collections::BTreeSet::new();
        for v in &c.volumes {
            if !is_plain_abs_path(&v.path) {
                return Err(ConfigError(format!(
                    "init.json: volume {} path {:?} is not a plain absolute path",
                    v.name, v.path
                )));
            }
            if !is_uuid(&v.uuid) {
                return Err(ConfigError(format!(
                    "init.json: volume {} uuid {:?} is not a UUID",
                    v.name, v.uuid
                )));
            }
            if !paths.insert(v.path.as_str()) {
                return Err(ConfigError(format!("init.json: two volumes at {}", v.path)));
            }
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
        match &c.records {
            RecordChannel::VirtioPort { name } if name.is_empty() || name.contains('/') => {
                return Err(ConfigError(format!(
                    "init.json: records port name {name:?} is not a port name"
                )));
            }
            RecordChannel::Vsock { port: u32::MAX } => {
                return Err(ConfigError(
                    "init.json: vsock ports must be below 4294967295".into(),
                ));
            }
            _ => {}
        }
        if let Some(v) = &c.vsock {
            if v.proxy
                .is_some_and(|p| p.vsock_port == u32::MAX || p.tcp_port == 0)
                || [v.egress, v.database]
                    .iter()
                    .flatten()
                    .any(|e| e.host_port == u32::MAX || e.listen.port() == 0)
            {
                return Err(ConfigError(
                    "init.json: vsock ports must be below 4294967295 and TCP ports above 0".into(),
                ));
            }
        }
        if let Some(t) = &c.console {
            if !c.once || c.processes.len() != 1 {
                return Err(ConfigError(
                    "init.json: a console is for the one process of a one-off VM".into(),
                ));
            }
            match &t.channel {
                ConsoleChannel::VirtioPort { name } if name.is_empty() || name.contains('/') => {
                    return Err(ConfigError(format!(
                        "init.json: console port name {name:?} is not a port name"
                    )));
                }
                ConsoleChannel::Vsock { data, control }
                    if data == control || [*data, *control].contains(&u32::MAX) =>
                {
                    return Err(ConfigError(format!(
                        "init.json: console vsock ports {data} and {control} must differ and be below 4294967295"
                    )));
                }
                _ => {}
            }
            if !is_term_name(&t.term) {
                return Err(ConfigError(format!(
                    "init.json: console TERM {:?} is not a terminal name",
                    t.term
                )));
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
        "root":{"device":"/dev/vda","fstype":"ext4"},"env":{"PORT":"8080","DATABASE_URL":"postgres://u:hunter2@db"},
        "workdir":"/app","processes":[{"name":"web","command":"python3 app.py"}],
        "network":{"interface":"eth0","address":"10.0.2.15","prefix":24,"gateway":"10.0.2.2"},
        "records":{"kind":"virtio_port","name":"org.byteport.records"},
        "listen_check":{"process":"web","addr":"10.0.2.15:8080"}}"#;

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
        assert_eq!(c.network.as_ref().unwrap().prefix, 24);
        assert_eq!(c.vsock, None);
        assert_eq!(
            c.records,
            RecordChannel::VirtioPort {
                name: RECORDS_PORT_NAME.into()
            }
        );
        assert_eq!(c.listen_check.as_ref().unwrap().addr.port(), 8080);
    }

    #[test]
    fn root_and_volumes_parse() {
        let text = r#"{"hostname":"a","user":{"uid":0,"gid":0},"processes":[{"name":"w","command":"x"}],
            "root":{"device":"/dev/vda","fstype":"ext4","uuid":"0123abcd-0000-4000-8000-00000000000a"},
            "records":{"kind":"vsock","port":1100},
            "volumes":[{"name":"data","uuid":"0123abcd-0000-4000-8000-00000000000b","path":"/app/instance"}]}"#;
        let c = InitConfig::parse(text.as_bytes()).unwrap();
        assert_eq!(c.user.uid, 0);
        assert_eq!(c.volumes[0].path, "/app/instance");
        assert!(c.root.unwrap().uuid.is_some());
        assert!(is_uuid("0123ABCD-0000-4000-8000-00000000000a"));
        assert!(!is_uuid("0123abcd00004000800000000000000a"));
    }

    #[test]
    fn debug_output_never_shows_env_values() {
        let c = InitConfig::parse(GOOD.as_bytes()).unwrap();
        let shown = format!("{c:?}");
        assert!(shown.contains("DATABASE_URL"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("8080\""), "values are hidden too: {shown}");
    }

    #[test]
    fn parses_a_vsock_link() {
        let text = r#"{"hostname":"a","processes":[{"name":"web","command":"x"}],
            "records":{"kind":"vsock","port":1100},
            "vsock":{"proxy":{"vsock_port":8080,"tcp_port":8080},
                     "egress":{"listen":"127.0.0.1:3128","host_port":3128}}}"#;
        let c = InitConfig::parse(text.as_bytes()).unwrap();
        assert_eq!(c.records, RecordChannel::Vsock { port: 1100 });
        assert_eq!(
            c.vsock,
            Some(VsockLink {
                proxy: Some(VsockProxy {
                    vsock_port: 8080,
                    tcp_port: 8080
                }),
                egress: Some(VsockEgress {
                    listen: "127.0.0.1:3128".parse().unwrap(),
                    host_port: 3128
                }),
                database: None,
            })
        );
        let bad = r#"{"hostname":"a","processes":[{"name":"web","command":"x"}],
            "records":{"kind":"vsock","port":1100},
            "vsock":{"proxy":{"vsock_port":8080,"tcp_port":0}}}"#;
        assert!(InitConfig::parse(bad.as_bytes())
            .unwrap_err()
            .0
            .contains("vsock"));
    }

    #[test]
    fn parses_a_database_relay_and_refuses_port_zero() {
        let with = |db: &str| {
            format!(
                r#"{{"hostname":"a","processes":[{{"name":"web","command":"x"}}],
                "records":{{"kind":"vsock","port":1100}},"vsock":{{"proxy":null,"database":{db}}}}}"#
            )
        };
        let c =
            InitConfig::parse(with(r#"{"listen":"127.0.0.1:5432","host_port":5432}"#).as_bytes())
                .unwrap();
        let link = c.vsock.unwrap();
        assert_eq!(link.egress, None);
        assert_eq!(
            link.database,
            Some(VsockEgress {
                listen: "127.0.0.1:5432".parse().unwrap(),
                host_port: 5432
            })
        );
        let bad = with(r#"{"listen":"127.0.0.1:0","host_port":5432}"#);
        assert!(InitConfig::parse(bad.as_bytes())
            .unwrap_err()
            .0
            .contains("vsock"));
    }

    #[test]
    fn refuses_bad_configs_with_reasons() {
        let rec = r#""records":{"kind":"vsock","port":1100}"#;
        for (text, why) in [
            ("".to_string(), "init.json"),
            ("{".to_string(), "init.json"),
            (
                format!(r#"{{"hostname":"a","processes":[],{rec}}}"#),
                "no processes",
            ),
            (
                format!(
                    r#"{{"hostname":"a","user":{{"uid":0,"gid":1000}},"processes":[{{"name":"w","command":"x"}}],{rec}}}"#
                ),
                "root",
            ),
            (
                format!(
                    r#"{{"hostname":"a","processes":[{{"name":"w","command":"x"}}],{rec},"volumes":[{{"name":"d","uuid":"nope","path":"/d"}}]}}"#
                ),
                "not a UUID",
            ),
            (
                format!(
                    r#"{{"hostname":"a","processes":[{{"name":"w","command":"x"}}],{rec},"volumes":[{{"name":"d","uuid":"0123abcd-0000-4000-8000-000000000000","path":"/a/../etc"}}]}}"#
                ),
                "plain absolute path",
            ),
            (
                format!(
                    r#"{{"hostname":"a","processes":[{{"name":"w","command":"x"}}],{rec},"volumes":[{{"name":"d","uuid":"0123abcd-0000-4000-8000-000000000000","path":"/d"}},{{"name":"e","uuid":"0123abcd-0000-4000-8000-000000000001","path":"/d"}}]}}"#
                ),
                "two volumes",
            ),
            (
                format!(r#"{{"hostname":"a","processes":[{{"name":"w","command":" "}}],{rec}}}"#),
                "no command",
            ),
            (
                format!(
                    r#"{{"hostname":"a","bogus":1,"processes":[{{"name":"w","command":"x"}}],{rec}}}"#
                ),
                "unknown field",
            ),
            (
                r#"{"hostname":"a","processes":[{"name":"w","command":"x"}]}"#.to_string(),
                "records",
            ),
            (
                r#"{"hostname":"a","processes":[{"name":"w","command":"x"}],
                   "records":{"kind":"virtio_port","name":"../x"}}"#
                    .to_string(),
                "port name",
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
    #[test]
    fn a_console_is_only_for_the_one_process_of_a_one_off_vm() {
        let rec = r#""records":{"kind":"virtio_port","name":"r"}"#;
        let console = |term: &str, port: &str| {
            format!(
                r#""console":{{"channel":{{"kind":"virtio_port","name":"{port}"}},"term":"{term}","cols":80,"rows":24}}"#
            )
        };
        let one = r#""processes":[{"name":"run","command":"sh"}]"#;
        let two = r#""processes":[{"name":"a","command":"sh"},{"name":"b","command":"sh"}]"#;
        let ok = format!(
            r#"{{"hostname":"a",{one},{rec},"once":true,{}}}"#,
            console("xterm-256color", CONSOLE_PORT_NAME)
        );
        let c = InitConfig::parse(ok.as_bytes()).unwrap();
        assert_eq!(c.console.as_ref().map(|t| (t.cols, t.rows)), Some((80, 24)));
        for (text, why) in [
            (
                format!(
                    r#"{{"hostname":"a",{one},{rec},{}}}"#,
                    console("xterm", "c")
                ),
                "one-off",
            ),
            (
                format!(
                    r#"{{"hostname":"a",{two},{rec},"once":true,{}}}"#,
                    console("xterm", "c")
                ),
                "one process",
            ),
            (
                format!(
                    r#"{{"hostname":"a",{one},{rec},"once":true,{}}}"#,
                    console("x\\u001b[2J", "c")
                ),
                "terminal name",
            ),
            (
                format!(
                    r#"{{"hostname":"a",{one},{rec},"once":true,{}}}"#,
                    console("xterm", "../c")
                ),
                "port name",
            ),
        ] {
            let e = InitConfig::parse(text.as_bytes()).unwrap_err().0;
            assert!(e.contains(why), "{text}: {e}");
        }
        let vsock = |data: u32, control: u32| {
            format!(
                r#"{{"hostname":"a",{one},{rec},"once":true,"console":{{"channel":{{"kind":"vsock","data":{data},"control":{control}}},"term":"xterm","cols":0,"rows":0}}}}"#
            )
        };
        let c = InitConfig::parse(vsock(1101, 1102).as_bytes()).unwrap();
        assert_eq!(
            c.console.map(|t| t.channel),
            Some(ConsoleChannel::Vsock {
                data: 1101,
                control: 1102
            })
        );
        for bad in [vsock(1101, 1101), vsock(u32::MAX, 1102)] {
            let e = InitConfig::parse(bad.as_bytes()).unwrap_err().0;
            assert!(e.contains("console vsock ports"), "{bad}: {e}");
        }
        assert!(!is_term_name(&"x".repeat(MAX_TERM + 1)));
        assert!(is_term_name("screen.xterm-256color"));
    }
}
