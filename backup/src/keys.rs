//! The store's backup keys and the recovery file.
//!
//! Backups are encrypted to the store's newest age X25519 identity; older ones
//! are kept to read older backups. A recovery file, encrypted with a passphrase
//! (age scrypt), holds what a brand-new machine needs when every till is lost:
//! the store id and name, the admin key and the backup keys.

use std::io::{Read, Write};

use age::secrecy::SecretString;
use serde::{Deserialize, Serialize};
use tillmesh_store::{StoreId, StoreSecret, TillKey};

/// A new backup identity for the store, made at `created_ms`.
pub fn generate(created_ms: u64) -> StoreSecret {
    use age::secrecy::ExposeSecret;
    let identity = age::x25519::Identity::generate();
    StoreSecret {
        key_id: key_id(&identity.to_public()),
        created_ms,
        identity: identity.to_string().expose_secret().to_string(),
    }
}

/// The id of a recipient: the first 8 bytes of the BLAKE3 hash of its text form.
pub fn key_id(recipient: &age::x25519::Recipient) -> String {
    hex::encode(&blake3::hash(recipient.to_string().as_bytes()).as_bytes()[..8])
}

/// The key new files are encrypted to: the newest.
pub fn current(secrets: &[StoreSecret]) -> Option<&StoreSecret> {
    secrets.iter().max_by_key(|s| s.created_ms)
}

/// What a recovery file holds.
#[derive(Clone, Serialize, Deserialize)]
pub struct Recovery {
    /// Format version (1).
    pub version: u16,
    /// The store id, hex.
    pub store_id: String,
    /// Its display name.
    pub store_name: String,
    /// The admin key's seed, hex.
    pub admin_seed: String,
    /// Every backup key.
    pub secrets: Vec<StoreSecret>,
}

impl std::fmt::Debug for Recovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recovery")
            .field("version", &self.version)
            .field("store_id", &self.store_id)
            .field("store_name", &self.store_name)
            .field("secrets", &self.secrets)
            .finish_non_exhaustive()
    }
}

impl Recovery {
    /// The store.
    pub fn store(&self) -> Result<StoreId, RecoveryError> {
        self.store_id
            .parse()
            .map_err(|_| RecoveryError::Damaged("the store id is malformed".into()))
    }

    /// The admin key.
    pub fn admin(&self) -> Result<TillKey, RecoveryError> {
        let seed: [u8; 32] = hex::decode(&self.admin_seed)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or(RecoveryError::Damaged("the admin key is malformed".into()))?;
        Ok(TillKey::from_seed(seed))
    }
}

/// The first line of a recovery file, before the age armour.
const RECOVERY_MAGIC: &[u8] = b"tillmesh-recovery v1\n";

/// Encrypt `r` with `passphrase` (age scrypt, work factor `work_factor`; 18 is
/// age's default, about a second).
pub fn seal_recovery(
    r: &Recovery,
    passphrase: &str,
    work_factor: u8,
) -> Result<Vec<u8>, RecoveryError> {
    if passphrase.chars().count() < 8 {
        return Err(RecoveryError::WeakPassphrase);
    }
    let json = serde_json::to_vec(r).map_err(|e| RecoveryError::Damaged(e.to_string()))?;
    let mut recipient = age::scrypt::Recipient::new(SecretString::from(passphrase.to_string()));
    recipient.set_work_factor(work_factor);
    let enc = age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
        .map_err(|e| RecoveryError::Damaged(e.to_string()))?;
    let mut out = RECOVERY_MAGIC.to_vec();
    let mut w = enc
        .wrap_output(&mut out)
        .map_err(|e| RecoveryError::Damaged(e.to_string()))?;
    w.write_all(&json)
        .map_err(|e| RecoveryError::Damaged(e.to_string()))?;
    w.finish()
        .map_err(|e| RecoveryError::Damaged(e.to_string()))?;
    Ok(out)
}

/// Decrypt a recovery file with `passphrase`.
pub fn open_recovery(bytes: &[u8], passphrase: &str) -> Result<Recovery, RecoveryError> {
    let body = bytes
        .strip_prefix(RECOVERY_MAGIC)
        .ok_or(RecoveryError::NotRecovery)?;
    let dec =
        age::Decryptor::new_buffered(body).map_err(|e| RecoveryError::Damaged(e.to_string()))?;
    let identity = age::scrypt::Identity::new(SecretString::from(passphrase.to_string()));
    let mut reader = dec
        .decrypt(std::iter::once(&identity as &dyn age::Identity))
        .map_err(|e| match e {
            age::DecryptError::DecryptionFailed | age::DecryptError::NoMatchingKeys => {
                RecoveryError::WrongPassphrase
            }
            other => RecoveryError::Damaged(other.to_string()),
        })?;
    let mut json = Vec::new();
    reader
        .read_to_end(&mut json)
        .map_err(|e| RecoveryError::Damaged(e.to_string()))?;
    let r: Recovery =
        serde_json::from_slice(&json).map_err(|e| RecoveryError::Damaged(e.to_string()))?;
    if r.version != 1 {
        return Err(RecoveryError::Damaged(format!(
            "recovery format version {} is not known to this Tillmesh",
            r.version
        )));
    }
    Ok(r)
}

/// A recovery file that cannot be made or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecoveryError {
    /// Not a recovery file.
    #[error("not a Tillmesh recovery file")]
    NotRecovery,
    /// The passphrase is wrong.
    #[error("the passphrase does not open this recovery file")]
    WrongPassphrase,
    /// The passphrase is too short.
    #[error("the recovery passphrase must have at least 8 characters")]
    WeakPassphrase,
    /// The file is damaged.
    #[error("the recovery file is damaged: {0}")]
    Damaged(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_opens_only_with_its_passphrase() {
        let r = Recovery {
            version: 1,
            store_id: StoreId::random().to_string(),
            store_name: "Corner Shop".into(),
            admin_seed: hex::encode(TillKey::generate().seed()),
            secrets: vec![generate(1)],
        };
        let sealed = seal_recovery(&r, "correct horse battery", 2).expect("seal");
        assert!(
            !String::from_utf8_lossy(&sealed).contains(&r.secrets[0].identity),
            "the secret is not in the clear"
        );
        let back = open_recovery(&sealed, "correct horse battery").expect("open");
        assert_eq!(back.secrets, r.secrets);
        assert_eq!(
            back.admin().expect("admin").seed(),
            r.admin().expect("admin").seed()
        );
        assert!(matches!(
            open_recovery(&sealed, "wrong horse battery"),
            Err(RecoveryError::WrongPassphrase)
        ));
        assert!(matches!(
            open_recovery(b"hello", "x"),
            Err(RecoveryError::NotRecovery)
        ));
        assert!(matches!(
            seal_recovery(&r, "short", 2),
            Err(RecoveryError::WeakPassphrase)
        ));
    }

    #[test]
    fn key_ids_name_their_key() {
        let a = generate(1);
        let b = generate(2);
        assert_ne!(a.key_id, b.key_id);
        assert_eq!(a.key_id.len(), 16);
        let id: age::x25519::Identity = a.identity.parse().expect("parse");
        assert_eq!(key_id(&id.to_public()), a.key_id);
        assert_eq!(current(&[a, b.clone()]), Some(&b));
    }
}
