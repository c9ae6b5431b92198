//! `tillmesh admin export|import`: a second admin till, so losing one machine
//! does not lock the store; `admin certify`, a till restored on a new machine;
//! and `tillmesh export-unsynced`, a till's own sales
//! that no member holds, for the back office.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;
use tillmesh_store::{EntryKind, MemberStatus, SaleRecord, Store, TillId, TillKey};

use crate::args::AdminCmd;
use crate::backups::{OpenedRecovery, now_ms, write_recovery};
use crate::commands::{ADMIN_KEY_FILE, RECOVERY_KEY_FILE, rejected};
use crate::home::write_private;
use crate::output::money;

/// Format version of `export-unsynced` files.
const UNSYNCED_VERSION: u16 = 1;

/// `tillmesh admin export FILE` and `tillmesh admin import FILE`.
pub fn admin(store: &mut Store, home: &Path, cmd: &AdminCmd, out: &mut dyn Write) -> Result<()> {
    match cmd {
        AdminCmd::Export { file } => {
            refuse_existing(file)?;
            let admin = TillKey::load(&home.join(ADMIN_KEY_FILE))
                .ok()
                .filter(|_| store.holds_admin_key())
                .ok_or_else(|| {
                    rejected(
                        "this till does not hold the store's admin key: run `admin export` on an admin till",
                    )
                })?;
            write_recovery(store, home, &admin, file)?;
            writeln!(
                out,
                "Wrote the admin key and the {} backup keys to {} (passphrase-protected). \
                 On another till of this store, with its daemon stopped: \
                 TILLMESH_RECOVERY_PASSPHRASE=... tillmesh admin import FILE",
                store.store_secrets()?.len(),
                file.display()
            )?;
            Ok(())
        }
        AdminCmd::Import { file } => import(store, home, file, out),
        AdminCmd::Certify {
            till,
            name,
            role,
            quiet,
        } => {
            let mut sink = std::io::sink();
            let out: &mut dyn Write = if *quiet { &mut sink } else { out };
            certify(store, home, till, name, role, out)
        }
    }
}

/// `tillmesh admin certify ID --name NAME`: the admin key certifies a till
/// key that came with no ticket (a till restored on a new machine). A revoked
/// till is never certified again, and a name another till has is refused:
/// receipt numbers carry it.
fn certify(
    store: &mut Store,
    home: &Path,
    till: &str,
    name: &str,
    role: &str,
    out: &mut dyn Write,
) -> Result<()> {
    let admin = TillKey::load(&home.join(ADMIN_KEY_FILE))
        .ok()
        .filter(|_| store.holds_admin_key())
        .ok_or_else(|| rejected("only an admin till can certify a till"))?;
    let id: TillId = till.parse().map_err(|e| {
        rejected(format!(
            "{e}: give the new till's full id (`tillmesh info` on it)"
        ))
    })?;
    let till_name: tillmesh_store::TillName = name.parse().map_err(|e| rejected(format!("{e}")))?;
    let role: tillmesh_store::Role = role.parse().map_err(rejected)?;
    match store.member_status(&id)? {
        MemberStatus::Revoked(_) => {
            return Err(rejected(format!(
                "till {} was revoked; a revoked till is never certified again",
                id.fmt_short()
            )));
        }
        MemberStatus::Member(info) if info.name == name && info.role == role => {
            writeln!(out, "Till {name} ({}) is already a member.", id.fmt_short())?;
            return Ok(());
        }
        _ => {}
    }
    if let Some(other) = store.tills()?.iter().find(|t| t.name == name && t.id != id) {
        return Err(rejected(format!(
            "the name {name} is taken by till {}: give the new till a name of its own",
            other.id.fmt_short()
        )));
    }
    store
        .certify(&admin, id, &till_name, role)
        .map_err(|e| rejected(e.to_string()))?;
    writeln!(
        out,
        "Certified till {name} ({}, {role}); every member accepts it once this change reaches them.",
        id.fmt_short()
    )?;
    Ok(())
}

fn import(store: &mut Store, home: &Path, file: &Path, out: &mut dyn Write) -> Result<()> {
    let opened = OpenedRecovery::read(file)?;
    if opened.store_id != store.store_id() {
        return Err(rejected(format!(
            "{} belongs to store {} ({}), not to this till's store {} ({})",
            file.display(),
            opened.r.store_name,
            opened.store_id.fmt_short(),
            store.store_name(),
            store.store_id().fmt_short()
        )));
    }
    if store.holds_admin_key() {
        writeln!(out, "This till already holds the store's admin key.")?;
        return Ok(());
    }
    store
        .import_admin_key(opened.admin_key.clone())
        .map_err(|e| rejected(format!("{}: {e}", file.display())))?;
    for secret in &opened.r.secrets {
        store.add_store_secret(secret.clone())?;
    }
    opened
        .admin_key
        .save(&home.join(ADMIN_KEY_FILE))
        .with_context(|| format!("cannot write {ADMIN_KEY_FILE}"))?;
    let recovery = home.join(RECOVERY_KEY_FILE);
    if let Some(k) = &opened.r.recovery
        && !recovery.exists()
    {
        write_private(&recovery, &serde_json::to_vec_pretty(k)?)?;
    }
    writeln!(
        out,
        "This till now holds the store's admin key: it can invite, revoke and change \
         any document. Start its daemon (tillmesh run)."
    )?;
    Ok(())
}

/// What `export-unsynced` writes.
#[derive(Serialize)]
struct Unsynced {
    format: &'static str,
    version: u16,
    store: String,
    store_name: String,
    till: String,
    till_name: String,
    /// This till held the admin's signed revocation of its membership when it
    /// wrote the file (a till cut off before the revocation reached it does
    /// not: `tillmesh status` says what it learned from its peers).
    revocation_held: bool,
    /// Unix ms.
    exported_ms: u64,
    sales: Vec<SaleRecord>,
}

/// `tillmesh export-unsynced FILE`: this till's own sales, voids and refunds
/// that no member in good standing is known to hold.
pub fn export_unsynced(store: &mut Store, file: &Path, out: &mut dyn Write) -> Result<()> {
    refuse_existing(file)?;
    let me = store.till_id();
    let mut members: Vec<TillId> = Vec::new();
    for t in store.tills()? {
        if t.id != me && matches!(store.member_status(&t.id)?, MemberStatus::Member(_)) {
            members.push(t.id);
        }
    }
    let sales = store.unsynced_sales(&members)?;
    let report = Unsynced {
        format: "tillmesh-unsynced",
        version: UNSYNCED_VERSION,
        store: store.store_id().to_string(),
        store_name: store.store_name().to_string(),
        till: me.to_string(),
        till_name: store.till_name().to_string(),
        revocation_held: matches!(store.member_status(&me)?, MemberStatus::Revoked(_)),
        exported_ms: now_ms(),
        sales,
    };
    write_private(file, &serde_json::to_vec_pretty(&report)?)?;
    let total: i64 = report
        .sales
        .iter()
        .map(|s| match s.entry.kind {
            EntryKind::Sale => s.entry.total_cents,
            _ => -s.entry.total_cents,
        })
        .sum();
    writeln!(
        out,
        "Wrote {} that no other member holds ({} net) to {}.",
        match report.sales.len() {
            1 => "1 entry".to_string(),
            n => format!("{n} entries"),
        },
        money(total),
        file.display()
    )?;
    Ok(())
}

fn refuse_existing(file: &Path) -> Result<()> {
    if file.exists() {
        return Err(rejected(format!(
            "{} exists already; choose a new file name",
            file.display()
        )));
    }
    Ok(())
}
