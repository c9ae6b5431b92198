//! `tillmesh`: the daemon and operator command line of a till.
//!
//! This binary is glue: it parses arguments, opens the till's store from its home
//! directory, calls the libraries and formats what they return. Exit codes are
//! listed in [`exit`] and docs/OPERATIONS.md.

mod admin;
mod api;
mod args;
mod backups;
mod client;
mod commands;
mod daemon;
mod demo;
mod enrol;
mod events;
mod exit;
mod export;
mod output;
mod status;

use clap::Parser;

use crate::args::{Cli, Command};
use crate::commands::Ctx;

fn run(cli: Cli, raw: Vec<String>) -> anyhow::Result<i32> {
    let ctx = Ctx::new(&cli)?;
    let mut out = std::io::stdout().lock();
    match &cli.command {
        Command::Init(a) => commands::init(&ctx, a, &mut out)?,
        Command::Demo(a) => demo::run(a)?,
        Command::Run(a) => daemon::run(&ctx, a)?,
        Command::Events(a) => client::follow_events(&ctx.home, a, &mut out)?,
        Command::Sale(a) => client::ring(&ctx, a, &mut out)?,
        Command::Join(a) => enrol::join(&ctx, a, &mut out)?,
        Command::Relay(a) => enrol::relay(&ctx.home, a)?,
        Command::Restore(a) => backups::restore(&ctx.home, a, &mut out)?,
        Command::Recovery(
            c @ (args::RecoveryCmd::Restore { .. } | args::RecoveryCmd::Drill { .. }),
        ) => backups::recovery(&ctx.home, c, &mut out)?,
        other => loop {
            // While the daemon holds the store, the command runs in the daemon.
            if let Some(api) = client::discover(&ctx.home) {
                match client::exec(&api, &raw)? {
                    Some(reply) => {
                        use std::io::Write;
                        out.write_all(reply.stdout.as_bytes())?;
                        eprint!("{}", reply.stderr);
                        return Ok(reply.code);
                    }
                    // Nobody answers: the daemon died without cleaning up.
                    None => {
                        let _ = std::fs::remove_file(client::api_file(&ctx.home));
                    }
                }
            }
            // The store is held by a daemon that is starting (its API comes up
            // in a moment) or by another command: wait, then go through the
            // daemon or open it.
            let Some(mut store) = ctx.open_waiting(commands::STORE_PATIENCE, || {
                client::discover(&ctx.home).is_some()
            })?
            else {
                continue;
            };
            commands::dispatch(&mut store, &ctx.home, other, &mut out)?;
            match other {
                Command::Status(a) if a.watch.is_some() => {
                    drop(store);
                    std::thread::sleep(std::time::Duration::from_secs(a.watch.unwrap_or(2).max(1)));
                    println!();
                }
                _ => break,
            }
        },
    }
    Ok(0)
}

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
    match run(cli, raw) {
        Ok(0) => {}
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(exit::code(&e));
        }
    }
}
