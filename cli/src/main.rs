//! `tillmesh`: the daemon and operator command line of a till.
//!
//! This binary parses the arguments and hands them to the core (the `tillmesh`
//! library: [`tillmesh::core::run`]), which runs the command through the
//! till's daemon when one runs and in-process when none does, and prints what
//! it gives. Exit codes are listed in [`tillmesh::exit`] and
//! docs/OPERATIONS.md.

use clap::Parser;
use tillmesh::args::Cli;
use tillmesh::exit;

fn main() {
    use std::io::IsTerminal;
    // Warnings by default; iroh's relay transport reports its own shutdown
    // (`relay_recv_channel closed`) as an error when a command closes its
    // endpoint, which is no news to whoever ran it (`status` shows the relay).
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TILLMESH_LOG").unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("warn,iroh::socket::transports::relay=off")
            }),
        )
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let cli = Cli::parse();
    match tillmesh::core::run(cli, raw) {
        Ok(0) => {}
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(exit::code(&e));
        }
    }
}
