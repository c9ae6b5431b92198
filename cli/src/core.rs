//! The till's application core: one request type ([`Request`]) and one
//! dispatch ([`execute`]) for every command that works on a till's store.
//!
//! The daemon runs a request for a client of its API (`POST /v1/exec`); with no
//! daemon, the command line opens the store, puts it on a thread of its own
//! behind a [`StoreHandle`] exactly as the daemon does ([`run_alone`]) and runs
//! the same request in-process. A backup, a USB sync or an export is therefore
//! one implementation, made in short steps on the store's thread with files
//! written beside it, whoever asked for it. A new command goes in
//! [`crate::args`] and in one arm here or in [`commands::dispatch`].

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use tillmesh_store::{Store, StoreHandle};

use crate::args::Cli;
use crate::args::{
    AdminCmd, BackupArgs, BackupCmd, Command, ConflictsArgs, KeysCmd, ProductCmd, RelaysCmd,
    SalesArgs, SalesCmd, StockArgs, UsbCmd,
};
use crate::client::{Exec, FORWARDED_ENV};
use crate::commands::{self, Ctx};
use crate::daemon::Shared;
use crate::jobs::{JobKind, StartedBy, tracked, tracked_result};
use crate::{backups, exit, status};

/// One command for a till: what the operator typed, parsed, with what it needs
/// of its caller. Relative paths in it are already the caller's.
#[derive(Debug)]
pub struct Request {
    /// The command.
    pub command: Command,
    /// What it needs of whoever asked.
    pub caller: Caller,
}

/// What a command needs of its caller beyond its arguments: its environment
/// ([`FORWARDED_ENV`]: a passphrase is the caller's, not the daemon's) and
/// the files it reads, as the caller read them.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// The caller's values of [`FORWARDED_ENV`].
    pub env: BTreeMap<String, String>,
    /// The files the command reads ([`Command::input_files`]), UTF-8 text.
    pub files: BTreeMap<PathBuf, String>,
}

impl Caller {
    /// This process, running the command itself: its environment (files are
    /// read from disk as the command needs them).
    pub fn here() -> Self {
        let mut env: BTreeMap<String, String> = FORWARDED_ENV
            .iter()
            .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
            .collect();
        let colour = if crate::output::wants_colour() {
            "1"
        } else {
            "0"
        };
        env.insert(crate::output::COLOUR_KEY.into(), colour.into());
        Self {
            env,
            files: BTreeMap::new(),
        }
    }

    /// Whether the caller's output shows colour.
    pub fn colour(&self) -> bool {
        self.env
            .get(crate::output::COLOUR_KEY)
            .is_some_and(|v| v == "1")
    }

    /// This process, sending `command` to the daemon: its environment, and the
    /// files the command reads, read now.
    pub fn sending(command: &Command) -> Result<Self> {
        let Self { env, mut files } = Self::here();
        for path in command.input_files() {
            let bytes = read_input(&path)?;
            let text = String::from_utf8(bytes)
                .map_err(|_| commands::rejected(format!("{} is not UTF-8 text", path.display())))?;
            files.insert(path, text);
        }
        Ok(Self { env, files })
    }
}

thread_local! {
    static CALLER: std::cell::RefCell<Option<Caller>> = const { std::cell::RefCell::new(None) };
}

/// Run `f` (a command, on this thread) with `caller` as [`caller_env`] and
/// [`caller_file`] see it.
fn with_caller<T>(caller: Caller, f: impl FnOnce() -> T) -> T {
    CALLER.with(|c| *c.borrow_mut() = Some(caller));
    let out = f();
    CALLER.with(|c| *c.borrow_mut() = None);
    out
}

/// A variable of [`FORWARDED_ENV`] as the command's caller set it.
pub fn caller_env(name: &str) -> Option<String> {
    CALLER
        .with(|c| c.borrow().as_ref().map(|c| c.env.get(name).cloned()))
        .unwrap_or_else(|| std::env::var(name).ok())
}

/// A file the command reads, as its caller read it (else from disk; `-` is
/// standard input).
pub fn caller_file(path: &Path) -> Result<Vec<u8>> {
    let sent = CALLER.with(|c| {
        c.borrow()
            .as_ref()
            .and_then(|c| c.files.get(path).map(|t| t.clone().into_bytes()))
    });
    match sent {
        Some(bytes) => Ok(bytes),
        None => read_input(path),
    }
}

/// Read a file a command takes, or standard input for `-`.
fn read_input(path: &Path) -> Result<Vec<u8>> {
    if path == Path::new("-") {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes)
            .context("cannot read standard input")?;
        return Ok(bytes);
    }
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Where a command writes what it prints: standard output when the command
/// line runs it alone, a buffer ([`capture`]) when the daemon runs it for a
/// client.
pub type Out = Box<dyn Write + Send>;

/// A buffer to run a command into, and the means to read it back.
pub fn capture() -> (Out, Captured) {
    let buf = Captured::default();
    (Box::new(buf.clone()), buf)
}

/// What a command printed into a [`capture`] buffer.
#[derive(Debug, Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// Everything written so far, as text.
    pub fn text(&self) -> String {
        let buf = self.0.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&buf).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Run `req` on the till whose store `store` holds and whose home is `home`,
/// writing what it prints to `out`; `daemon` is the running daemon's shared
/// state, or `None` when the command line runs it alone. An error that
/// [`tillmesh_store::StoreClosed`] causes means the store shut down meanwhile.
pub async fn execute(
    store: &StoreHandle,
    home: &Path,
    daemon: Option<&Shared>,
    req: Request,
    out: &mut Out,
) -> Result<()> {
    let Request { command, caller } = req;
    let changes = mutates(&command);
    let revoke = matches!(command, Command::Revoke { .. });
    let printed = match command {
        Command::Status(a) => {
            let report = match daemon {
                Some(sh) => crate::daemon::live_status(sh).await?,
                None => {
                    let h = home.to_path_buf();
                    store.call(move |s| status::collect(s, &h, None)).await??
                }
            };
            let mut text = Vec::new();
            status::render(&report, a.json, caller.colour(), &mut text)?;
            text
        }
        // The daemon's book: what it raised, cleared and pushed.
        Command::Alerts(a) if a.cmd.is_none() && daemon.is_some() => {
            let mut text = Vec::new();
            crate::alerts::render(&crate::alerts::load(home), a.all, a.json, &mut text)?;
            text
        }
        Command::Invite(a) => match daemon {
            Some(sh) => crate::daemon::invite(sh, a.hours, &a.role).await?,
            None => {
                return Err(commands::rejected(
                    "inviting needs the daemon running on the admin till (tillmesh run), so the new till can reach it",
                ));
            }
        },
        // A backup made in steps, so the till keeps selling meanwhile.
        Command::Backup(a) if a.cmd.is_none() => {
            let subject = serde_json::json!({"to": a.to, "bundle": a.bundle});
            let jobs = daemon.map(|sh| &sh.jobs);
            let json = a.json;
            tracked_result(
                jobs,
                JobKind::Backup,
                StartedBy::Command,
                subject,
                json,
                |p| async move { backups::backup(store, home, &a, &p).await },
            )
            .await?
        }
        // Every file read back and checked beside the store, with its
        // progress; the verdicts are printed also when some are damaged.
        Command::Backup(BackupArgs {
            cmd: Some(BackupCmd::Verify { from, name, json }),
            ..
        }) => {
            let subject = serde_json::json!({ "from": from, "name": name });
            let jobs = daemon.map(|sh| &sh.jobs);
            let verdicts = tracked_result(
                jobs,
                JobKind::Verify,
                StartedBy::Command,
                subject,
                json,
                |p| async move {
                    let v = backups::verify_sink(store, home, from, name, &p).await?;
                    let result = backups::verify_summary(&v);
                    Ok((v, result))
                },
            )
            .await?;
            backups::verdicts_shown(&verdicts, json, out)?;
            Vec::new()
        }
        // List, prune: files read beside the store.
        Command::Backup(BackupArgs { cmd: Some(c), .. }) if backups::on_sink(&c) => {
            backups::sink_cmd(store, home, c).await?
        }
        // Files merged in steps, so the till keeps selling meanwhile.
        Command::Usb(UsbCmd::Sync { dir, json }) => {
            let subject = serde_json::json!({ "dir": dir });
            let jobs = daemon.map(|sh| &sh.jobs);
            tracked(
                jobs,
                JobKind::Usb,
                StartedBy::Command,
                subject,
                json,
                |p| async move { backups::usb_sync(store, home, &dir, json, &p).await },
            )
            .await?
        }
        Command::Drive(crate::args::DriveCmd::Sync { sink, json }) => {
            let (name, opened) = crate::drive::mailbox(home, sink.as_deref())?;
            let subject = serde_json::json!({ "drive": name });
            let jobs = daemon.map(|sh| &sh.jobs);
            let place = backups::Place::Mailbox(name, Default::default());
            tracked(
                jobs,
                JobKind::Usb,
                StartedBy::Command,
                subject,
                json,
                |p| async move { backups::sync_through(store, home, opened, &place, json, &p).await },
            )
            .await?
        }
        // Pages read one short call at a time, so the till keeps selling.
        Command::Sales(SalesArgs {
            cmd: Some(SalesCmd::Export(e)),
            ..
        }) => {
            // Streamed to `out` page by page, never gathered.
            let to = std::mem::replace(out, Box::new(std::io::sink()));
            *out = crate::export::sales_stepped(store, e, to).await?;
            Vec::new()
        }
        Command::Stop => match daemon {
            Some(sh) => {
                sh.stop();
                b"Stopping the daemon.\n".to_vec()
            }
            None => {
                return Err(exit::Coded(
                    exit::NOT_FOUND,
                    "no daemon is running for this till".into(),
                )
                .into());
            }
        },
        Command::Init(_)
        | Command::Run(_)
        | Command::Join(_)
        | Command::Relay(_)
        | Command::Admin(AdminCmd::Import { .. })
        | Command::Demo(_)
            if daemon.is_some() =>
        {
            return Err(commands::rejected(
                "not while the daemon runs for this till; stop it first (tillmesh stop)",
            ));
        }
        other => {
            let home = home.to_path_buf();
            store
                .call(move |s| {
                    let mut out = Vec::new();
                    with_caller(caller, || commands::dispatch(s, &home, &other, &mut out))
                        .map(|_| out)
                })
                .await??
        }
    };
    out.write_all(&printed)?;
    if changes && let Some(sh) = daemon {
        sh.changed(revoke).await;
    }
    Ok(())
}

/// Run what the operator typed (`raw`, parsed as `cli`): commands that need no
/// store run here; every other one goes to the daemon's API while a daemon
/// runs for this till, and to [`run_alone`] when none does. Gives the exit
/// code.
pub fn run(cli: Cli, raw: Vec<String>) -> Result<i32> {
    let ctx = Ctx::new(&cli)?;
    // Not locked: a command run alone writes to standard output from the
    // thread that has its result at hand.
    let mut out = std::io::stdout();
    match &cli.command {
        Command::Init(a) => commands::init(&ctx, a, &mut out)?,
        Command::Demo(a) => crate::demo::run(a)?,
        Command::Run(a) => crate::daemon::run(&ctx, a)?,
        Command::Events(a) => crate::client::follow_events(&ctx.home, a, &mut out)?,
        Command::Dashboard(a) => crate::dashboard::open(&ctx.home, a.json, &mut out)?,
        Command::Sale(a) => crate::client::ring(&ctx, a, &mut out)?,
        Command::Join(a) => crate::enrol::join(&ctx, a, &mut out)?,
        Command::Relay(a) => crate::enrol::relay(&ctx.home, a)?,
        Command::Restore(a) => {
            // `--certify`: the admin till, whose keys were used, certifies
            // the new till in its own store (through its daemon when one
            // runs), so every member accepts it once the change spreads.
            if let Some(c) = backups::restore(&ctx.home, a, &mut out)? {
                let certify = AdminCmd::Certify {
                    till: c.till.to_string(),
                    name: c.name.clone(),
                    role: "till".into(),
                    quiet: a.json,
                };
                let mut raw = ["admin", "certify", &c.till.to_string(), "--name", &c.name]
                    .map(str::to_string)
                    .to_vec();
                if a.json {
                    raw.push("--quiet".into());
                }
                let code = run(
                    Cli {
                        home: Some(c.admin_home),
                        command: Command::Admin(certify),
                        ..cli.clone()
                    },
                    raw,
                )?;
                if code != 0 {
                    return Ok(code);
                }
            }
        }
        // A login waits for a person: never in the daemon.
        Command::Drive(c) if !matches!(c, crate::args::DriveCmd::Sync { .. }) => {
            crate::drive::run(&ctx.home, c, &mut out)?
        }
        Command::DriveEmulator(a) => crate::drive::emulate(a)?,
        Command::Recovery(
            c @ (crate::args::RecoveryCmd::Restore { .. } | crate::args::RecoveryCmd::Drill { .. }),
        ) => backups::recovery(&ctx.home, c, &mut out)?,
        other => {
            // The files it reads are read once (standard input cannot be read
            // twice), whether the daemon or this process runs it.
            let caller = Caller::sending(other)?;
            let watch = match other {
                Command::Status(a) => a.watch,
                _ => None,
            };
            loop {
                // While the daemon holds the store, the command runs in the daemon.
                if let Some(api) = crate::client::discover(&ctx.home) {
                    // Long work the daemon does for this command shows its
                    // progress here as it goes.
                    let _following = job_of(other).and_then(|(kind, json)| {
                        crate::progress::follow_job(&api, kind.label(), kind.as_str(), json)
                    });
                    match crate::client::exec(&api, &raw, &caller)? {
                        Exec::Answered(reply) => {
                            use std::io::Write;
                            if watch.is_some() && reply.code == 0 {
                                redraw(&mut out)?;
                            }
                            out.write_all(reply.stdout.as_bytes())?;
                            eprint!("{}", reply.stderr);
                            match watch.filter(|_| reply.code == 0) {
                                Some(secs) => {
                                    out.flush()?;
                                    std::thread::sleep(std::time::Duration::from_secs(secs.max(1)));
                                    continue;
                                }
                                None => return Ok(reply.code),
                            }
                        }
                        // Nobody answers: the daemon died without cleaning up.
                        Exec::NotTaken => {
                            let _ = std::fs::remove_file(crate::client::api_file(&ctx.home));
                        }
                        // It stopped while running the command: a reading
                        // command is asked again of whoever then holds the store.
                        Exec::NoAnswer if reads_only(other) => {
                            std::thread::sleep(std::time::Duration::from_millis(100));
                        }
                        Exec::NoAnswer => anyhow::bail!(
                            "the daemon stopped before answering; the command may or may not \
                             have run (check with `tillmesh sales` or `tillmesh status`)"
                        ),
                    }
                }
                // The store is held by a daemon that is starting (its API comes up
                // in a moment) or by another command: wait, then go through the
                // daemon or open it.
                let Some(store) = ctx.open_waiting(commands::STORE_PATIENCE, || {
                    crate::client::discover(&ctx.home).is_some()
                })?
                else {
                    continue;
                };
                if watch.is_some() {
                    redraw(&mut out)?;
                }
                run_alone(store, &ctx.home, other.clone(), caller.clone())?;
                match watch {
                    Some(secs) => std::thread::sleep(std::time::Duration::from_secs(secs.max(1))),
                    None => break,
                }
            }
        }
    }
    Ok(0)
}

/// Before each report of `status --watch`: on a terminal, clear it so the
/// report is drawn in place; elsewhere (a log, a pipe), a blank line between
/// reports.
fn redraw(out: &mut impl Write) -> std::io::Result<()> {
    use std::io::IsTerminal;
    if std::io::stdout().is_terminal() {
        write!(out, "\x1b[H\x1b[2J")?;
    } else {
        writeln!(out)?;
    }
    out.flush()
}

/// Run `command` for `caller` with no daemon: `store` goes onto a thread of its
/// own behind a [`StoreHandle`], as in the daemon, [`execute`] runs the
/// request, and the store is closed (its thread joined) before this returns.
/// What it prints goes to standard output.
pub fn run_alone(store: Store, home: &Path, command: Command, caller: Caller) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (handle, thread) = StoreHandle::spawn(store, None);
    let mut out: Out = Box::new(std::io::stdout());
    let req = Request { command, caller };
    let done = rt.block_on(execute(&handle, home, None, req, &mut out));
    drop(handle);
    let _ = thread.join();
    out.flush()?;
    done
}

/// The job a command runs as in the daemon, and whether it prints JSON.
fn job_of(cmd: &Command) -> Option<(JobKind, bool)> {
    match cmd {
        Command::Backup(a) if a.cmd.is_none() => Some((JobKind::Backup, a.json)),
        Command::Backup(BackupArgs {
            cmd: Some(BackupCmd::Verify { json, .. }),
            ..
        }) => Some((JobKind::Verify, *json)),
        Command::Usb(UsbCmd::Sync { json, .. })
        | Command::Drive(crate::args::DriveCmd::Sync { json, .. }) => Some((JobKind::Usb, *json)),
        _ => None,
    }
}

/// Whether a command only reads, so that running it a second time after a
/// daemon stopped before answering cannot do anything twice.
fn reads_only(cmd: &Command) -> bool {
    match cmd {
        Command::Product(c) => matches!(c, ProductCmd::List(_) | ProductCmd::Show { .. }),
        Command::Stock(StockArgs { action, .. }) => action.is_none(),
        Command::Conflicts(ConflictsArgs { action, .. }) => action.is_none(),
        Command::Relays(c) => matches!(c, RelaysCmd::List(_)),
        Command::Sales(_) | Command::Audit(_) | Command::Info(_) | Command::Status(_) => true,
        Command::Config(c) => matches!(c, crate::args::ConfigCmd::Show(_)),
        Command::Alerts(a) => matches!(
            a.cmd,
            None | Some(
                crate::args::AlertsCmd::Webhook(crate::args::WebhookCmd::List(_))
                    | crate::args::AlertsCmd::Threshold { minutes: None, .. }
            )
        ),
        _ => false,
    }
}

/// Whether a command changes data, so peers should hear of it at once.
fn mutates(cmd: &Command) -> bool {
    match cmd {
        Command::Product(c) => !matches!(c, ProductCmd::List(_) | ProductCmd::Show { .. }),
        Command::Sale(_)
        | Command::Void(_)
        | Command::Refund(_)
        | Command::Revoke { .. }
        | Command::Admin(AdminCmd::Certify { .. }) => true,
        Command::Clock(a) => a.max_skew.is_some(),
        Command::Config(c) => !matches!(c, crate::args::ConfigCmd::Show(_)),
        Command::Stock(StockArgs { action, .. }) => action.is_some(),
        Command::Conflicts(ConflictsArgs { action, .. }) => action.is_some(),
        Command::Relays(c) => !matches!(c, RelaysCmd::List(_)),
        Command::Alerts(a) => matches!(
            a.cmd,
            Some(
                crate::args::AlertsCmd::Webhook(
                    crate::args::WebhookCmd::Add { .. } | crate::args::WebhookCmd::Remove { .. }
                ) | crate::args::AlertsCmd::Threshold {
                    minutes: Some(_),
                    ..
                }
            )
        ),
        Command::Keys(c) => matches!(c, KeysCmd::Rotate),
        Command::Usb(UsbCmd::Sync { .. }) => true,
        Command::Drive(crate::args::DriveCmd::Sync { .. }) => true,
        Command::Backup(BackupArgs {
            cmd:
                Some(BackupCmd::Schedule {
                    every,
                    snapshot_every,
                    ..
                }),
            ..
        }) => every.is_some() || snapshot_every.is_some(),
        _ => false,
    }
}
