//! Which runtime driver `byteport up` boots apps with on this host, and
//! where the guest init binary is: the daemon decides, the platform runs.

use std::path::PathBuf;

use crate::config::Driver;

/// Where `byteport-init` is: `$BYTEPORT_INIT`, beside this executable, or on PATH.
pub fn find_init_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("BYTEPORT_INIT") {
        return Some(PathBuf::from(p));
    }
    let beside = std::env::current_exe()
        .ok()?
        .with_file_name("byteport-init");
    if beside.exists() {
        return Some(beside);
    }
    crate::doctor::which("byteport-init")
}

/// The runtime driver for `wanted` on a host with `facts`, or why apps
/// cannot boot.
pub fn choose_driver(
    wanted: Driver,
    facts: &crate::doctor::VirtFacts,
) -> Result<runtime::Driver, String> {
    let driver = match wanted {
        Driver::Auto => facts.auto_driver().0,
        d => d,
    };
    match driver {
        Driver::Kvm if !facts.hardware_virt_usable() => Err(format!(
            "driver = \"kvm\" asks for BytePort's own VMM, but {}; guests would not boot in useful time. Use driver = \"qemu\" (or auto)",
            facts.auto_driver().1
        )),
        Driver::Kvm => match runtime::drivers::kvm::find_vmm() {
            Some(vmm) => Ok(runtime::Driver::Kvm { vmm }),
            None => Err(
                "byteport-vmm not found beside byteport (or in $BYTEPORT_VMM): install it with `cargo install --locked --path vmm --bin byteport-vmm`".into(),
            ),
        },
        _ => match crate::doctor::which("qemu-system-x86_64") {
            Some(qemu) => Ok(runtime::Driver::Qemu {
                qemu,
                accel: if facts.hardware_virt_usable() {
                    "kvm".into()
                } else {
                    "tcg".into()
                },
            }),
            None => Err("qemu-system-x86_64 not found: apt-get install qemu-system-x86".into()),
        },
    }
}

/// The platform's settings from the daemon's configuration: the boot
/// options for the driver this host can run, or why apps cannot boot.
pub fn platform_settings(config: &crate::config::Config) -> platform::PlatformSettings {
    let facts = crate::doctor::VirtFacts::probe(std::path::Path::new("/"));
    let boot = choose_driver(config.driver, &facts).and_then(|driver| {
        let init_binary = find_init_binary().ok_or_else(|| {
            "byteport-init not found beside byteport: install it with `cargo install --locked --path runtime/guest-init`".to_string()
        })?;
        let jail = match runtime::jail::Jail::for_this_host() {
            Ok(jail) => Some(jail),
            Err(why) => {
                tracing::warn!("VMs run without their jail (own uid, namespaces, cgroup): {why}");
                None
            }
        };
        Ok(runtime::BootOptions {
            run_dir: config.home.join("run"),
            init_binary,
            driver,
            ready_timeout: std::time::Duration::from_secs(180),
            jail,
        })
    });
    platform::PlatformSettings {
        home: config.home.clone(),
        router_port: config.router_addr.port(),
        boot,
        build_ca: config.build_ca.clone(),
        jobs: platform::jobs::JobSettings {
            max_parallel: config.max_parallel_jobs,
            build_deadline: std::time::Duration::from_secs(config.build_deadline_secs),
            deadline: std::time::Duration::from_secs(config.job_deadline_secs),
            ..Default::default()
        },
        base_domain: "localhost".into(),
        portfolio: Some(portfolio_config(config)),
        portfolio_site_url: format!("http://{}/portfolio/", config.http_addr),
        egress_allow: config
            .egress_allow
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect(),
        journal: platform::events::journal::JournalSettings {
            segment_bytes: config.log_segment_size,
            retention_bytes: config.log_retention,
        },
    }
}

/// The portfolio generator's settings from the configuration.
pub fn portfolio_config(config: &crate::config::Config) -> portfolio::PortfolioConfig {
    let mut p = portfolio::PortfolioConfig::new(config.home.join("portfolio/images"));
    p.chromium_path = config.chromium_path.clone();
    p.scratch_dir = Some(config.home.join("portfolio/scratch"));
    p.load_timeout = std::time::Duration::from_secs(config.portfolio_load_timeout_secs);
    p.llm = config.llm_base_url.as_ref().map(|url| {
        let mut llm = portfolio::draft::LlmConfig::new(url.clone(), config.llm_model.clone());
        llm.api_key = std::env::var("BYTEPORT_LLM_API_KEY")
            .ok()
            .filter(|k| !k.is_empty());
        llm.timeout = std::time::Duration::from_secs(config.llm_timeout_secs);
        llm.max_concurrent = config.llm_max_concurrent;
        llm
    });
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::VirtFacts;

    fn facts(hw: bool, pvm: bool) -> VirtFacts {
        VirtFacts {
            kvm_device: true,
            kvm_openable: true,
            hw_virt_flag: hw,
            kvm_pvm: pvm,
        }
    }

    #[test]
    fn kvm_is_refused_where_guests_would_be_emulated() {
        let err = choose_driver(Driver::Kvm, &facts(false, true)).unwrap_err();
        assert!(
            err.contains("kvm_pvm") && err.contains("driver = \"qemu\""),
            "{err}"
        );
    }

    #[test]
    fn auto_takes_qemu_without_hardware_virtualization() {
        // qemu-system-x86_64 is installed wherever these tests run (.ci/run).
        match choose_driver(Driver::Auto, &facts(false, true)) {
            Ok(runtime::Driver::Qemu { accel, .. }) => assert_eq!(accel, "tcg"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn kvm_with_hardware_virtualization_needs_byteport_vmm() {
        match choose_driver(Driver::Auto, &facts(true, false)) {
            Ok(runtime::Driver::Kvm { vmm }) => assert!(vmm.exists()),
            Err(e) => assert!(e.contains("cargo install --locked --path vmm"), "{e}"),
            other => panic!("{other:?}"),
        }
    }
}
