//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Tillmesh: the store's data on every till, in sync, never losing a sale.
#[derive(Debug, Clone, Parser)]
#[command(name = "tillmesh", version, about, max_term_width = 100)]
pub struct Cli {
    /// The till's home directory (its key and store file).
    #[arg(long, global = true, env = "TILLMESH_HOME", value_name = "DIR")]
    pub home: Option<PathBuf>,

    /// Shift this till's clock (for testing clock skew), in milliseconds.
    #[arg(
        long,
        global = true,
        env = "TILLMESH_CLOCK_OFFSET_MS",
        hide = true,
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    pub clock_offset_ms: i64,

    /// Compact a document after this many changes (tuning and tests).
    #[arg(long, global = true, env = "TILLMESH_COMPACT_AFTER", hide = true)]
    pub compact_after: Option<u64>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Create a new store with this machine as its first till.
    Init(InitArgs),
    /// Add, edit and look up products.
    #[command(subcommand)]
    Product(ProductCmd),
    /// Record a sale.
    Sale(SaleArgs),
    /// Void a whole sale.
    Void(VoidArgs),
    /// Refund some or all lines of a sale.
    Refund(RefundArgs),
    /// List sales, voids and refunds.
    Sales(SalesArgs),
    /// Show stock on hand, or record stock movements.
    Stock(StockArgs),
    /// List conflicting edits, resolve them, or set the policy.
    Conflicts(ConflictsArgs),
    /// Show or verify the audit trail.
    Audit(AuditArgs),
    /// Show this till and its store.
    Info(JsonFlag),
    /// Run the till's daemon: sync with the other tills, serve the local API.
    Run(RunArgs),
    /// Stop the running daemon cleanly.
    Stop,
    /// Show every till of the mesh at a glance.
    Status(StatusArgs),
    /// Alerts: the active ones, their history, and the webhooks they are
    /// pushed to.
    Alerts(AlertsArgs),
    /// Follow what happens on this till as it happens (the daemon's event stream).
    Events(EventsArgs),
    /// How the store fared: sync sessions per peer and path, bytes, how fast
    /// other tills' sales arrived, backups per sink, conflicts and alerts.
    Report(ReportArgs),
    /// Print the address of the live web dashboard, with a one-time code to
    /// open it (daemon running).
    Dashboard(JsonFlag),
    /// Make a one-time ticket for a new till to join (admin till, daemon running).
    Invite(InviteArgs),
    /// Join a store with a ticket from `tillmesh invite`.
    Join(JoinArgs),
    /// Revoke a till: every member refuses it once the change spreads (admin till).
    Revoke {
        /// The till's name or id.
        till: String,
    },
    /// Write this till's own sales that no member holds to a JSON file, for the
    /// back office to review (a revoked till's last sales).
    ExportUnsynced {
        /// The file to write (it must not exist yet).
        file: PathBuf,
    },
    /// The store's clock bound: how far ahead of a till's own clock another
    /// till's timestamps may be and still move it (default 5 min). Setting it
    /// takes the admin or back-office role.
    Clock(ClockArgs),
    /// The store-wide settings every till shares (sync interval, retries,
    /// key rotation, backup schedule, alert thresholds ...): show them, set
    /// one, or put one back to its default (setting takes the admin or
    /// back-office role).
    #[command(subcommand)]
    Config(ConfigCmd),
    /// The store's admin key: a second admin till, so losing one machine does
    /// not lock the store.
    #[command(subcommand)]
    Admin(AdminCmd),
    /// Run the store's own relay server.
    Relay(RelayArgs),
    /// The store's relay list, shared by every till.
    #[command(subcommand)]
    Relays(RelaysCmd),
    /// The store's backup keys: list them, or make a new one (admin till).
    #[command(subcommand)]
    Keys(KeysCmd),
    /// Run a short scripted session in a temporary directory.
    Demo(DemoArgs),
    /// Back up this till's store to a folder or sink; list and verify backups.
    Backup(BackupArgs),
    /// Restore a store from backups into a new, empty till home (`--home NEWDIR`).
    Restore(RestoreArgs),
    /// Where backups go: named folders (USB sticks, NAS mounts, local disks).
    #[command(subcommand)]
    Sink(SinkCmd),
    /// USB sticks: find them, and sync tills that never meet through one.
    #[command(subcommand)]
    Usb(UsbCmd),
    /// The passphrase-protected recovery file, for when every till is lost.
    #[command(subcommand)]
    Recovery(RecoveryCmd),
    /// The store's Google Drive login: sign in, look at it, sign out.
    #[command(subcommand)]
    Drive(DriveCmd),
    /// Serve an emulated Google Drive and Google sign-in on ADDR, for demos
    /// and tests on machines without the internet.
    DriveEmulator(DriveEmulatorArgs),
}

/// `tillmesh config …`.
#[derive(Debug, Clone, Subcommand)]
pub enum ConfigCmd {
    /// Every setting: its value, its default and what it does.
    Show(JsonFlag),
    /// Set one for every till of the store.
    Set {
        /// The setting (`config show` lists them), e.g. `sync/interval_s`.
        key: String,
        /// A whole number in the setting's unit; a time also takes a unit
        /// of its own: `90s`, `5m`, `2h`, `1d`.
        value: String,
    },
    /// Put one back to its default for every till of the store.
    Reset {
        /// The setting.
        key: String,
    },
}

/// How to sign in to Google: `drive login`, and `recovery restore --drive`.
#[derive(Debug, Clone, Args)]
pub struct GoogleSignIn {
    /// Sign in with a code entered on another device (for a till with no browser).
    #[arg(long)]
    pub device: bool,
    /// The Google OAuth client id (see docs/OPERATIONS.md to make one).
    #[arg(long, env = "TILLMESH_GOOGLE_CLIENT_ID")]
    pub client_id: Option<String>,
    /// The client secret Google gives installed and TV apps (not a secret).
    #[arg(long, env = "TILLMESH_GOOGLE_CLIENT_SECRET")]
    pub client_secret: Option<String>,
    /// A server with Google's paths in place of Google (the Drive
    /// emulator: `tillmesh drive-emulator`), like http://127.0.0.1:8790.
    #[arg(long, value_name = "URL", env = "TILLMESH_GOOGLE_ENDPOINT")]
    pub endpoint: Option<String>,
    /// Keep the store's files in the hidden app data folder (scope
    /// drive.appdata) instead of a visible folder (scope drive.file).
    #[arg(long)]
    pub app_data: bool,
    /// Seconds to wait for the browser.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
}

#[derive(Debug, Clone, Subcommand)]
pub enum DriveCmd {
    /// Sign in to Google Drive for the store: prints an address to open in a
    /// browser (or, with --device, a code to enter on a phone).
    Login(GoogleSignIn),
    /// The login: account, quota, token, Drive sinks; asks for a new login
    /// when Google no longer takes it.
    Status(JsonFlag),
    /// Revoke the login at Google and delete it here.
    Logout,
    /// Sync with the other tills through a Drive sink, as through a USB
    /// stick: take the changes they left there, leave what they lack (the
    /// daemon does it every minute while the mesh reaches no other till).
    Sync {
        /// The Drive sink (default: the first one configured).
        sink: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, clap::Args)]
pub struct DriveEmulatorArgs {
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:8790")]
    pub bind: std::net::SocketAddr,
    /// Approve every sign-in at once, as if the user said yes.
    #[arg(long)]
    pub auto_approve: bool,
    /// The account's storage quota in bytes (default: unlimited).
    #[arg(long)]
    pub quota: Option<u64>,
    /// Seconds a device-flow sign-in is asked to wait between polls (Google: 5).
    #[arg(long, value_name = "SECONDS", default_value_t = 5)]
    pub device_interval: u64,
}

#[derive(Debug, Clone, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BackupArgs {
    #[command(subcommand)]
    pub cmd: Option<BackupCmd>,
    /// A configured sink's name, or a folder (default: every configured sink).
    #[arg(long, value_name = "SINK|DIR")]
    pub to: Option<String>,
    /// Write only the changes the sink lacks (a bundle) instead of a snapshot.
    #[arg(long)]
    pub bundle: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Subcommand)]
pub enum BackupCmd {
    /// List the snapshots and bundles on a sink.
    List {
        /// A configured sink's name, or a folder (default: the first configured sink).
        #[arg(long, value_name = "SINK|DIR")]
        from: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Decrypt backups and check every signature and hash.
    Verify {
        /// A configured sink's name, or a folder (default: the first configured sink).
        #[arg(long, value_name = "SINK|DIR")]
        from: Option<String>,
        /// Only this backup (its name or the end of it).
        name: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete what a sink's retention policy lets go (never the only copy of anything).
    Prune {
        /// A configured sink's name, or a folder (default: every configured sink).
        #[arg(long, value_name = "SINK|DIR")]
        from: Option<String>,
        /// The policy, e.g. `last=7,daily=7,weekly=4,monthly=12` (default: the sink's own).
        #[arg(long, value_name = "POLICY")]
        keep: Option<String>,
        /// Only show what would be deleted.
        #[arg(long)]
        dry_run: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show or set how often the daemon backs up to every sink (store-wide).
    Schedule {
        /// Time between scheduled backups, like `1h`, `15m` or `90s`.
        #[arg(long, value_name = "DURATION")]
        every: Option<String>,
        /// Time between snapshots; the backups in between are bundles.
        #[arg(long, value_name = "DURATION")]
        snapshot_every: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Args)]
pub struct RestoreArgs {
    /// The folder holding the backups, or a sink of the till whose keys are
    /// used (Google Drive, say).
    #[arg(long, value_name = "SINK|DIR")]
    pub from: PathBuf,
    /// Restore this snapshot (its name or the end of it).
    #[arg(long, conflicts_with = "at")]
    pub snapshot: Option<String>,
    /// Restore the state as it was at this time (UTC `YYYY-MM-DDTHH:MM[:SS]`, or Unix ms).
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    /// The till home whose store keys decrypt the backups (default: `$TILLMESH_HOME`).
    #[arg(long, value_name = "DIR")]
    pub keys: Option<PathBuf>,
    /// The restored till's short name.
    #[arg(long = "till", value_name = "NAME", default_value = "R01")]
    pub till: String,
    /// Make the restored till a member of the mesh (a machine that replaces
    /// a lost till): the admin till, whose keys these must be, certifies it
    /// in its own store, so the other tills accept it once that spreads.
    /// Without it the restored home is for looking into, and syncs with no
    /// one.
    #[arg(long)]
    pub certify: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Subcommand)]
pub enum SinkCmd {
    /// Add a named sink.
    Add {
        /// Its name, like `usb` or `nas`.
        name: String,
        /// Its kind: `folder`, or `drive` (after `tillmesh drive login`).
        kind: String,
        /// The folder; for `drive`, the folder's name in Google Drive.
        path: PathBuf,
        /// Retention: which snapshots to keep (`last=N,daily=N,weekly=N,monthly=N`).
        #[arg(
            long,
            value_name = "POLICY",
            default_value = "last=7,daily=7,weekly=4,monthly=12"
        )]
        keep: String,
    },
    /// Remove a named sink (its backups stay where they are).
    Remove {
        /// Its name.
        name: String,
    },
    /// List the sinks.
    List(JsonFlag),
}

#[derive(Debug, Clone, Subcommand)]
pub enum UsbCmd {
    /// List removable devices (USB sticks, SD cards).
    Detect(JsonFlag),
    /// Export what the stick lacks and import what this till lacks.
    Sync {
        /// The stick's folder.
        dir: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Args)]
pub struct ClockArgs {
    /// Set the bound for every till (e.g. 90s, 5m, 1h; at most 1d).
    #[arg(long, value_name = "DURATION")]
    pub max_skew: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Subcommand)]
pub enum AdminCmd {
    /// Write the admin key, with the backup keys, to a passphrase-protected file
    /// (admin till; the passphrase comes from `$TILLMESH_RECOVERY_PASSPHRASE`).
    /// The file has the recovery file's format: either one imports.
    Export {
        /// Where to write it (it must not exist yet).
        file: PathBuf,
    },
    /// Make this till an admin till too, from a file of `admin export` or
    /// `recovery create` (daemon stopped; passphrase from
    /// `$TILLMESH_RECOVERY_PASSPHRASE`).
    Import {
        /// The file.
        file: PathBuf,
    },
    /// Make a till key a member without a ticket (admin till): a till
    /// restored from backups on a new machine. `restore --certify` run on
    /// the admin till does it itself; with another till's keys it names this
    /// command.
    Certify {
        /// The new till's full id (`tillmesh info` on it).
        till: String,
        /// Its short name, used in its receipt numbers: one no other till has.
        #[arg(long)]
        name: String,
        /// Its role: till, manager or back-office.
        #[arg(long, default_value = "till")]
        role: String,
        /// Print nothing (`restore --json` certifies this way).
        #[arg(long, hide = true)]
        quiet: bool,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum RecoveryCmd {
    /// Write the recovery file (admin till). The passphrase comes from
    /// `$TILLMESH_RECOVERY_PASSPHRASE`.
    Create {
        /// Where to write it (keep it off the till: a safe, a password manager).
        file: PathBuf,
        /// Replace the store's recovery key first (when a recovery file may have
        /// been lost): backups from now on are encrypted to the new one only;
        /// older recovery files read only what was backed up before.
        #[arg(long)]
        new_key: bool,
    },
    /// Restore the store from backups on a brand-new machine into `--home NEWDIR`.
    #[command(group = clap::ArgGroup::new("source").required(true).args(["from", "drive"]))]
    Restore {
        /// The recovery file.
        file: PathBuf,
        /// The folder holding the backups.
        #[arg(long, value_name = "DIR")]
        from: Option<PathBuf>,
        /// The backups are in this folder of Google Drive (`tillmesh-` and the
        /// store's id unless it was named otherwise): sign in first, as `drive
        /// login` does, and keep that login and a Drive sink there for the new
        /// till.
        #[arg(
            long,
            value_name = "FOLDER",
            num_args = 0..=1,
            default_missing_value = ""
        )]
        drive: Option<String>,
        #[command(flatten)]
        google: GoogleSignIn,
        /// The restored till's short name.
        #[arg(long = "till", value_name = "NAME", default_value = "R01")]
        till: String,
    },
    /// Rehearse `recovery restore`: restore into a temporary home, check every
    /// document, backup file and audit chain, say what a recovery would get,
    /// and delete the temporary home. This till's own store is not touched.
    Drill {
        /// The recovery file.
        file: PathBuf,
        /// The backups: a sink's name or a folder.
        #[arg(long, value_name = "SINK|DIR")]
        from: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

impl Command {
    /// The files this command reads (a command sent to the daemon sends them
    /// along: the daemon may not see the caller's files).
    pub fn input_files(&self) -> Vec<PathBuf> {
        match self {
            Command::Product(ProductCmd::Import { file, .. }) => vec![file.clone()],
            _ => Vec::new(),
        }
    }

    /// Make relative paths absolute against `cwd`: a command forwarded to the
    /// daemon runs in the daemon's directory, not the caller's.
    pub fn absolutize(&mut self, cwd: &std::path::Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = cwd.join(&*p);
            }
        };
        let fix_dest = |d: &mut Option<String>| {
            if let Some(v) = d
                && (v.contains('/') || v.starts_with('.'))
                && std::path::Path::new(v.as_str()).is_relative()
            {
                *v = cwd.join(v.as_str()).display().to_string();
            }
        };
        match self {
            Command::Backup(a) => {
                fix_dest(&mut a.to);
                match &mut a.cmd {
                    Some(
                        BackupCmd::List { from, .. }
                        | BackupCmd::Verify { from, .. }
                        | BackupCmd::Prune { from, .. },
                    ) => fix_dest(from),
                    Some(BackupCmd::Schedule { .. }) | None => {}
                }
            }
            Command::Restore(a) => {
                fix(&mut a.from);
                if let Some(k) = &mut a.keys {
                    fix(k);
                }
            }
            Command::Sink(SinkCmd::Add { path, kind, .. }) if kind == "folder" => fix(path),
            Command::Usb(UsbCmd::Sync { dir, .. }) => fix(dir),
            Command::Sales(SalesArgs {
                cmd: Some(SalesCmd::Export(SalesExportArgs { file, .. })),
                ..
            })
            | Command::Stock(StockArgs {
                action: Some(StockCmd::Export { file, .. }),
                ..
            }) if file != std::path::Path::new("-") => fix(file),
            Command::Product(ProductCmd::Import { file, .. })
                if file != std::path::Path::new("-") =>
            {
                fix(file)
            }
            Command::ExportUnsynced { file }
            | Command::Admin(AdminCmd::Export { file } | AdminCmd::Import { file }) => fix(file),
            Command::Recovery(
                RecoveryCmd::Create { file, .. } | RecoveryCmd::Restore { file, .. },
            ) => fix(file),
            _ => {}
        }
        if let Command::Recovery(RecoveryCmd::Restore {
            from: Some(from), ..
        }) = self
        {
            fix(from);
        }
    }
}

/// `tillmesh run`: every setting can also come from the `--config` file
/// (see [`crate::runconfig`]); a flag given wins over the file.
#[derive(Debug, Clone, Default, Args)]
pub struct RunArgs {
    /// The till's own settings from a TOML file (docs/OPERATIONS.md; the
    /// Debian package's is /etc/tillmesh/tillmesh.toml). A flag given here
    /// wins over the file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Check the settings (file, flags and defaults together), print them
    /// as a config file, and exit without starting.
    #[arg(long)]
    pub check: bool,
    /// UDP address for direct connections between tills [default: 0.0.0.0:0].
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<std::net::SocketAddr>,
    /// Use relays only: no direct connections (for networks that block UDP between tills).
    #[arg(long)]
    pub relay_only: bool,
    /// Seconds between anti-entropy rounds on this till (changes also spread
    /// at once) [default: the store's setting sync/interval_s, 300].
    #[arg(long, value_name = "SECONDS")]
    pub sync_interval: Option<u64>,
    /// Seconds between syncs through the store's Google Drive folder while
    /// some member till is not reached over the mesh (none while all are)
    /// [default: 60].
    #[arg(long, value_name = "SECONDS")]
    pub mailbox_every: Option<u64>,
    /// Do not look for the store's other tills on the local network by mDNS (nor
    /// announce this one there).
    #[arg(long)]
    pub no_mdns: bool,
    /// The local API's port on 127.0.0.1 (0: any free one). A fixed port keeps
    /// the dashboard's address, and the app installed from it, the same
    /// across restarts [default: 0].
    #[arg(long, value_name = "PORT")]
    pub api_port: Option<u16>,
    /// Also serve `GET /metrics` (only that) on this address, for the
    /// store's Prometheus on the LAN (e.g. 0.0.0.0:9470), to requests with
    /// the token in --metrics-token-file.
    #[arg(long, value_name = "ADDR")]
    pub metrics_bind: Option<std::net::SocketAddr>,
    /// A file holding the bearer token Prometheus sends to --metrics-bind
    /// (at least 16 characters; Prometheus reads the same file with
    /// `authorization: {credentials_file: FILE}`).
    #[arg(long, value_name = "FILE")]
    pub metrics_token_file: Option<PathBuf>,
    /// Write the daemon's log to this file instead of standard error; it is
    /// set aside at 16 MiB and the 5 newest are kept (the config file's log
    /// section changes both).
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
    /// Log one JSON object per line (for a log collector).
    #[arg(long)]
    pub log_json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Refresh every N seconds until interrupted.
    #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "2")]
    pub watch: Option<u64>,
}

#[derive(Debug, Clone, Args)]
pub struct InviteArgs {
    /// How long the ticket stays valid, in hours.
    #[arg(long, default_value_t = 24)]
    pub hours: u64,
    /// The new till's role: till (sells), manager (also edits the catalog) or
    /// back-office (also the store's configuration).
    #[arg(long, default_value = "till")]
    pub role: String,
}

#[derive(Debug, Clone, Args)]
pub struct JoinArgs {
    /// The ticket printed by `tillmesh invite`; `-` reads it from standard
    /// input and `@FILE` from a file, so it need not appear in the process list
    /// or the shell history.
    #[arg(value_name = "TICKET|-|@FILE")]
    pub ticket: String,
    /// This till's short name, used in receipt numbers (like T02).
    #[arg(long = "till", value_name = "NAME")]
    pub till: String,
    /// UDP address to use while joining.
    #[arg(long, default_value = "0.0.0.0:0")]
    pub bind: std::net::SocketAddr,
    /// Also try to reach the admin till through this relay (repeat for several),
    /// besides those in the ticket.
    #[arg(long = "relay", value_name = "URL")]
    pub relays: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct RelayArgs {
    /// Address to listen on: relay over HTTP (TCP) and address discovery over QUIC
    /// (UDP), both on this port.
    #[arg(long, default_value = "0.0.0.0:3340")]
    pub bind: std::net::SocketAddr,
    /// Relay only, without QUIC address discovery (tills behind NATs then stay on
    /// the relay).
    #[arg(long, conflicts_with = "https")]
    pub no_discovery: bool,
    /// Serve the relay over HTTPS on this address (address discovery then answers
    /// on its port number over UDP; `--bind` serves only the captive-portal probe).
    /// The certificate is the relay's own unless `--tls-cert` and `--tls-key` name
    /// one; tills trust it by the fingerprint this prints.
    #[arg(long)]
    pub https: Option<std::net::SocketAddr>,
    /// The HTTPS certificate chain, PEM (the leaf first).
    #[arg(long, requires_all = ["https", "tls_key"])]
    pub tls_cert: Option<PathBuf>,
    /// The HTTPS certificate's private key, PEM.
    #[arg(long, requires_all = ["https", "tls_cert"])]
    pub tls_key: Option<PathBuf>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum KeysCmd {
    /// List the backup keys this till holds (ids only, never the secrets).
    List(JsonFlag),
    /// Make a new backup key (admin till): new backups are encrypted to it,
    /// members fetch it from this till over the mesh, older keys stay to read
    /// older backups. Also done on `revoke` and every 30 days by the daemon.
    Rotate,
}

#[derive(Debug, Clone, Subcommand)]
pub enum RelaysCmd {
    /// Add a relay URL, like http://10.0.0.2:3340 (or set the certificate of one
    /// already listed).
    Add {
        /// The URL.
        url: String,
        /// The relay's certificate fingerprint, as `tillmesh relay` prints it:
        /// tills then also learn their public address from this relay, so tills
        /// behind NATs can connect directly.
        #[arg(long, value_name = "FINGERPRINT")]
        cert: Option<String>,
    },
    /// Remove a relay URL.
    Remove {
        /// The URL.
        url: String,
    },
    /// List the relays.
    List(JsonFlag),
}

#[derive(Debug, Clone, Args)]
pub struct AlertsArgs {
    #[command(subcommand)]
    pub cmd: Option<AlertsCmd>,
    /// Also the cleared ones, newest first.
    #[arg(long)]
    pub all: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Subcommand)]
pub enum AlertsCmd {
    /// The store's webhooks: every alert raised or cleared is POSTed to each
    /// as JSON, signed with its secret (admin or back-office till).
    #[command(subcommand)]
    Webhook(WebhookCmd),
    /// The alert rules' thresholds: all of them, or set one for the whole
    /// store (admin or back-office till).
    Threshold {
        /// `till_offline_min`, `unreplicated_min`, `backup_overdue_min` or
        /// `refusals_min` (also `tillmesh config`: `alerts/NAME`).
        name: Option<String>,
        /// Its new value, in minutes.
        #[arg(requires = "name")]
        minutes: Option<u64>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum WebhookCmd {
    /// Add a webhook (or give one already listed a new secret).
    Add {
        /// The http or https URL alerts are POSTed to.
        url: String,
        /// The secret the `X-Tillmesh-Signature` header is made with (at
        /// least 16 characters; made and printed once when not given).
        #[arg(long)]
        secret: Option<String>,
    },
    /// Remove a webhook.
    Remove {
        /// Its URL.
        url: String,
    },
    /// List the webhooks (their secrets are not shown).
    List(JsonFlag),
}

#[derive(Debug, Clone, Args)]
pub struct JsonFlag {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct InitArgs {
    /// The store's name, as shown to operators.
    #[arg(long = "store", value_name = "NAME")]
    pub store: String,
    /// This till's short name, used in receipt numbers (like T01).
    #[arg(long = "till", value_name = "NAME")]
    pub till: String,
    /// This till's role: till, manager or back-office.
    #[arg(long, default_value = "back-office")]
    pub role: String,
    /// A relay URL for the store (repeat for several).
    #[arg(long = "relay", value_name = "URL")]
    pub relays: Vec<String>,
    /// Also write the recovery file here (passphrase from `$TILLMESH_RECOVERY_PASSPHRASE`).
    #[arg(long, value_name = "FILE")]
    pub recovery: Option<PathBuf>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum ProductCmd {
    /// Add a product to the catalog.
    Add(ProductAddArgs),
    /// Change a product's price.
    SetPrice {
        /// The product's SKU.
        sku: String,
        /// The new price, like 1.19.
        #[arg(allow_negative_numbers = true)]
        price: String,
    },
    /// Change other fields of a product.
    Edit(ProductEditArgs),
    /// List the catalog (by SKU; a page of it with --limit/--after).
    List(ProductListArgs),
    /// Show one product, by SKU or barcode.
    Show {
        /// SKU or barcode.
        code: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Add and update products from a CSV or JSON file, all or none: every row
    /// is checked first, and one bad row refuses the file (each bad row is
    /// named by its line). Products the file does not name stay as they are.
    Import {
        /// The file: CSV with the header
        /// `sku,name,price,unit,tax_class,category,barcodes,active`, or a JSON
        /// array of products (see docs/OPERATIONS.md); `-` reads standard input
        /// (with --format).
        file: PathBuf,
        /// The file's format, when its name does not end in .csv or .json.
        #[arg(long, value_parser = ["csv", "json"])]
        format: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Args)]
pub struct ProductAddArgs {
    /// The product's SKU (letters, digits, '-', '_', '.').
    pub sku: String,
    /// Its name.
    #[arg(long)]
    pub name: String,
    /// Price per piece, or per kilogram with --unit kg, tax included, like 1.19.
    #[arg(long, allow_negative_numbers = true)]
    pub price: String,
    /// each or kg.
    #[arg(long, default_value = "each")]
    pub unit: String,
    /// A barcode (EAN-13 or UPC-A); repeat for several.
    #[arg(long = "barcode")]
    pub barcodes: Vec<String>,
    /// Tax class: standard, reduced, zero (or one configured).
    #[arg(long, default_value = "standard")]
    pub tax_class: String,
    /// Category.
    #[arg(long, default_value = "")]
    pub category: String,
}

#[derive(Debug, Clone, Args)]
pub struct ProductEditArgs {
    /// The product's SKU.
    pub sku: String,
    /// New name.
    #[arg(long)]
    pub name: Option<String>,
    /// Barcode to add; repeat for several.
    #[arg(long = "add-barcode")]
    pub add_barcodes: Vec<String>,
    /// Barcode to remove; repeat for several.
    #[arg(long = "remove-barcode")]
    pub remove_barcodes: Vec<String>,
    /// New tax class.
    #[arg(long)]
    pub tax_class: Option<String>,
    /// New category.
    #[arg(long)]
    pub category: Option<String>,
    /// Whether it may be sold.
    #[arg(long)]
    pub active: Option<bool>,
}

#[derive(Debug, Clone, Args)]
pub struct SaleArgs {
    #[arg(
        long = "line",
        required = true,
        value_name = "LINE",
        help = "A line: SKU_OR_BARCODE[:QTY|:<grams>g][:-DISCOUNT], like MILK1L:2, BANANA:350g, \
                4006381333931:1:-0.20. Repeat for each line."
    )]
    pub lines: Vec<String>,
    /// cash or card.
    #[arg(long)]
    pub tender: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct VoidArgs {
    /// The receipt of the sale, like T01-42.
    pub receipt: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct RefundArgs {
    /// The receipt of the sale, like T01-42.
    pub receipt: String,
    #[arg(
        long = "line",
        value_name = "LINE",
        help = "A line to refund: SKU[:QTY|:<grams>g]; all that is left when omitted."
    )]
    pub lines: Vec<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SalesArgs {
    #[command(subcommand)]
    pub cmd: Option<SalesCmd>,
    /// Only this day (YYYY-MM-DD, UTC); `today` for today.
    #[arg(long)]
    pub day: Option<String>,
    /// Only this till (name or id).
    #[arg(long)]
    pub till: Option<String>,
    /// At most this many entries (a page; the last line or `next` says where
    /// the next page starts).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Start after this cursor (the `next` of the previous page).
    #[arg(long)]
    pub after: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Subcommand)]
pub enum SalesCmd {
    /// Write sales, voids and refunds to a file for accounting (CSV: one row
    /// per line sold; JSON: one object per entry), streamed page by page.
    Export(SalesExportArgs),
}

#[derive(Debug, Clone, Args)]
pub struct SalesExportArgs {
    /// The file to write (never overwritten), or `-` for standard output.
    pub file: PathBuf,
    /// First day (YYYY-MM-DD or `today`).
    #[arg(long)]
    pub from: Option<String>,
    /// Last day.
    #[arg(long)]
    pub to: Option<String>,
    /// Only this till (name or id).
    #[arg(long)]
    pub till: Option<String>,
    /// `csv` or `json` (default: by the file's extension, else CSV).
    #[arg(long)]
    pub format: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// How far back: `90m`, `24h`, `7d`.
    #[arg(long, default_value = "24h")]
    pub since: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct EventsArgs {
    /// Start after this event id (replays what the daemon still holds).
    #[arg(long)]
    pub after: Option<u64>,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct StockArgs {
    #[command(subcommand)]
    pub action: Option<StockCmd>,
    /// One product's stock (SKU); all when omitted.
    pub sku: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Subcommand)]
pub enum StockCmd {
    /// Record goods received.
    Receive {
        /// The product.
        sku: String,
        /// Pieces, or grams like 5000g for products sold by weight.
        qty: String,
    },
    /// Record a correction with a reason.
    Adjust {
        /// The product.
        sku: String,
        /// The change, like -3 or 250g.
        #[arg(allow_negative_numbers = true)]
        delta: String,
        /// Why: breakage, theft, expiry, ...
        #[arg(long)]
        reason: String,
    },
    /// Record a stocktake count.
    Count {
        /// The product.
        sku: String,
        /// What is on the shelf: pieces, or grams like 12000g.
        qty: String,
    },
    /// Write every product's stock on hand to a file (CSV or JSON).
    Export {
        /// The file to write (never overwritten), or `-` for standard output.
        file: PathBuf,
        /// `csv` or `json` (default: by the file's extension, else CSV).
        #[arg(long)]
        format: Option<String>,
    },
}

#[derive(Debug, Clone, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ConflictsArgs {
    #[command(subcommand)]
    pub action: Option<ConflictsCmd>,
    /// Include decided and resolved conflicts, not only pending ones.
    #[arg(long)]
    pub all: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Subcommand)]
pub enum ConflictsCmd {
    /// Settle a conflict by keeping one of its values.
    Resolve {
        /// The conflict id.
        id: String,
        /// Which value to keep, as numbered by `tillmesh conflicts`.
        #[arg(long)]
        pick: usize,
    },
    /// Set the conflict policy of a document kind.
    Policy {
        /// catalog, config or membership.
        kind: String,
        /// latest-wins, role-priority or manual.
        policy: String,
    },
}

#[derive(Debug, Clone, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub action: Option<AuditCmd>,
    /// Whose trail: a till name or id; this till when omitted (with
    /// --limit/--after: every till's, unless named).
    #[arg(long)]
    pub till: Option<String>,
    #[command(flatten)]
    pub page: PageArgs,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// A page of a listing.
#[derive(Debug, Clone, Args)]
pub struct PageArgs {
    /// At most this many entries (a page; the last line, or `next` with
    /// --json, says where the next page starts).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Start after this cursor (the `next` of the previous page).
    #[arg(long)]
    pub after: Option<String>,
}

impl PageArgs {
    /// Whether a page was asked for.
    pub fn paged(&self) -> bool {
        self.limit.is_some() || self.after.is_some()
    }
}

/// `tillmesh product list`.
#[derive(Debug, Clone, Args)]
pub struct ProductListArgs {
    #[command(flatten)]
    pub page: PageArgs,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Subcommand)]
pub enum AuditCmd {
    /// Check every audit chain this till holds.
    Verify {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Leave the tills, the relay and the Drive emulator running afterwards,
    /// and print the dashboard's address and commands to explore them.
    #[arg(long)]
    pub keep: bool,
    /// Instead of the tour, a larger store: this many tills (5 to 200) enrol,
    /// sell, and converge.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(5..=200))]
    pub tills: Option<u16>,
}
