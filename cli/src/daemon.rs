//! `tillmesh run`: the till's daemon. It holds the store, runs the mesh node and
//! serves the local HTTP API (on the Unix socket `api.sock` in the till's home,
//! which the command line uses, and on 127.0.0.1 for other local programs; bearer
//! token in `api.json`, mode 0600) through which every other command runs while
//! the daemon is up. SIGINT or SIGTERM (or `tillmesh stop`) shut it down cleanly:
//! the API stops taking requests, the node closes its connections, the store
//! thread finishes its last transaction and closes the file.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use clap::Parser;
use tillmesh_mesh::{Node, NodeConfig, StoreHandle, Ticket};
use tillmesh_store::{StoreId, TillId, TillKey};
use tokio::sync::Notify;

use crate::args::{Cli, RunArgs};
use crate::client::{ApiInfo, ExecReply, ExecRequest, api_file, api_socket};
use crate::commands::{self, Ctx};
use crate::runconfig::RunSettings;
use crate::{backups, exit, status};

/// What every request handler of the daemon shares.
pub struct Shared {
    pub(crate) store: StoreHandle,
    pub(crate) node: Arc<Node>,
    pub(crate) home: crate::home::Home,
    key: TillKey,
    admin: Option<TillKey>,
    store_id: StoreId,
    online_window_ms: u64,
    /// When the daemon started (unix ms).
    started_ms: u64,
    stop: Arc<Notify>,
    pub(crate) hub: crate::events::Hub,
    pub(crate) jobs: crate::jobs::Jobs,
    /// The dashboard's one-time codes and sessions.
    pub(crate) dashboard: Arc<crate::dashboard::Sessions>,
    /// The local API's TCP port.
    pub(crate) api_port: u16,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("home", &self.home)
            .field("till", &self.key.till_id().fmt_short())
            .field("store_id", &self.store_id)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Begin a clean shutdown (`tillmesh stop`).
    pub(crate) fn stop(&self) {
        self.stop.notify_waiters();
    }

    /// A command changed data: peers hear of it at once (after a revocation,
    /// the node first drops the revoked till).
    pub(crate) async fn changed(&self, revoke: bool) {
        if revoke {
            let _ = self.node.refresh().await;
        }
        self.node.sync_now();
    }
}

/// The status report with the daemon's live view.
pub(crate) async fn live_status(sh: &Shared) -> Result<status::StatusReport> {
    let live = status::Live {
        links: sh.node.links(),
        revocation: sh.node.revocation(),
        online_window_ms: sh.online_window_ms,
        started_ms: sh.started_ms,
        refusals: sh
            .node
            .refusals(backups::now_ms().saturating_sub(crate::alerts::REFUSALS_KEPT_MS)),
    };
    let home = sh.home.clone();
    let relay = sh
        .node
        .endpoint()
        .addr()
        .relay_urls()
        .next()
        .map(|u| u.to_string());
    let mut report = sh
        .store
        .call(move |s| status::collect(s, &home, Some(&live)))
        .await??;
    report.me.relay_connected = relay;
    report.me.gossip_neighbours = Some(sh.node.gossip_neighbours());
    Ok(report)
}

pub fn run(ctx: &Ctx, a: &RunArgs) -> Result<()> {
    let mut settings = RunSettings::resolve(a)?;
    settings.home = Some(ctx.home.to_path_buf());
    if a.check {
        print!("{}", settings.to_toml()?);
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(serve(ctx, &settings))
}

fn write_api_file(home: &std::path::Path, info: &ApiInfo) -> Result<()> {
    crate::home::write_private(&api_file(home), &serde_json::to_vec(info)?)
}

async fn serve(ctx: &Ctx, a: &RunSettings) -> Result<()> {
    // A command run a moment ago may still hold the store: wait for it.
    let store = ctx
        .open_waiting(commands::STORE_PATIENCE, || false)?
        .ok_or_else(|| anyhow::anyhow!("the store stayed in use"))?;
    let key = ctx.key()?;
    // Only the key the store's trust root names makes this the admin till.
    let admin = ctx.admin_key().filter(|_| store.holds_admin_key());
    let relays = store.relays()?;
    let relay_certs = store.relay_certs()?;
    let store_id = store.store_id();
    let (outbox_tx, outbox_rx) = tokio::sync::mpsc::unbounded_channel();
    let (events_tx, events_rx) = tokio::sync::mpsc::unbounded_channel();
    let hub = crate::events::Hub::new(backups::now_ms());
    let jobs = crate::jobs::Jobs::new(hub.clone());
    let (handle, thread) = StoreHandle::spawn_watched(store, Some(outbox_tx), Some(events_tx));
    // Old idempotency keys go: a POS retries within minutes, not weeks.
    if let Ok(Err(e)) = handle
        .call(|s| s.prune_idempotency_keys(backups::now_ms().saturating_sub(IDEMPOTENCY_KEPT_MS)))
        .await
    {
        tracing::warn!(error = %e, "cannot prune old idempotency keys");
    }
    let over = a.sync_interval_s;
    let (interval, limits) = handle
        .call(move |s| crate::config::sync_tuning(s, over))
        .await??;
    let node = Node::spawn(
        handle.clone(),
        &key,
        NodeConfig {
            bind: (!a.relay_only).then_some(a.bind),
            relays: relays.clone(),
            relay_certs,
            sync_interval: interval,
            limits,
            fanout: 3,
            admin: admin.clone(),
            mdns: a.mdns && !a.relay_only,
        },
        Some(outbox_rx),
    )
    .await
    .context("cannot start the mesh node")?;
    let node = Arc::new(node);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", a.api_port))
        .await
        .with_context(|| {
            if a.api_port == 0 {
                "cannot open the local API port".to_string()
            } else {
                format!(
                    "cannot open the local API on port {} (is it taken?)",
                    a.api_port
                )
            }
        })?;
    let port = listener.local_addr()?.port();
    // The socket before the file: a command that finds the file finds the socket.
    #[cfg(unix)]
    let socket = bind_socket(&ctx.home)?;
    let token = hex::encode(rand::random::<[u8; 32]>());
    write_api_file(
        &ctx.home,
        &ApiInfo {
            version: 1,
            port,
            token: token.clone(),
            pid: std::process::id(),
            socket: api_socket(&ctx.home),
        },
    )?;
    let stop = Arc::new(Notify::new());
    let dashboard = Arc::new(crate::dashboard::Sessions::default());
    let shared = Arc::new(Shared {
        store: handle.clone(),
        node: node.clone(),
        home: ctx.home.clone(),
        key: key.clone(),
        admin,
        store_id,
        // A peer counts as online if a sync succeeded within three intervals.
        online_window_ms: (interval.as_millis() as u64 * 3).max(30_000),
        started_ms: backups::now_ms(),
        stop: stop.clone(),
        hub: hub.clone(),
        dashboard: dashboard.clone(),
        api_port: port,
        jobs: jobs.clone(),
    });
    let addr = node.addr();
    let reach: Vec<String> = addr
        .ip
        .iter()
        .map(|a| a.to_string())
        .chain(relays.iter().cloned())
        .collect();
    let reach = if reach.is_empty() {
        // Relay-only with no relay configured: say so rather than print nothing.
        "unreachable (relay-only and no relay configured: tillmesh relays add URL)".to_string()
    } else {
        reach.join(" ")
    };
    println!(
        "tillmesh: till {} running; local API on 127.0.0.1:{port}; mesh {reach}",
        key.till_id().fmt_short(),
    );
    tracing::info!(
        till = %key.till_id().fmt_short(),
        api_port = port,
        mesh = reach,
        version = env!("CARGO_PKG_VERSION"),
        "daemon started"
    );
    let mut actors = crate::supervisor::Supervisor::default();
    {
        let (store, home, jobs) = (handle.clone(), ctx.home.to_path_buf(), jobs.clone());
        actors.spawn("backup scheduler", move || {
            backup_scheduler(store.clone(), home.clone(), jobs.clone())
        });
    }
    {
        let (store, node, home) = (handle.clone(), node.clone(), ctx.home.to_path_buf());
        actors.spawn("key keeper", move || {
            key_keeper(store.clone(), node.clone(), home.clone())
        });
    }
    {
        let (store, node, home) = (handle.clone(), node.clone(), ctx.home.to_path_buf());
        let every = Duration::from_secs(a.mailbox_every_s.max(1));
        actors.spawn("drive mailbox", move || {
            drive_mailbox(store.clone(), node.clone(), home.clone(), every)
        });
    }
    {
        let (store, node) = (handle.clone(), node.clone());
        actors.spawn("relay watch", move || {
            relay_watch(store.clone(), node.clone(), over)
        });
    }
    {
        // The store's events, in the order its thread sent them, into the hub.
        let hub = hub.clone();
        let events = Arc::new(tokio::sync::Mutex::new(events_rx));
        actors.spawn("store events", move || {
            let (hub, events) = (hub.clone(), events.clone());
            async move {
                let mut events = events.lock().await;
                while let Some(e) = events.recv().await {
                    hub.store_event(e);
                }
            }
        });
    }
    {
        let (hub, home) = (hub.clone(), ctx.home.to_path_buf());
        actors.spawn("journal", move || {
            crate::journal::keep(hub.clone(), home.clone())
        });
    }
    {
        let (node, hub) = (node.clone(), hub.clone());
        actors.spawn("sync events", move || {
            crate::events::watch_sessions(node.clone(), hub.clone())
        });
    }
    {
        let (sh, hub) = (Arc::downgrade(&shared), hub.clone());
        let home = ctx.home.to_path_buf();
        actors.spawn("alerts", move || {
            let sh = sh.clone();
            crate::events::watch_alerts(
                move || {
                    let sh = sh.clone();
                    Box::pin(async move {
                        let sh = sh.upgrade()?;
                        let report = live_status(&sh).await.ok()?;
                        let (hooks, backoff) = sh
                            .store
                            .call(|s| {
                                anyhow::Ok((crate::alerts::webhooks(s)?, crate::config::backoff(s)?))
                            })
                            .await
                            .ok()?
                            .unwrap_or_else(|e| {
                                tracing::warn!(error = %format!("{e:#}"), "cannot read the webhooks");
                                (Vec::new(), Default::default())
                            });
                        Some((report, hooks, backoff))
                    })
                },
                hub.clone(),
                home.clone(),
            )
        });
    }
    let app = crate::api::router()
        .merge(crate::dashboard::router())
        .route(
            "/v1/exec",
            post(exec).layer(axum::extract::DefaultBodyLimit::max(
                crate::api::MAX_FILE_BODY,
            )),
        )
        .with_state(shared.clone());
    let gate = |host_port| {
        let gate = Arc::new(Gate {
            token: token.clone(),
            host_port,
            sessions: dashboard.clone(),
        });
        app.clone()
            .layer(axum::middleware::from_fn_with_state(gate, check_request))
    };
    // `/metrics` alone on the LAN, for the store's Prometheus, with a token of
    // its own (it does not change with each start, as the API's does).
    let metrics_listener = match (&a.metrics_bind, &a.metrics_token_file) {
        (Some(addr), Some(file)) => {
            let token = read_metrics_token(file)?;
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot serve the metrics on {addr}"))?;
            let app = Router::new()
                .route("/metrics", axum::routing::get(crate::api::metrics))
                .with_state(shared.clone())
                .layer(axum::middleware::from_fn_with_state(
                    Arc::new(token),
                    check_metrics_token,
                ));
            Some((l, app))
        }
        _ => None,
    };
    let tcp_app = gate(Some(port));
    #[cfg(unix)]
    let unix_app = gate(None);
    // Only the two served copies may hold the shared state (and so the node):
    // at shutdown the node must be the daemon's alone to be shut down.
    drop(app);
    let stop_signal = stop.clone();
    let shutdown = async move {
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term => {}
            _ = stop_signal.notified() => {}
        }
    };
    // Both listeners stop together.
    let (down_tx, down_rx) = tokio::sync::watch::channel(false);
    let down = move || {
        let mut rx = down_rx.clone();
        async move {
            let _ = rx.wait_for(|down| *down).await;
        }
    };
    let hub_stop = hub.clone();
    let signal = async move {
        shutdown.await;
        // Event streams never end on their own: end them, or the listeners
        // would wait for them for ever.
        hub_stop.close();
        let _ = down_tx.send(true);
    };
    let tcp = axum::serve(listener, tcp_app).with_graceful_shutdown(down());
    let lan_metrics = async {
        match metrics_listener {
            Some((l, app)) => axum::serve(l, app).with_graceful_shutdown(down()).await,
            None => Ok(()),
        }
    };
    #[cfg(unix)]
    let (_, tcp, unix, metrics) = tokio::join!(
        signal,
        tcp.into_future(),
        axum::serve(socket, unix_app)
            .with_graceful_shutdown(down())
            .into_future(),
        lan_metrics
    );
    #[cfg(not(unix))]
    let (_, tcp, unix, metrics) =
        tokio::join!(signal, tcp.into_future(), async { Ok(()) }, lan_metrics);
    let served = tcp.and(unix).and(metrics);
    let _ = std::fs::remove_file(api_file(&ctx.home));
    let _ = std::fs::remove_file(api_socket(&ctx.home));
    actors.shutdown().await;
    // What `status` shows of the other tills until the daemon is back.
    if let Ok(report) = live_status(&shared).await
        && let Err(e) = status::save_last(&ctx.home, &report, backups::now_ms())
    {
        tracing::warn!(error = %format!("{e:#}"), "cannot keep the last status");
    }
    drop(shared);
    match Arc::try_unwrap(node) {
        Ok(node) => node.shutdown().await,
        Err(_) => tracing::warn!("node still in use at shutdown"),
    }
    drop(handle);
    // The store thread ends once its last handle is gone, after its last commit.
    let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    println!("tillmesh: stopped cleanly");
    tracing::info!("daemon stopped cleanly");
    served.context("the local API failed")
}

/// How long an idempotency key of a sale is kept (7 days).
const IDEMPOTENCY_KEPT_MS: u64 = 7 * 86_400_000;

/// How often the daemon checks the store's relay list and sync settings.
const RELAY_CHECK: Duration = Duration::from_secs(2);

/// The store's relay list and sync settings, followed while the daemon
/// runs: `tillmesh relays add` or `remove`, or `tillmesh config set sync/…`,
/// here or on any other till takes effect without a restart (`over` is this
/// till's own `--sync-interval`, which stays).
async fn relay_watch(store: StoreHandle, node: Arc<Node>, over: Option<u64>) {
    loop {
        tokio::time::sleep(RELAY_CHECK).await;
        let Ok(read) = store
            .call(move |s| -> Result<_> {
                Ok((
                    s.relays()?,
                    s.relay_certs()?,
                    crate::config::sync_tuning(s, over)?,
                ))
            })
            .await
        else {
            return;
        };
        match read {
            Ok((relays, certs, (interval, limits))) => {
                if let Err(e) = node.set_relays(relays, certs).await {
                    tracing::warn!(error = %e, "cannot use the store's new relay list");
                }
                if node.set_tuning(interval, limits) {
                    tracing::info!(?interval, ?limits, "the store's sync settings changed");
                }
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "cannot read the store's relay list")
            }
        }
    }
}

/// How often the daemon checks the store's backup keys.
const KEY_CHECK: Duration = Duration::from_secs(10);

/// The store's backup keys: on the admin till, a new one when the newest is 30
/// days old and its recovery key published (signed) in the configuration; on
/// every till, the store's announced current key fetched from the till holding
/// it, when this till lacks it.
async fn key_keeper(store: StoreHandle, node: Arc<Node>, home: PathBuf) {
    loop {
        let h = home.clone();
        let wanted = store
            .call(move |s| -> Result<Option<TillId>> {
                backups::rotate_if_due(s, &h)?;
                // On the admin till: put its signed recovery key back at once if
                // another write to the configuration hid it. A damaged
                // recovery.key is an alert in `status`, not a log line every 10 s.
                if let Err(e) = backups::ensure_recovery_key(s, &h) {
                    tracing::debug!(error = %format!("{e:#}"), "the store's recovery key");
                }
                // One Google login for the store, whichever till made it.
                if let Err(e) = crate::drive::share(s, &h) {
                    tracing::debug!(error = %format!("{e:#}"), "sharing the store's Google login");
                }
                let held = s.store_secrets()?;
                Ok(match s.announced_backup_key()? {
                    Some((id, holder))
                        if holder != s.till_id() && !held.iter().any(|k| k.key_id == id) =>
                    {
                        Some(holder)
                    }
                    _ => None,
                })
            })
            .await;
        let holder = match wanted {
            Ok(Ok(h)) => h,
            Ok(Err(e)) => {
                tracing::warn!(error = %format!("{e:#}"), "backup keys");
                None
            }
            Err(_) => return,
        };
        if let Some(holder) = holder {
            match node.fetch_keys(holder, backups::key_matches_id).await {
                Ok(n) => {
                    tracing::info!(new = n, from = %holder.fmt_short(), "fetched the store's backup keys");
                    let h = home.clone();
                    if let Ok(Err(e)) = store.call(move |s| backups::write_keys_file(s, &h)).await {
                        tracing::warn!(error = %format!("{e:#}"), "cannot write store.keys");
                    }
                }
                Err(e) => {
                    tracing::info!(from = %holder.fmt_short(), error = %e, "cannot fetch the store's backup keys yet")
                }
            }
        }
        tokio::time::sleep(KEY_CHECK).await;
    }
}

/// What one round of the Drive mailbox does.
#[derive(Debug, PartialEq, Eq)]
enum MailboxPlan {
    /// Nothing: every member is reached over the mesh, or another till of
    /// this till's part of the mesh keeps the mailbox.
    Idle,
    /// Sync through Drive, not reading the files of these tills (short ids),
    /// whose changes the mesh brings.
    Run(BTreeSet<String>),
}

/// The mailbox round of till `me`, from the store's other `members` and the
/// mesh's `links`: idle while the mesh reaches every member; else run, by the
/// till with the lowest id of the part of the mesh this till is in (one
/// till carries that part's changes to Drive and the others' back), reading
/// only the files of tills the mesh does not reach.
fn mailbox_plan(
    me: TillId,
    members: &[TillId],
    links: &std::collections::HashMap<TillId, tillmesh_mesh::PeerLink>,
) -> MailboxPlan {
    let reached: BTreeSet<TillId> = members
        .iter()
        .filter(|m| {
            links
                .get(m)
                .is_some_and(|l| matches!(l.path.as_str(), "direct" | "relay"))
        })
        .copied()
        .collect();
    if reached.len() == members.len() || reached.iter().any(|r| *r < me) {
        return MailboxPlan::Idle;
    }
    MailboxPlan::Run(reached.iter().map(|t| t.fmt_short()).collect())
}

/// Google Drive as a mailbox between tills: while the store has a Google
/// login and a Drive sink, and some member till is not reached over the
/// mesh (see [`mailbox_plan`]), take the changes the other tills left there
/// and leave what they lack, every `every` (`run --mailbox-every`, a minute
/// by default); so tills with no mesh path between them converge through
/// Drive, and a store whose mesh reaches every till sends Drive nothing.
async fn drive_mailbox(store: StoreHandle, node: Arc<Node>, home: PathBuf, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        if !matches!(crate::drive::load(&home), Ok(Some(_))) {
            continue;
        }
        let plan = mailbox_plan(node.till_id(), &node.members(), &node.links());
        let MailboxPlan::Run(skip) = plan else {
            continue;
        };
        let opened = {
            let h = home.clone();
            tokio::task::spawn_blocking(move || crate::drive::mailbox(&h, None)).await
        };
        let Ok(Ok((name, sink))) = opened else {
            continue;
        };
        let place = backups::Place::Mailbox(name.clone(), skip);
        let progress = crate::jobs::Progress::none();
        match backups::sync_through(&store, &home, sink, &place, true, &progress).await {
            Ok(report) => {
                tracing::debug!(sink = name, report = %String::from_utf8_lossy(&report), "synced through Google Drive")
            }
            Err(e) if e.is::<tillmesh_mesh::StoreClosed>() => return,
            Err(e) => {
                tracing::info!(sink = name, error = %format!("{e:#}"), "cannot sync through Google Drive now")
            }
        }
    }
}

/// Scheduled backups to every configured sink (see `backups::scheduled_round`).
/// The sink list is read again at least every 30 s, so `sink add` takes effect
/// without a restart.
async fn backup_scheduler(store: StoreHandle, home: PathBuf, jobs: crate::jobs::Jobs) {
    let mut state = backups::load_schedule(&home);
    loop {
        let next = match backups::scheduled_round(&store, &home, &mut state, Some(&jobs)).await {
            Ok(next) => next,
            Err(e) if e.is::<tillmesh_mesh::StoreClosed>() => return,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "scheduled backups");
                u64::MAX
            }
        };
        let wait = Duration::from_millis(next.saturating_sub(backups::now_ms()))
            .clamp(Duration::from_millis(200), Duration::from_secs(30));
        tokio::time::sleep(wait).await;
    }
}

fn reply(code: i32, stdout: String, stderr: String) -> Json<ExecReply> {
    Json(ExecReply {
        code,
        stdout,
        stderr,
    })
}

/// The local API's socket in `home`, mode 0600 in the home of mode 0700. A
/// socket left by a daemon that died is replaced: the store is open by now, so
/// no other daemon of this till runs.
#[cfg(unix)]
fn bind_socket(home: &std::path::Path) -> Result<tokio::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    let path = api_socket(home);
    match std::fs::remove_file(&path) {
        Ok(()) => {
            tracing::info!(socket = %path.display(), "replaced the socket of a daemon that did not stop cleanly")
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(e).with_context(|| format!("cannot remove the old {}", path.display()));
        }
    }
    let socket = tokio::net::UnixListener::bind(&path).with_context(|| {
        format!(
            "cannot open the local API socket {} (a till home's path must stay under about 100 bytes)",
            path.display()
        )
    })?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot restrict {}", path.display()))?;
    Ok(socket)
}

/// Who may use one listener of the local API.
struct Gate {
    token: String,
    /// The TCP port whose names a request's `Host` must use (`None`: the Unix
    /// socket, out of a browser's reach).
    host_port: Option<u16>,
    /// The dashboard's sessions, which may read what the page shows.
    sessions: Arc<crate::dashboard::Sessions>,
}

/// Checks every request on its headers, before its body is read: the `Host`
/// (on TCP, so a web page in a browser on this machine cannot reach the API
/// under another name: DNS rebinding), then the bearer token.
async fn check_request(State(gate): State<Arc<Gate>>, req: Request, next: Next) -> Response {
    if let Some(port) = gate.host_port
        && let Err(code) = check_host(req.headers(), port)
    {
        return crate::api::Problem::new(
            code,
            "misdirected",
            format!("the Host header must name 127.0.0.1:{port} or localhost:{port}"),
        )
        .into_response();
    }
    let token = bearer(req.headers());
    let (method, path) = (req.method(), req.uri().path());
    // The dashboard's own files and its code exchange need no token; its
    // session reads only what the page shows.
    let allowed = token.is_some_and(|t| same_token(t, &gate.token))
        || crate::dashboard::is_public(method, path)
        || (crate::dashboard::session_may(method, path)
            && crate::dashboard::session_cookie(req.headers())
                .is_some_and(|s| gate.sessions.valid(s)));
    if !allowed {
        return crate::api::Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send Authorization: Bearer TOKEN with the token in the till home's api.json",
        )
        .into_response();
    }
    // A body said to be too large is refused before a byte of it is read
    // (one sent without a length is cut off at the same size as it is read).
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let limit = crate::api::body_limit(req.uri().path());
    if declared.is_some_and(|n| n > limit as u64) {
        return crate::api::Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("a request body here may hold at most {limit} bytes"),
        )
        .into_response();
    }
    next.run(req).await
}

/// The token of an `Authorization: Bearer TOKEN` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

/// The token in `file` for `--metrics-bind` (at least 16 characters).
fn read_metrics_token(file: &std::path::Path) -> Result<String> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read the metrics token file {}", file.display()))?;
    let token = text.trim().to_string();
    if token.len() < 16 || token.contains(char::is_whitespace) {
        return Err(exit::Rejected(format!(
            "the metrics token in {} must be one word of at least 16 characters (e.g. `openssl rand -hex 24 > {}`)",
            file.display(),
            file.display()
        ))
        .into());
    }
    Ok(token)
}

/// `--metrics-bind`: the bearer token, and nothing but `GET /metrics`.
async fn check_metrics_token(
    State(token): State<Arc<String>>,
    req: Request,
    next: Next,
) -> Response {
    if !bearer(req.headers()).is_some_and(|t| same_token(t, &token)) {
        return crate::api::Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send Authorization: Bearer TOKEN with the token in the --metrics-token-file",
        )
        .into_response();
    }
    next.run(req).await
}

/// A `Host` naming this machine's loopback at `port`: 400 when it is missing
/// or unreadable, 421 when it names anything else.
fn check_host(headers: &HeaderMap, port: u16) -> Result<(), StatusCode> {
    let host = headers
        .get(header::HOST)
        .ok_or(StatusCode::BAD_REQUEST)?
        .to_str()
        .map_err(|_| StatusCode::BAD_REQUEST)?;
    let ok = ["127.0.0.1", "localhost", "[::1]"]
        .iter()
        .any(|name| host.eq_ignore_ascii_case(&format!("{name}:{port}")));
    if ok {
        Ok(())
    } else {
        Err(StatusCode::MISDIRECTED_REQUEST)
    }
}

/// Compare tokens in time that depends only on their lengths (public: 64 hex
/// digits), never on where they first differ.
pub(crate) fn same_token(given: &str, want: &str) -> bool {
    let (a, b) = (given.as_bytes(), want.as_bytes());
    let diff = a
        .iter()
        .zip(b)
        .fold(a.len() ^ b.len(), |acc, (x, y)| acc | usize::from(x ^ y));
    std::hint::black_box(diff) == 0
}

/// `POST /v1/exec`: a command line from a client, parsed here and run by
/// [`crate::core::execute`], as the command line runs it without a daemon.
async fn exec(
    State(sh): State<Arc<Shared>>,
    Json(req): Json<ExecRequest>,
) -> Result<Json<ExecReply>, StatusCode> {
    let argv = std::iter::once("tillmesh".to_string()).chain(req.args);
    let mut cli = match Cli::try_parse_from(argv) {
        Ok(c) => c,
        Err(e) => {
            let text = e.render().to_string();
            return Ok(if e.use_stderr() {
                reply(2, String::new(), text)
            } else {
                reply(0, text, String::new())
            });
        }
    };
    if let Some(cwd) = &req.cwd {
        cli.command.absolutize(cwd);
    }
    let request = crate::core::Request {
        command: cli.command,
        caller: crate::core::Caller {
            env: req.env,
            files: req.files,
        },
    };
    let (mut out, printed) = crate::core::capture();
    let result = crate::core::execute(&sh.store, &sh.home, Some(&sh), request, &mut out).await;
    drop(out);
    match result {
        Ok(()) => Ok(reply(0, printed.text(), String::new())),
        Err(e) if e.is::<tillmesh_mesh::StoreClosed>() => Err(StatusCode::SERVICE_UNAVAILABLE),
        Err(e) => Ok(reply(
            exit::code(&e),
            printed.text(),
            format!("error: {e:#}\n"),
        )),
    }
}

pub(crate) async fn invite(sh: &Shared, hours: u64, role: &str) -> Result<Vec<u8>> {
    let role: tillmesh_store::Role = role.parse().map_err(exit::Rejected)?;
    let admin = sh.admin.clone().ok_or_else(|| {
        exit::Rejected("only the admin till (the one that ran `tillmesh init`) can invite".into())
    })?;
    let expires = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as u64
        + hours.max(1) * 3_600_000;
    let adm = admin.clone();
    let secret = sh
        .store
        .call(move |s| s.create_invite_as(&adm, expires, role))
        .await??;
    let addr = sh.node.addr();
    // The fingerprints of the relays in the ticket's address, under the URLs as
    // written there (the endpoint's own form may differ from the configured one
    // by a trailing slash).
    let certs = sh.store.call(|s| s.relay_certs()).await??;
    let relay_certs = tillmesh_mesh::relay::certs_for(&addr.relay, &certs)
        .into_iter()
        .collect();
    let ticket = Ticket {
        version: 2,
        store: *sh.store_id.as_bytes(),
        admin_key: *admin.till_id().as_bytes(),
        admin_till: *sh.key.till_id().as_bytes(),
        addr,
        secret,
        expires_ms: expires,
        relay_certs,
    };
    Ok(format!("{}\n", ticket.encode()).into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use tillmesh_mesh::PeerLink;
    use tillmesh_store::TillKey;

    #[test]
    fn the_mailbox_runs_only_for_tills_the_mesh_does_not_reach_and_by_one_till() {
        let mut ids: Vec<TillId> = (0..4).map(|_| TillKey::generate().till_id()).collect();
        ids.sort();
        let [a, b, c, d] = [ids[0], ids[1], ids[2], ids[3]];
        let on = |path: &str| PeerLink {
            path: path.into(),
            ..PeerLink::default()
        };
        // Every member reached: Drive is left alone.
        let all: HashMap<TillId, PeerLink> =
            [(b, on("direct")), (c, on("relay")), (d, on("direct"))].into();
        assert_eq!(mailbox_plan(a, &[b, c, d], &all), MailboxPlan::Idle);
        // D cut off: A (the lowest of its part of the mesh) keeps the mailbox,
        // reading D's files only.
        let cut: HashMap<TillId, PeerLink> =
            [(b, on("direct")), (c, on("relay")), (d, on("offline"))].into();
        assert_eq!(
            mailbox_plan(a, &[b, c, d], &cut),
            MailboxPlan::Run([b.fmt_short(), c.fmt_short()].into())
        );
        // B, in A's part, leaves it to A.
        let from_b: HashMap<TillId, PeerLink> =
            [(a, on("direct")), (c, on("direct")), (d, on("offline"))].into();
        assert_eq!(mailbox_plan(b, &[a, c, d], &from_b), MailboxPlan::Idle);
        // D, alone, reads everyone's.
        let alone: HashMap<TillId, PeerLink> = [(a, on("offline"))].into();
        assert_eq!(
            mailbox_plan(d, &[a, b, c], &alone),
            MailboxPlan::Run(BTreeSet::new())
        );
    }
}
