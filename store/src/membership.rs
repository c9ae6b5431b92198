//! Who belongs to the store: admin-signed membership certificates and revocations
//! in the `membership` document, the store's admin key (the trust root, kept in the
//! till's meta table), and one-time invitations.
//!
//! Anyone who can write the membership document can write a field, so nothing is
//! taken on trust: a till is a member only while its entry carries a certificate
//! that verifies under the admin key and no valid revocation.

use redb::{ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::StorageError;
use crate::ids::{DocId, StoreId, TillId, TillName};
use crate::keys::{TillKey, verify};
use crate::model::{Role, TillInfo};
use crate::store::Store;
use crate::tables::{self, meta};
use crate::views::read_json;

/// Whether a till may talk to this one.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MemberStatus {
    /// A member in good standing.
    Member(TillInfo),
    /// Not in the membership document, or without a valid certificate.
    Unknown,
    /// Revoked by the admin.
    Revoked(TillInfo),
}

/// Membership operations that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MembershipError {
    /// The key is not this store's admin key.
    #[error("this key is not the store's admin key; run the command on the admin till")]
    NotAdmin,
    /// The store has no admin key yet.
    #[error("this till does not know its store's admin key")]
    NoAdminKey,
    /// The till is not in the membership document.
    #[error("no till {0} in this store")]
    UnknownTill(String),
    /// The invitation is unknown, used or expired.
    #[error("{0}")]
    Invite(String),
    /// Storage error.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

fn cert_message(store: &StoreId, till: &TillId, role: Role, name: &str) -> Vec<u8> {
    let mut m = b"tillmesh membership v1\0".to_vec();
    m.extend_from_slice(store.as_bytes());
    m.extend_from_slice(till.as_bytes());
    m.extend_from_slice(role.to_string().as_bytes());
    m.push(0);
    m.extend_from_slice(name.as_bytes());
    m
}

fn revoke_message(store: &StoreId, till: &TillId) -> Vec<u8> {
    let mut m = b"tillmesh revocation v1\0".to_vec();
    m.extend_from_slice(store.as_bytes());
    m.extend_from_slice(till.as_bytes());
    m
}

pub(crate) fn sig_ok(admin: &TillId, msg: &[u8], sig_hex: Option<&str>) -> bool {
    let mut sig = [0u8; 64];
    sig_hex.is_some_and(|h| hex::decode_to_slice(h, &mut sig).is_ok() && verify(admin, msg, &sig))
}

/// An invitation that exists, is unused and has not expired.
fn usable(invite: Option<Invite>, now_ms: u64) -> Result<Invite, MembershipError> {
    let invite = invite.ok_or_else(|| MembershipError::Invite("unknown invitation".into()))?;
    if invite.used {
        return Err(MembershipError::Invite(
            "this invitation was already used".into(),
        ));
    }
    if now_ms > invite.expires_ms {
        return Err(MembershipError::Invite(
            "this invitation has expired".into(),
        ));
    }
    Ok(invite)
}

/// An invitation as the admin till keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Invite {
    expires_ms: u64,
    used: bool,
    /// The role the new till is certified in (invitations made before roles
    /// were chosen at invitation: a till).
    #[serde(default = "default_role")]
    role: Role,
}

fn default_role() -> Role {
    Role::Till
}

impl Store {
    /// The store's admin public key, if this till knows it.
    pub fn admin_key(&self) -> Result<Option<TillId>, StorageError> {
        Ok(self.admin)
    }

    /// Set the store's admin public key: the trust root for membership. Set once.
    pub fn set_admin_key(&mut self, admin: TillId) -> Result<(), MembershipError> {
        match self.admin_key()? {
            Some(k) if k == admin => return Ok(()),
            Some(_) => return Err(MembershipError::NotAdmin),
            None => {}
        }
        let txn = self.db.begin_write().map_err(StorageError::from)?;
        txn.open_table(tables::META)
            .map_err(StorageError::from)?
            .insert(meta::ADMIN_KEY, admin.as_bytes().as_slice())
            .map_err(StorageError::from)?;
        txn.commit().map_err(StorageError::from)?;
        self.admin = Some(admin);
        Ok(())
    }

    pub(crate) fn check_admin(&self, admin: &TillKey) -> Result<(), MembershipError> {
        match self.admin_key()? {
            None => Err(MembershipError::NoAdminKey),
            Some(k) if k != admin.till_id() => Err(MembershipError::NotAdmin),
            Some(_) => Ok(()),
        }
    }

    /// Admit a till: write its name, role and an admin-signed certificate.
    pub fn certify(
        &mut self,
        admin: &TillKey,
        till: TillId,
        name: &TillName,
        role: Role,
    ) -> Result<(), MembershipError> {
        self.check_admin(admin)?;
        self.admin_signer.get_or_insert_with(|| admin.clone());
        let cert = admin.sign(&cert_message(&self.store_id(), &till, role, name.as_str()));
        let group = format!("till/{till}");
        let hlc = self.tick();
        let mut w = self.writer()?;
        w.put_fields(
            DocId::Membership,
            hlc,
            &[
                (format!("{group}/name"), json!(name.as_str())),
                (format!("{group}/role"), json!(role.to_string())),
                (format!("{group}/cert"), json!(hex::encode(cert))),
            ],
        )?;
        w.audit(
            "enrol",
            &till.to_string(),
            json!({"name": name.as_str(), "role": role.to_string()}),
        )?;
        w.commit()?;
        Ok(())
    }

    /// Revoke a till: every member refuses it once this change reaches them.
    pub fn revoke(&mut self, admin: &TillKey, till: TillId) -> Result<(), MembershipError> {
        self.check_admin(admin)?;
        self.admin_signer.get_or_insert_with(|| admin.clone());
        if !self.tills()?.iter().any(|t| t.id == till) {
            return Err(MembershipError::UnknownTill(till.fmt_short()));
        }
        let sig = admin.sign(&revoke_message(&self.store_id(), &till));
        let hlc = self.tick();
        let mut w = self.writer()?;
        w.put_fields(
            DocId::Membership,
            hlc,
            &[(format!("till/{till}/revoked"), json!(hex::encode(sig)))],
        )?;
        w.audit("revoke", &till.to_string(), json!({}))?;
        w.commit()?;
        // What the revoked till wrote before now stays provable after its own
        // proofs stop counting: the admin key signs its documents as held here.
        self.attest_documents_of(admin, &till)?;
        Ok(())
    }

    /// Publish how peers can reach this till (opaque to the store: the mesh's
    /// address format). Written only when it changed.
    pub fn publish_address(&mut self, addr: serde_json::Value) -> Result<(), StorageError> {
        let me = self.till_id();
        if self
            .tills()?
            .iter()
            .any(|t| t.id == me && t.addr.as_ref() == Some(&addr))
        {
            return Ok(());
        }
        let hlc = self.tick();
        let mut w = self.writer()?;
        w.put_fields(DocId::Membership, hlc, &[(format!("till/{me}/addr"), addr)])?;
        w.commit()?;
        Ok(())
    }

    /// Whether `till` is a member in good standing, by the admin key.
    pub fn member_status(&self, till: &TillId) -> Result<MemberStatus, StorageError> {
        let Some(admin) = self.admin_key()? else {
            return Ok(MemberStatus::Unknown);
        };
        let txn = self.db.begin_read()?;
        let t = txn.open_table(tables::V_TILLS)?;
        let Some(info) = t
            .get(till.to_string().as_str())?
            .map(|v| read_json::<TillInfo>("v_tills", v.value()))
            .transpose()?
        else {
            return Ok(MemberStatus::Unknown);
        };
        let store = self.store_id();
        if sig_ok(
            &admin,
            &revoke_message(&store, till),
            info.revoked.as_deref(),
        ) {
            return Ok(MemberStatus::Revoked(info));
        }
        if sig_ok(
            &admin,
            &cert_message(&store, till, info.role, &info.name),
            info.cert.as_deref(),
        ) {
            Ok(MemberStatus::Member(info))
        } else {
            Ok(MemberStatus::Unknown)
        }
    }

    /// Record a one-time invitation valid until `expires_ms`; returns its secret.
    pub fn create_invite(
        &mut self,
        admin: &TillKey,
        expires_ms: u64,
    ) -> Result<[u8; 32], MembershipError> {
        self.create_invite_as(admin, expires_ms, Role::Till)
    }

    /// Record a one-time invitation for a till of `role`, valid until
    /// `expires_ms`; returns its secret.
    pub fn create_invite_as(
        &mut self,
        admin: &TillKey,
        expires_ms: u64,
        role: Role,
    ) -> Result<[u8; 32], MembershipError> {
        self.check_admin(admin)?;
        let secret: [u8; 32] = rand::random();
        let id = blake3::hash(&secret).to_hex().to_string();
        let txn = self.db.begin_write().map_err(StorageError::from)?;
        txn.open_table(tables::INVITES)
            .map_err(StorageError::from)?
            .insert(
                id.as_str(),
                serde_json::to_vec(&Invite {
                    expires_ms,
                    used: false,
                    role,
                })
                .map_err(|e| StorageError::Database(e.to_string()))?
                .as_slice(),
            )
            .map_err(StorageError::from)?;
        txn.commit().map_err(StorageError::from)?;
        Ok(secret)
    }

    /// Whether `secret` is an invitation [`Store::redeem_invite`] would take
    /// now, without using it.
    pub fn check_invite(&self, secret: &[u8; 32], now_ms: u64) -> Result<(), MembershipError> {
        let id = blake3::hash(secret).to_hex().to_string();
        let txn = self.db.begin_read().map_err(StorageError::from)?;
        let t = txn
            .open_table(tables::INVITES)
            .map_err(StorageError::from)?;
        let invite: Option<Invite> = match t.get(id.as_str()).map_err(StorageError::from)? {
            Some(v) => Some(read_json("invites", v.value())?),
            None => None,
        };
        usable(invite, now_ms).map(|_| ())
    }

    /// Use an invitation: succeeds once, before it expires; gives the role the
    /// admin chose for the new till.
    pub fn redeem_invite(
        &mut self,
        secret: &[u8; 32],
        now_ms: u64,
    ) -> Result<Role, MembershipError> {
        let id = blake3::hash(secret).to_hex().to_string();
        let txn = self.db.begin_write().map_err(StorageError::from)?;
        let role;
        {
            let mut t = txn
                .open_table(tables::INVITES)
                .map_err(StorageError::from)?;
            let invite: Option<Invite> = match t.get(id.as_str()).map_err(StorageError::from)? {
                Some(v) => Some(read_json("invites", v.value())?),
                None => None,
            };
            let invite = usable(invite, now_ms)?;
            role = invite.role;
            let used = serde_json::to_vec(&Invite {
                used: true,
                ..invite
            })
            .map_err(|e| StorageError::Database(e.to_string()))?;
            t.insert(id.as_str(), used.as_slice())
                .map_err(StorageError::from)?;
        }
        txn.commit().map_err(StorageError::from)?;
        Ok(role)
    }
}

impl Store {
    /// Audit a backup, restore or USB exchange (`kind`) of `subject`.
    pub fn record_backup_event(
        &mut self,
        kind: &str,
        subject: &str,
        detail: serde_json::Value,
    ) -> Result<(), StorageError> {
        let mut w = self.writer()?;
        w.audit(kind, subject, detail)?;
        w.commit()?;
        Ok(())
    }

    /// Audit a connection refused before any data moved.
    pub fn record_refused(&mut self, peer: &str, reason: &str) -> Result<(), StorageError> {
        let mut w = self.writer()?;
        w.audit("refused", peer, json!({ "reason": reason }))?;
        w.commit()?;
        Ok(())
    }
}

/// One of the store's backup identities as this till holds it: an age X25519
/// secret key and its id. Kept in the till's local store file, never synced as
/// plain text; handed to a new till at enrolment over its authenticated
/// connection. Its `Debug` form hides the secret.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoreSecret {
    /// Short id of the key (named in every file encrypted to it).
    pub key_id: String,
    /// When the key was made.
    pub created_ms: u64,
    /// The age secret key (`AGE-SECRET-KEY-1…`).
    pub identity: String,
}

impl std::fmt::Debug for StoreSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreSecret")
            .field("key_id", &self.key_id)
            .field("created_ms", &self.created_ms)
            .field("identity", &"<secret>")
            .finish()
    }
}

impl Store {
    /// The store's backup identities this till holds, oldest first.
    pub fn store_secrets(&self) -> Result<Vec<StoreSecret>, StorageError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(tables::META)?;
        match t.get(meta::STORE_SECRETS)? {
            Some(v) => serde_json::from_slice(v.value()).map_err(|e| StorageError::Damaged {
                doc: "store secrets".into(),
                reason: e.to_string(),
            }),
            None => Ok(Vec::new()),
        }
    }

    /// Keep `secret` (idempotent by key id), durable before returning.
    pub fn add_store_secret(&mut self, secret: StoreSecret) -> Result<(), StorageError> {
        let mut all = self.store_secrets()?;
        if all.iter().any(|s| s.key_id == secret.key_id) {
            return Ok(());
        }
        all.push(secret);
        all.sort_by_key(|s| s.created_ms);
        let bytes = serde_json::to_vec(&all).map_err(|e| StorageError::Damaged {
            doc: "store secrets".into(),
            reason: e.to_string(),
        })?;
        let txn = self.db.begin_write()?;
        txn.open_table(tables::META)?
            .insert(meta::STORE_SECRETS, bytes.as_slice())?;
        txn.commit()?;
        Ok(())
    }
}
