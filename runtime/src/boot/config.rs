//! The guest init's configuration for one VM (`/byteport/init.json`), per
//! driver: QEMU gets a static network (user-mode, `restrict=on`) and its
//! records on a virtio-serial port; the own VMM gets no network and
//! everything over vsock. Both get the listen check (where the app must
//! accept, seen from inside the guest) and, if the app may go out, its proxy
//! in `HTTP_PROXY`/`HTTPS_PROXY`.

use std::net::{Ipv4Addr, SocketAddrV4};

use guest_init::config::{
    Console, ConsoleChannel, InitConfig, ListenCheck, Network, Process, RecordChannel, RootFs,
    UserIds, CONSOLE_PORT_NAME, RECORDS_PORT_NAME, VSOCK_CONSOLE_CONTROL_PORT, VSOCK_CONSOLE_PORT,
    VSOCK_RECORDS_PORT,
};

use super::{AppSpec, Driver};
use crate::drivers::qemu::{GATEWAY_IP, GUEST_IP};
use crate::egress::{PROXY_PORT, QEMU_GUEST_ADDR};

/// The process whose port the health check waits for.
pub const WEB: &str = "web";

/// The app's proxy URL inside the guest under `driver`.
pub fn proxy_url(driver: &Driver) -> String {
    match driver {
        Driver::Qemu { .. } => format!("http://{QEMU_GUEST_ADDR}:{PROXY_PORT}"),
        Driver::Kvm { .. } => format!("http://{}:{PROXY_PORT}", Ipv4Addr::LOCALHOST),
    }
}

/// The guest-init configuration for `spec` under `driver` (modules as paths
/// in the initramfs).
pub fn init_config(spec: &AppSpec, driver: &Driver, modules: Vec<String>) -> InitConfig {
    let (network, records, vsock, listen_ip) = match driver {
        Driver::Qemu { .. } => (
            Some(Network {
                interface: "eth0".into(),
                address: GUEST_IP,
                prefix: 24,
                gateway: Some(GATEWAY_IP),
            }),
            RecordChannel::VirtioPort {
                name: RECORDS_PORT_NAME.into(),
            },
            None,
            GUEST_IP,
        ),
        Driver::Kvm { .. } => (
            None,
            RecordChannel::Vsock {
                port: VSOCK_RECORDS_PORT,
            },
            Some(crate::drivers::kvm::init_link(
                spec.port,
                spec.egress.is_some(),
                spec.database.is_some(),
            )),
            Ipv4Addr::LOCALHOST,
        ),
    };
    let mut env = spec.env.clone();
    if let Some(port) = spec.port {
        env.entry("PORT".into()).or_insert_with(|| port.to_string());
    }
    if spec.egress.is_some() {
        let url = proxy_url(driver);
        for k in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
            env.entry(k.into()).or_insert_with(|| url.clone());
        }
        for k in ["NO_PROXY", "no_proxy"] {
            env.entry(k.into())
                .or_insert_with(|| "localhost,127.0.0.1".into());
        }
    }
    let has_web = spec.processes.iter().any(|(n, _)| n == WEB);
    InitConfig {
        hostname: spec.app.clone(),
        modules,
        root: Some(RootFs {
            device: "/dev/vda".into(),
            uuid: None,
            fstype: "ext4".into(),
            readonly: false,
        }),
        user: UserIds {
            uid: spec.uid,
            gid: spec.gid,
        },
        env,
        workdir: spec.workdir.clone(),
        processes: spec
            .processes
            .iter()
            .map(|(name, command)| Process {
                name: name.clone(),
                command: command.clone(),
            })
            .collect(),
        network,
        records,
        vsock,
        listen_check: spec
            .port
            .filter(|_| has_web && !spec.one_off)
            .map(|port| ListenCheck {
                process: WEB.into(),
                addr: SocketAddrV4::new(listen_ip, port),
            }),
        // Filled in by the boot once the volumes are claimed (their
        // filesystem UUIDs are known then).
        volumes: Vec::new(),
        once: spec.one_off,
        console: spec.console.as_ref().map(|t| Console {
            channel: match driver {
                Driver::Qemu { .. } => ConsoleChannel::VirtioPort {
                    name: CONSOLE_PORT_NAME.into(),
                },
                Driver::Kvm { .. } => ConsoleChannel::Vsock {
                    data: VSOCK_CONSOLE_PORT,
                    control: VSOCK_CONSOLE_CONTROL_PORT,
                },
            },
            term: t.term.clone(),
            cols: t.cols,
            rows: t.rows,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn spec() -> AppSpec {
        AppSpec {
            app: "hello".into(),
            deploy: 3,
            kernel: "/k".into(),
            modules_dir: None,
            rootfs: "/r".into(),
            cpus: 1,
            memory_mib: 256,
            processes: vec![("web".into(), "python3 app.py".into())],
            port: Some(8080),
            env: BTreeMap::from([
                ("GREETING".into(), "hi".into()),
                ("DATABASE_URL".into(), "postgres://u:hunter2@db/x".into()),
            ]),
            uid: 1000,
            gid: 1000,
            workdir: "/app".into(),
            egress: None,
            database: None,
            volumes: vec![],
            one_off: false,
            console: None,
        }
    }

    #[test]
    fn qemu_config_carries_the_app_port_network_and_records_port() {
        let qemu = Driver::Qemu {
            qemu: "/q".into(),
            accel: "tcg".into(),
        };
        let c = init_config(&spec(), &qemu, vec!["/lib/modules/00-virtio.ko".into()]);
        assert_eq!(c.env["PORT"], "8080");
        assert_eq!(c.env["GREETING"], "hi");
        assert!(!c.env.contains_key("HTTP_PROXY"), "no egress, no proxy");
        assert_eq!(c.network.as_ref().unwrap().address, GUEST_IP);
        assert!(c.vsock.is_none());
        assert!(matches!(c.records, RecordChannel::VirtioPort { .. }));
        assert_eq!(
            c.listen_check.as_ref().unwrap().addr.to_string(),
            "10.0.2.15:8080"
        );
        // What the runtime writes, the guest init accepts.
        let json = serde_json::to_vec(&c).unwrap();
        assert_eq!(InitConfig::parse(&json).unwrap(), c);
    }

    #[test]
    fn kvm_config_uses_vsock_for_everything() {
        let mut s = spec();
        s.egress = Some(crate::egress::EgressEndpoint::Unix(
            "/run/egress.sock".into(),
        ));
        let k = init_config(&s, &Driver::Kvm { vmm: "/v".into() }, vec![]);
        assert!(k.network.is_none());
        assert_eq!(
            k.records,
            RecordChannel::Vsock {
                port: VSOCK_RECORDS_PORT
            }
        );
        let link = k.vsock.as_ref().expect("a vsock link");
        assert_eq!(link.proxy.as_ref().map(|p| p.tcp_port), Some(8080));
        assert!(link.egress.is_some());
        assert_eq!(k.env["HTTPS_PROXY"], "http://127.0.0.1:3128");
        assert_eq!(
            k.listen_check.as_ref().unwrap().addr.to_string(),
            "127.0.0.1:8080"
        );
        let json = serde_json::to_vec(&k).unwrap();
        assert_eq!(InitConfig::parse(&json).unwrap(), k);
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let s = spec();
        let shown = format!("{s:?}");
        assert!(
            shown.contains("DATABASE_URL") && !shown.contains("hunter2"),
            "{shown}"
        );
        let c = init_config(&s, &Driver::Kvm { vmm: "/v".into() }, vec![]);
        assert!(!format!("{c:?}").contains("hunter2"));
    }
    #[test]
    fn a_console_reaches_the_guest_config_as_its_port_and_window() {
        let mut s = spec();
        s.one_off = true;
        s.console = Some(crate::Tty {
            term: "xterm-256color".into(),
            cols: 120,
            rows: 40,
        });
        let qemu = Driver::Qemu {
            qemu: "/q".into(),
            accel: "tcg".into(),
        };
        let c = init_config(&s, &qemu, vec![]);
        assert_eq!(
            c.console,
            Some(Console {
                channel: ConsoleChannel::VirtioPort {
                    name: CONSOLE_PORT_NAME.into()
                },
                term: "xterm-256color".into(),
                cols: 120,
                rows: 40,
            })
        );
        let json = serde_json::to_vec(&c).unwrap();
        assert_eq!(InitConfig::parse(&json).unwrap(), c);
        assert!(init_config(&spec(), &qemu, vec![]).console.is_none());
        let kvm = init_config(&s, &Driver::Kvm { vmm: "/v".into() }, vec![]);
        assert_eq!(
            kvm.console.map(|t| t.channel),
            Some(ConsoleChannel::Vsock {
                data: VSOCK_CONSOLE_PORT,
                control: VSOCK_CONSOLE_CONTROL_PORT
            })
        );
    }
    #[test]
    fn a_console_is_refused_without_a_one_off_vm_or_with_a_bad_term() {
        use crate::boot::start::check_console;
        let mut s = spec();
        assert!(check_console(&s).is_ok(), "no console, nothing to check");
        s.console = Some(crate::Tty {
            term: "xterm".into(),
            cols: 80,
            rows: 24,
        });
        let e = check_console(&s).unwrap_err().to_string();
        assert!(e.contains("one-off"), "{e}");
        s.one_off = true;
        assert!(check_console(&s).is_ok());
        s.processes.push(("worker".into(), "sleep 1".into()));
        let e = check_console(&s).unwrap_err().to_string();
        assert!(e.contains("one command"), "{e}");
        s.processes.pop();
        s.console.as_mut().unwrap().term = "xterm\n".into();
        let e = check_console(&s).unwrap_err().to_string();
        assert!(e.contains("not a terminal name"), "{e}");
    }
}
