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
    match &cli.command {
        Command::Init(a) => commands::init(&ctx, a),
        Command::Product(c) => commands::product(&ctx, c),
        Command::Sale(a) => commands::sale(&ctx, a),
        Command::Void(a) => commands::void(&ctx, a),
        Command::Refund(a) => commands::refund(&ctx, a),
        Command::Sales(a) => commands::sales(&ctx, a),
        Command::Stock(a) => commands::stock(&ctx, a),
        Command::Conflicts(a) => commands::conflicts(&ctx, a),
        Command::Audit(a) => commands::audit(&ctx, a),
        Command::Info(f) => commands::info(&ctx, f.json),
        Command::Demo(a) => demo::run(a),
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
