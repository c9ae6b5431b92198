//! `tillmesh`: the daemon and operator command line of a till.
//!
//! This binary is glue: it parses arguments, opens the till's store from its home
//! directory, calls the libraries and formats what they return. Exit codes are
//! listed in [`exit`] and docs/OPERATIONS.md.

mod args;
mod commands;
mod demo;
mod exit;
mod output;

use clap::Parser;

use crate::args::{Cli, Command};
use crate::commands::Ctx;

fn run(cli: Cli) -> anyhow::Result<()> {
    let ctx = Ctx::new(&cli)?;
    let mut out = std::io::stdout().lock();
    match &cli.command {
        Command::Init(a) => commands::init(&ctx, a, &mut out),
        Command::Demo(a) => demo::run(a),
        other => {
            let mut store = ctx.open()?;
            commands::dispatch(&mut store, &ctx.home, other, &mut out)
        }
    }
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TILLMESH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(exit::code(&e));
    }
}
