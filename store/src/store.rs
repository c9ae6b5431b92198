//! [`Store`]: one till's redb file holding the store's Automerge documents and the
//! views derived from them.
//!
//! Opening a store reads only its meta table: documents load on first use and are
//! cached, so a store holding years of sales opens in milliseconds.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use automerge::{ActorId, Automerge, Change, ChangeHash, ReadDoc};
use redb::{Database, ReadableDatabase, ReadableTable};

use crate::error::{OpenStoreError, StorageError, damaged};
use crate::hlc::{Clock, Hlc, HlcState, SystemClock};
use crate::ids::{DocId, StoreId, TillId, TillName};
use crate::keys::TillKey;
use crate::model::Role;
use crate::proofs::Proof;
use crate::tables::{self, DocState, FORMAT_VERSION, meta};
use crate::writer::Writer;

/// Tunables of a store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// The till's wall clock.
    pub clock: Arc<dyn Clock>,
    /// Compact a document once this many changes were appended since the last time.
    pub compact_after: u64,
    /// At most this many documents stay loaded in memory.
    pub cache_docs: usize,
    /// fsync every commit. Only in-memory test stores turn this off.
    pub durable: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock::default()),
            compact_after: 128,
            cache_docs: 256,
            durable: true,
        }
    }
}

/// What a new till store is: which store it belongs to and who the till is.
#[derive(Debug, Clone)]
pub struct NewStore {
    /// The store (shop) id; a fresh one for the first till.
    pub store_id: StoreId,
    /// The store's display name.
    pub store_name: String,
    /// This till's short name, used in receipt numbers.
    pub till_name: TillName,
    /// This till's role.
    pub role: Role,
    /// Whether this till founds the store and writes its default configuration.
    /// Tills that join an existing store receive it from their peers instead.
    pub founder: bool,
}

/// Where the audit chain of this till stands.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct AuditHead {
    pub seq: u64,
    #[serde(with = "hex_array")]
    pub hash: [u8; 32],
}

mod hex_array {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(h: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(h))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(serde::de::Error::custom)?;
        Ok(out)
    }
}

/// One till's copy of the store: documents, views, conflict log and audit chain.
///
/// Every mutating call commits a redb transaction with fsync before it returns,
/// and the change, the views it moves and the audit entry it writes commit together.
pub struct Store {
    pub(crate) db: Database,
    path: PathBuf,
    pub(crate) key: TillKey,
    pub(crate) till: TillId,
    store_id: StoreId,
    store_name: String,
    pub(crate) till_name: TillName,
    pub(crate) role: Role,
    pub(crate) actor: ActorId,
    pub(crate) opts: StoreOptions,
    pub(crate) hlc: HlcState,
    pub(crate) next_receipt: u64,
    pub(crate) audit_head: AuditHead,
    pub(crate) docs: HashMap<DocId, Automerge>,
    /// Local changes committed and not yet taken for gossip, with their proofs.
    pub(crate) outbox: Vec<(DocId, Vec<u8>, Vec<Proof>)>,
    /// The store's admin public key (the trust root), once known.
    pub(crate) admin: Option<TillId>,
    /// The admin key itself, on an admin till: it also signs this till's
    /// changes to the shared documents.
    pub(crate) admin_signer: Option<TillKey>,
    /// While set, changes without proofs are accepted (restoring a backup made
    /// before signed changes): see [`Store::accept_legacy_history`].
    pub(crate) legacy: bool,
    /// Whether writes keep [`crate::StoreEvent`]s, and those kept.
    pub(crate) watching: bool,
    pub(crate) events: Vec<crate::StoreEvent>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("store", &self.store_id)
            .field("till", &self.till)
            .finish_non_exhaustive()
    }
}

/// A fresh Automerge actor for this till: its id followed by 8 random bytes, so a
/// restored or re-created till never reuses an (actor, seq) pair its peers hold,
/// while every actor still names its till.
fn fresh_actor(till: &TillId) -> ActorId {
    let mut bytes = till.as_bytes().to_vec();
    bytes.extend_from_slice(&rand::random::<[u8; 8]>());
    ActorId::from(bytes)
}

/// The till an actor id names, if it has the shape [`fresh_actor`] makes.
pub(crate) fn actor_till(actor: &ActorId) -> Option<TillId> {
    let bytes: [u8; 32] = actor.to_bytes().get(..32)?.try_into().ok()?;
    Some(TillId::from_bytes(bytes))
}

fn map_open_error(path: &Path, e: redb::DatabaseError) -> OpenStoreError {
    let p = path.display().to_string();
    match e {
        redb::DatabaseError::DatabaseAlreadyOpen => OpenStoreError::InUse(p),
        redb::DatabaseError::UpgradeRequired(v) => OpenStoreError::TooNew {
            found: u32::from(v),
            supported: FORMAT_VERSION,
        },
        redb::DatabaseError::Storage(redb::StorageError::Io(io))
            if io.kind() != std::io::ErrorKind::InvalidData =>
        {
            OpenStoreError::Io(io)
        }
        other => OpenStoreError::Corrupt {
            path: p,
            reason: other.to_string(),
        },
    }
}

/// Only the till's user may read the store: it holds the backup keys and every
/// sale. Mode 0600, whatever the umask.
fn owner_only(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if std::fs::metadata(path)?.permissions().mode() & 0o777 != 0o600 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

impl Store {
    /// Create a new till store at `path` (which must not exist).
    pub fn create(
        path: &Path,
        key: TillKey,
        new: NewStore,
        opts: StoreOptions,
    ) -> Result<Store, OpenStoreError> {
        if path.exists() {
            return Err(OpenStoreError::AlreadyExists(path.display().to_string()));
        }
        if new.store_name.trim().is_empty() || new.store_name.len() > 100 {
            return Err(OpenStoreError::Invalid(
                "the store name must be 1 to 100 characters".into(),
            ));
        }
        let db = Database::create(path).map_err(|e| map_open_error(path, e))?;
        owner_only(path)?;
        init_db(&db, &key.till_id(), &new)?;
        let mut store = Self::from_db(db, path, key, opts)?;
        store.write_initial_docs(&new)?;
        Ok(store)
    }

    /// Open the till store at `path` with the till's key.
    pub fn open(path: &Path, key: TillKey, opts: StoreOptions) -> Result<Store, OpenStoreError> {
        if !path.exists() {
            return Err(OpenStoreError::NotFound(path.display().to_string()));
        }
        // A store made before it was kept private is made private now.
        if let Err(e) = owner_only(path) {
            tracing::warn!(path = %path.display(), error = %e, "cannot make the store file private (mode 0600)");
        }
        // redb trusts the pages it reads and can panic on a damaged file instead of
        // returning an error; report that as damage, like the errors it does return.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let db = Database::open(path).map_err(|e| map_open_error(path, e))?;
            Self::from_db(db, path, key, opts)
        }))
        .unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("unknown failure");
            Err(OpenStoreError::Corrupt {
                path: path.display().to_string(),
                reason: format!("the database engine failed reading it: {what}"),
            })
        })
    }

    /// An in-memory store, for tests and simulations: real redb, no file, no fsync.
    #[cfg(any(test, feature = "test-utils"))]
    pub fn create_in_memory(
        key: TillKey,
        new: NewStore,
        mut opts: StoreOptions,
    ) -> Result<Store, OpenStoreError> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(|e| map_open_error(Path::new(":memory:"), e))?;
        opts.durable = false;
        init_db(&db, &key.till_id(), &new)?;
        let mut store = Self::from_db(db, Path::new(":memory:"), key, opts)?;
        store.write_initial_docs(&new)?;
        Ok(store)
    }

    fn from_db(
        db: Database,
        path: &Path,
        key: TillKey,
        opts: StoreOptions,
    ) -> Result<Store, OpenStoreError> {
        let corrupt = |reason: &str| OpenStoreError::Corrupt {
            path: path.display().to_string(),
            reason: reason.to_string(),
        };
        let txn = db.begin_read().map_err(StorageError::from)?;
        let m = txn
            .open_table(tables::META)
            .map_err(|e| corrupt(&e.to_string()))?;
        let get = |k: &str| -> Result<Vec<u8>, OpenStoreError> {
            m.get(k)
                .map_err(|e| corrupt(&e.to_string()))?
                .map(|v| v.value().to_vec())
                .ok_or_else(|| corrupt(&format!("meta entry {k} is missing")))
        };
        let u64_of = |k: &str| -> Result<u64, OpenStoreError> {
            let v = get(k)?;
            Ok(u64::from_le_bytes(
                v.try_into()
                    .map_err(|_| corrupt(&format!("meta entry {k}")))?,
            ))
        };
        let format = u32::from_le_bytes(
            get(meta::FORMAT)?
                .try_into()
                .map_err(|_| corrupt("meta entry format"))?,
        );
        if format > FORMAT_VERSION {
            return Err(OpenStoreError::TooNew {
                found: format,
                supported: FORMAT_VERSION,
            });
        }
        let store_id = StoreId::from_bytes(
            get(meta::STORE_ID)?
                .try_into()
                .map_err(|_| corrupt("meta entry store_id"))?,
        );
        let till = TillId::from_bytes(
            get(meta::TILL_ID)?
                .try_into()
                .map_err(|_| corrupt("meta entry till_id"))?,
        );
        if till != key.till_id() {
            return Err(OpenStoreError::WrongKey(till.fmt_short()));
        }
        let text = |k: &str| -> Result<String, OpenStoreError> {
            String::from_utf8(get(k)?).map_err(|_| corrupt(&format!("meta entry {k}")))
        };
        let store_name = text(meta::STORE_NAME)?;
        let till_name: TillName = text(meta::TILL_NAME)?
            .parse()
            .map_err(|_| corrupt("meta entry till_name"))?;
        let role: Role = text(meta::ROLE)?
            .parse()
            .map_err(|_| corrupt("meta entry role"))?;
        let actor = ActorId::from(get(meta::ACTOR)?);
        let hlc = HlcState::resume(Hlc::from_u64(u64_of(meta::HLC)?));
        let next_receipt = u64_of(meta::NEXT_RECEIPT)?;
        let admin = m
            .get(meta::ADMIN_KEY)
            .map_err(|e| corrupt(&e.to_string()))?
            .and_then(|v| <[u8; 32]>::try_from(v.value()).ok())
            .map(TillId::from_bytes);
        let audit_head = match m
            .get(meta::AUDIT_HEAD)
            .map_err(|e| corrupt(&e.to_string()))?
        {
            Some(v) => {
                serde_json::from_slice(v.value()).map_err(|_| corrupt("meta entry audit_head"))?
            }
            None => AuditHead::default(),
        };
        drop(m);
        drop(txn);
        Ok(Store {
            db,
            path: path.to_path_buf(),
            key,
            till,
            store_id,
            store_name,
            till_name,
            role,
            actor,
            opts,
            hlc,
            next_receipt,
            audit_head,
            docs: HashMap::new(),
            outbox: Vec::new(),
            admin,
            admin_signer: None,
            legacy: false,
            watching: false,
            events: Vec::new(),
        })
        .and_then(|mut store| {
            if format < tables::FORMAT_PROOFS {
                store.migrate_to_proofs()?;
            }
            if format < FORMAT_VERSION {
                store.migrate_to_listings()?;
            }
            Ok(store)
        })
    }

    fn write_initial_docs(&mut self, new: &NewStore) -> Result<(), StorageError> {
        if !new.founder {
            // A joining till receives the store's documents, its own membership
            // entry included, from its peers.
            return Ok(());
        }
        let mut w = self.writer()?;
        w.register_self()?;
        w.write_default_config()?;
        w.commit()?;
        Ok(())
    }

    /// A write transaction, durable (fsync at commit) unless this is an
    /// in-memory test store.
    pub(crate) fn begin_write(&self) -> Result<redb::WriteTransaction, StorageError> {
        let mut txn = self.db.begin_write()?;
        if !self.opts.durable {
            txn.set_durability(redb::Durability::None)
                .map_err(|e| StorageError::Database(e.to_string()))?;
        }
        Ok(txn)
    }

    /// The store (shop) this till belongs to.
    pub fn store_id(&self) -> StoreId {
        self.store_id
    }
    /// The store's display name.
    pub fn store_name(&self) -> &str {
        &self.store_name
    }
    /// This till.
    pub fn till_id(&self) -> TillId {
        self.till
    }
    /// This till's short name.
    pub fn till_name(&self) -> &TillName {
        &self.till_name
    }
    /// This till's role.
    pub fn role(&self) -> Role {
        self.role
    }
    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// The latest hybrid logical timestamp this till issued or saw.
    pub fn hlc(&self) -> Hlc {
        self.hlc.last()
    }
    /// The receipt number the next sale, void or refund will get.
    pub fn next_receipt_number(&self) -> u64 {
        self.next_receipt
    }

    /// A timestamp for a local event.
    pub(crate) fn tick(&mut self) -> Hlc {
        self.hlc.tick(self.opts.clock.now_ms())
    }

    /// Begin a write: changes made through it commit together, or not at all.
    pub(crate) fn writer(&mut self) -> Result<Writer<'_>, StorageError> {
        self.trim_cache();
        Writer::begin(self)
    }

    fn trim_cache(&mut self) {
        if self.docs.len() <= self.opts.cache_docs {
            return;
        }
        let evict: Vec<DocId> = self
            .docs
            .keys()
            .filter(|d| d.owner().is_some())
            .take(self.docs.len() - self.opts.cache_docs / 2)
            .copied()
            .collect();
        for d in evict {
            self.docs.remove(&d);
        }
    }

    /// The loaded document `id` (empty if the store has none yet).
    pub(crate) fn doc(&mut self, id: &DocId) -> Result<&mut Automerge, StorageError> {
        if !self.docs.contains_key(id) {
            let doc = self.load_doc(id)?;
            self.docs.insert(*id, doc);
        }
        self.docs
            .get_mut(id)
            .ok_or_else(|| damaged(id, "document vanished from the cache"))
    }

    /// Read document `id` from the file, bypassing the cache.
    pub(crate) fn load_doc(&self, id: &DocId) -> Result<Automerge, StorageError> {
        let txn = self.db.begin_read()?;
        let saved = txn.open_table(tables::DOC_SAVED)?;
        let changes = txn.open_table(tables::DOC_CHANGES)?;
        load_doc_from(&saved, &changes, id, &self.actor)
    }

    /// Every document this till holds.
    pub fn doc_ids(&self) -> Result<Vec<DocId>, StorageError> {
        let txn = self.db.begin_read()?;
        let docs = txn.open_table(tables::DOCS)?;
        let mut out = Vec::new();
        for row in docs.iter()? {
            let (k, _) = row?;
            match k.value().parse() {
                Ok(id) => out.push(id),
                Err(e) => tracing::warn!(doc = k.value(), error = %e, "skipping unknown document"),
            }
        }
        Ok(out)
    }

    /// The heads of document `id` (empty if this till does not hold it).
    pub fn heads(&mut self, id: &DocId) -> Result<Vec<ChangeHash>, StorageError> {
        Ok(self.doc(id)?.get_heads())
    }

    /// The changes of document `id` that a peer with heads `have` lacks, each as
    /// the raw bytes of one Automerge change.
    pub fn changes_since(
        &mut self,
        id: &DocId,
        have: &[ChangeHash],
    ) -> Result<Vec<Vec<u8>>, StorageError> {
        Ok(self
            .doc(id)?
            .get_changes(have)
            .into_iter()
            .map(|c| c.raw_bytes().to_vec())
            .collect())
    }

    /// Whether document `id` already holds every change named in `heads`.
    pub fn holds(&mut self, id: &DocId, heads: &[ChangeHash]) -> Result<bool, StorageError> {
        let doc = self.doc(id)?;
        Ok(heads.iter().all(|h| doc.get_change_by_hash(h).is_some()))
    }

    /// This till's key (signs what leaves the till: backups, bundles).
    pub fn till_key(&self) -> &TillKey {
        &self.key
    }

    /// Document `id` saved whole (Automerge's compressed form), with its heads.
    pub fn save_doc(&mut self, id: &DocId) -> Result<(Vec<u8>, Vec<ChangeHash>), StorageError> {
        let doc = self.doc(id)?;
        Ok((doc.save(), doc.get_heads()))
    }

    /// Compact document `id`: save it whole and drop the changes the save holds.
    /// A crash at any point leaves either the old or the new form, both complete.
    pub fn compact(&mut self, id: &DocId) -> Result<(), StorageError> {
        let key = id.to_string();
        let saved = self.doc(id)?.save();
        let doc = self
            .docs
            .get(id)
            .ok_or_else(|| damaged(id, "document vanished from the cache"))?;
        let txn = self.begin_write()?;
        {
            let mut changes = txn.open_table(tables::DOC_CHANGES)?;
            let mut keep = 0u64;
            let mut drop_seqs = Vec::new();
            for row in changes.range((key.as_str(), 0)..=(key.as_str(), u64::MAX))? {
                let (k, v) = row?;
                let change = Change::from_bytes(v.value().to_vec()).map_err(|e| damaged(id, e))?;
                // A change still waiting for its dependencies is not in the save.
                if doc.get_change_by_hash(&change.hash()).is_some() {
                    drop_seqs.push(k.value().1);
                } else {
                    keep += 1;
                }
            }
            for seq in drop_seqs {
                changes.remove((key.as_str(), seq))?;
            }
            txn.open_table(tables::DOC_SAVED)?
                .insert(key.as_str(), saved.as_slice())?;
            let mut docs = txn.open_table(tables::DOCS)?;
            let mut state: DocState = match docs.get(key.as_str())? {
                Some(v) => serde_json::from_slice(v.value()).map_err(|e| damaged(id, e))?,
                None => DocState::default(),
            };
            state.pending = keep;
            let bytes = serde_json::to_vec(&state).map_err(|e| damaged(id, e))?;
            docs.insert(key.as_str(), bytes.as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    /// How many changes of `id` are stored since its last compaction.
    pub fn pending_changes(&self, id: &DocId) -> Result<u64, StorageError> {
        let txn = self.db.begin_read()?;
        let docs = txn.open_table(tables::DOCS)?;
        Ok(match docs.get(id.to_string().as_str())? {
            Some(v) => {
                let s: DocState = serde_json::from_slice(v.value()).map_err(|e| damaged(id, e))?;
                s.pending
            }
            None => 0,
        })
    }
}

/// Write the meta table of a new store and create every table.
fn init_db(db: &Database, till: &TillId, new: &NewStore) -> Result<(), StorageError> {
    let actor = fresh_actor(till);
    let txn = db.begin_write()?;
    {
        let mut m = txn.open_table(tables::META)?;
        for (k, v) in [
            (meta::FORMAT, FORMAT_VERSION.to_le_bytes().to_vec()),
            (meta::STORE_ID, new.store_id.as_bytes().to_vec()),
            (meta::STORE_NAME, new.store_name.as_bytes().to_vec()),
            (meta::TILL_ID, till.as_bytes().to_vec()),
            (meta::TILL_NAME, new.till_name.as_str().as_bytes().to_vec()),
            (meta::ROLE, new.role.to_string().into_bytes()),
            (meta::ACTOR, actor.to_bytes().to_vec()),
            (meta::HLC, 0u64.to_le_bytes().to_vec()),
            (meta::NEXT_RECEIPT, 1u64.to_le_bytes().to_vec()),
        ] {
            m.insert(k, v.as_slice())?;
        }
    }
    create_tables(&txn)?;
    txn.commit()?;
    Ok(())
}

pub(crate) fn create_tables(txn: &redb::WriteTransaction) -> Result<(), StorageError> {
    txn.open_table(tables::DOCS)?;
    txn.open_table(tables::DOC_SAVED)?;
    txn.open_table(tables::DOC_CHANGES)?;
    txn.open_table(tables::V_PRODUCTS)?;
    txn.open_multimap_table(tables::V_BARCODES)?;
    txn.open_table(tables::V_STOCK)?;
    txn.open_table(tables::V_MOVES)?;
    txn.open_table(tables::V_TOTALS)?;
    txn.open_table(tables::V_RECEIPTS)?;
    txn.open_table(tables::V_TILLS)?;
    txn.open_table(tables::V_CONFIG)?;
    txn.open_table(tables::V_SALES)?;
    txn.open_table(tables::V_REPORT)?;
    txn.open_table(tables::IDEMPOTENCY)?;
    txn.open_table(tables::CONFLICTS)?;
    txn.open_table(tables::DOC_HEADS)?;
    txn.open_table(tables::BUCKETS)?;
    txn.open_table(tables::SYNC_STATES)?;
    txn.open_table(tables::INVITES)?;
    txn.open_table(tables::OPEN_CONFLICTS)?;
    txn.open_table(tables::PROOFS)?;
    txn.open_table(tables::PROVEN)?;
    Ok(())
}

/// Load a document from its save and the changes appended after it.
pub(crate) fn load_doc_from(
    saved: &impl ReadableTable<&'static str, &'static [u8]>,
    changes: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
    id: &DocId,
    actor: &ActorId,
) -> Result<Automerge, StorageError> {
    let key = id.to_string();
    let mut doc = match saved.get(key.as_str())? {
        Some(v) => Automerge::load(v.value()).map_err(|e| damaged(id, e))?,
        None => Automerge::new(),
    };
    let mut pending = Vec::new();
    for row in changes.range((key.as_str(), 0)..=(key.as_str(), u64::MAX))? {
        let (_, v) = row?;
        pending.push(Change::from_bytes(v.value().to_vec()).map_err(|e| damaged(id, e))?);
    }
    doc.apply_changes(pending).map_err(|e| damaged(id, e))?;
    doc.set_actor(actor.clone());
    Ok(doc)
}
