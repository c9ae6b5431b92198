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
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let cli = Cli::parse();
    tillmesh::logging::init(&cli);
    match tillmesh::core::run(cli, raw) {
        Ok(0) => {}
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(exit::code(&e));
        }
    }
}
