//! `byteport-vmm`: the VMM as a standalone (static-linkable) binary, e.g. for the
//! nested test host. `byteport vm ARGS` runs it with the same arguments.

use clap::Parser;

#[derive(Parser)]
#[command(name = "byteport-vmm", about = "BytePort's microVM monitor")]
struct Args {
    /// Directory holding per-VM control sockets.
    #[arg(long, default_value = "/run/byteport-vmm")]
    runtime_dir: std::path::PathBuf,
    #[command(subcommand)]
    cmd: vmm::cli::VmCommand,
}

fn main() {
    let a = Args::parse();
    if let Err(e) = vmm::cli::run(a.cmd, &a.runtime_dir) {
        eprintln!("byteport-vmm: {e}");
        std::process::exit(1);
    }
}
