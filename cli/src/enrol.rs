//! `tillmesh join` and `tillmesh relay`: the commands that run without a store of
//! their own yet, or without one at all.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use tillmesh_mesh::{JoinReply, Node, NodeConfig, StoreHandle, Ticket, endpoint, request_join};
use tillmesh_store::{NewStore, Role, Store, StoreId, TillId, TillKey, TillName};

use crate::args::{JoinArgs, RelayArgs};
use crate::commands::{Ctx, create_home};
use crate::exit::Rejected;

/// No endpoint hooks: a joining till dials out only.
#[derive(Debug, Clone)]
struct NoHooks;
impl iroh::endpoint::EndpointHooks for NoHooks {}

/// Largest ticket read from standard input or a file: a real one is a few
/// hundred bytes.
const MAX_TICKET: u64 = 64 * 1024;

/// The ticket's text: the argument itself, or from standard input (`-`) or a
/// file (`@FILE`).
fn ticket_text(arg: &str) -> Result<String> {
    use std::io::Read;
    let (source, from): (Box<dyn Read>, String) = if arg == "-" {
        (Box::new(std::io::stdin().lock()), "standard input".into())
    } else if let Some(path) = arg.strip_prefix('@') {
        let f = std::fs::File::open(path)
            .with_context(|| format!("cannot read the ticket file {path}"))?;
        (Box::new(f), path.to_string())
    } else {
        return Ok(arg.to_string());
    };
    let mut text = String::new();
    source
        .take(MAX_TICKET + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read the ticket from {from}"))?;
    if text.len() as u64 > MAX_TICKET {
        bail!(Rejected(format!(
            "{from} holds more than a ticket ({MAX_TICKET} bytes or more); give the file with the line `tillmesh invite` printed"
        )));
    }
    if text.trim().is_empty() {
        bail!(Rejected(format!("no ticket in {from}")));
    }
    Ok(text.trim().to_string())
}

pub fn join(ctx: &Ctx, a: &JoinArgs, out: &mut dyn std::io::Write) -> Result<()> {
    let text = ticket_text(&a.ticket)?;
    let mut ticket = Ticket::decode(&text).map_err(|e| Rejected(e.to_string()))?;
    // Relays given here are tried too, as ways to the admin till.
    for r in &a.relays {
        crate::commands::check_relay_url(r)?;
        if !ticket
            .addr
            .relay
            .iter()
            .any(|t| tillmesh_mesh::relay::same_url(t, r))
        {
            ticket.addr.relay.push(r.clone());
        }
    }
    let name: TillName = a.till.parse().map_err(|e| Rejected(format!("{e}")))?;
    if ctx.store_path().exists() {
        return Err(
            tillmesh_store::OpenStoreError::AlreadyExists(ctx.home.display().to_string()).into(),
        );
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as u64;
    if now > ticket.expires_ms {
        bail!(Rejected(
            "this ticket has expired; ask for a new one (tillmesh invite)".into()
        ));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async {
        let key = TillKey::generate();
        let relays = ticket.addr.relay.clone();
        // The request goes out from a port of its own: the store is fetched
        // next on `--bind`, which this endpoint may not have released yet
        // (a fixed port failed to bind then, after the admin till had
        // already certified the name).
        let ep = endpoint(
            &key,
            Some(std::net::SocketAddr::new(a.bind.ip(), 0)),
            &relays,
            &ticket.relay_certs_for(&relays),
            None::<NoHooks>,
        )
        .await?;
        let reply = request_join(&ep, &ticket, name.as_str()).await;
        ep.close().await;
        let (store_name, role, relays, store_keys) = match reply? {
            JoinReply::Accepted {
                store_name,
                role,
                relays,
            } => (store_name, role, relays, Vec::new()),
            JoinReply::AcceptedWithKeys {
                store_name,
                role,
                relays,
                store_keys,
            } => (store_name, role, relays, store_keys),
            JoinReply::Refused(why) => bail!(Rejected(format!("the admin till refused: {why}"))),
        };
        let role: Role = role.parse().map_err(Rejected)?;
        create_home(&ctx.home)?;
        let mut store = Store::create(
            &ctx.store_path(),
            key.clone(),
            NewStore {
                store_id: StoreId::from_bytes(ticket.store),
                store_name: store_name.clone(),
                till_name: name.clone(),
                role,
                founder: false,
            },
            ctx.opts.clone(),
        )?;
        store.set_admin_key(TillId::from_bytes(ticket.admin_key))?;
        for k in store_keys {
            store.add_store_secret(k)?;
        }
        if !store.store_secrets()?.is_empty() {
            crate::backups::write_keys_file(&store, &ctx.home)?;
        }
        key.save(&ctx.key_path())?;
        // Fetch the store's documents from the admin till.
        let (handle, thread) = StoreHandle::spawn(store, None);
        let node = Node::spawn(
            handle.clone(),
            &key,
            NodeConfig {
                bind: Some(a.bind),
                relays: relays.clone(),
                relay_certs: ticket.relay_certs_for(&relays),
                sync_interval: Duration::from_secs(3600),
                fanout: 0,
                ..NodeConfig::default()
            },
            None,
        )
        .await?;
        let admin_till = TillId::from_bytes(ticket.admin_till);
        node.add_addr(&admin_till, &ticket.addr);
        let synced = node.sync_with(admin_till).await;
        node.shutdown().await;
        drop(handle);
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        let report = synced.context("joined, but the first sync failed; `tillmesh run` will retry")?;
        writeln!(
            out,
            "Joined store {store_name:?} as till {name} ({role}); received {} changes in {} documents.\nStart syncing with: tillmesh run",
            report.changes_received, report.docs
        )?;
        Ok(())
    })
}

pub fn relay(home: &std::path::Path, a: &RelayArgs) -> Result<()> {
    use tillmesh_mesh::relay::{Relay, RelayIdentity};
    let dir = home.join(crate::home::HomeFile::Relay.name());
    let identity = match (&a.tls_cert, &a.tls_key) {
        (Some(cert), Some(key)) => Some(RelayIdentity::from_pem_files(cert, key)?),
        _ if a.no_discovery => None,
        _ => Some(RelayIdentity::load_or_create(&dir)?),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async {
        let relay = match (a.https, &identity) {
            (Some(https), Some(id)) => Relay::spawn_tls(a.bind, https, id).await?,
            _ => Relay::spawn(a.bind, identity.as_ref()).await?,
        };
        // The URL and then the certificate fingerprint alone on stdout, for
        // scripts; the rest on stderr.
        println!("{}", relay.url());
        let kept = match (&a.tls_cert, &a.tls_key) {
            (Some(cert), Some(key)) => format!("from {} and {}", cert.display(), key.display()),
            _ => format!("kept in {}", dir.display()),
        };
        match relay.fingerprint() {
            Some(fp) => {
                println!("{fp}");
                let what = if a.https.is_some() {
                    "relay over HTTPS, address discovery over UDP, same port"
                } else {
                    "relay over TCP, address discovery over UDP, same port"
                };
                eprintln!(
                    "tillmesh relay: serving {url} ({what})\n\
                     certificate fingerprint {fp} ({kept})\n\
                     add it to the store with: tillmesh relays add {url} --cert {fp}\n\
                     (with this machine's address in place of an unspecified one)",
                    url = relay.url(),
                );
            }
            None => eprintln!(
                "tillmesh relay: serving {} without address discovery (add it with: tillmesh relays add URL)",
                relay.url()
            ),
        }
        #[cfg(unix)]
        {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        tokio::signal::ctrl_c().await?;
        relay.shutdown().await;
        Ok(())
    })
}
