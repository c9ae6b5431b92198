//! The store's backup keys and the recovery file.
//!
//! Backups are encrypted to the store's newest age X25519 identity; older ones
//! are kept to read older backups. Every backup is also encrypted to the store's
//! recovery key, an identity that is never rotated and that only the admin till
//! and recovery files hold; tills know only its public half, published in the
//! store's configuration. A recovery file, encrypted with a passphrase (age
//! scrypt), holds what a brand-new machine needs when every till is lost: the
//! store id and name, the admin key, the backup keys of the day and the recovery
//! key, which reads every backup made after the file was written too.

use std::io::{Read, Write};

use age::secrecy::SecretString;
use serde::{Deserialize, Serialize};
use tillmesh_store::{RecoveryRecipient, StoreId, StoreSecret, TillKey};

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

/// The public half of `secret`, as the store publishes its recovery key; `None`
/// when the secret is malformed.
pub fn recipient_of(secret: &StoreSecret) -> Option<RecoveryRecipient> {
    let identity: age::x25519::Identity = secret.identity.parse().ok()?;
    let recipient = identity.to_public();
    Some(RecoveryRecipient {
        id: key_id(&recipient),
        recipient: recipient.to_string(),
    })
}

/// The recovery key a store publishes, checked: a recipient that does not parse,
/// or whose id is not its own, is passed over with a warning (backups are then
/// encrypted to the store key alone, as before there was a recovery key).
pub fn parse_recipient(published: &RecoveryRecipient) -> Option<age::x25519::Recipient> {
    match published.recipient.parse::<age::x25519::Recipient>() {
        Ok(r) if key_id(&r) == published.id => Some(r),
        Ok(_) => {
            tracing::warn!(
                key = published.id,
                "the store's published recovery key does not match its id; ignored"
            );
            None
        }
        Err(e) => {
            tracing::warn!(key = published.id, error = %e, "the store's published recovery key is malformed; ignored");
            None
        }
    }
}

/// The recovery file format version this build writes; it reads 1 and 2.
pub const RECOVERY_VERSION: u16 = 2;

/// What a recovery file holds.
#[derive(Clone, Serialize, Deserialize)]
pub struct Recovery {
    /// Format version: 2; version 1 files have no recovery key.
    pub version: u16,
    /// The store id, hex.
    pub store_id: String,
    /// Its display name.
    pub store_name: String,
    /// The admin key's seed, hex.
    pub admin_seed: String,
    /// Every backup key when the file was written.
    pub secrets: Vec<StoreSecret>,
    /// The store's recovery key, which every backup is also encrypted to
    /// (version 2; absent from version 1 files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<StoreSecret>,
}

impl std::fmt::Debug for Recovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recovery")
            .field("version", &self.version)
            .field("store_id", &self.store_id)
            .field("store_name", &self.store_name)
            .field("secrets", &self.secrets)
            .field("recovery", &self.recovery)
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
    if !(1..=RECOVERY_VERSION).contains(&r.version) {
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
            version: RECOVERY_VERSION,
            store_id: StoreId::random().to_string(),
            store_name: "Corner Shop".into(),
            admin_seed: hex::encode(TillKey::generate().seed()),
            secrets: vec![generate(1)],
            recovery: Some(generate(0)),
        };
        let sealed = seal_recovery(&r, "correct horse battery", 2).expect("seal");
        assert!(
            !String::from_utf8_lossy(&sealed).contains(&r.secrets[0].identity),
            "the secret is not in the clear"
        );
        let back = open_recovery(&sealed, "correct horse battery").expect("open");
        assert_eq!(back.secrets, r.secrets);
        assert_eq!(back.recovery, r.recovery);
        assert_eq!(back.version, 2);
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

    /// A version 1 recovery file, as Tillmesh wrote them before the recovery key
    /// (passphrase `correct horse battery`): it still opens, without one.
    #[test]
    fn a_version_1_recovery_file_still_opens() {
        let bytes = include_bytes!("../../tests/testdata/recovery-v1.age");
        let r = open_recovery(bytes, "correct horse battery").expect("open v1");
        assert_eq!(r.version, 1);
        assert_eq!(r.store_name, "Corner Shop");
        assert_eq!(r.secrets.len(), 1);
        assert!(r.recovery.is_none());
        r.store().expect("store id");
        r.admin().expect("admin key");
        let id: age::x25519::Identity = r.secrets[0].identity.parse().expect("key");
        assert_eq!(key_id(&id.to_public()), r.secrets[0].key_id);
    }

    #[test]
    fn an_unknown_recovery_version_is_refused() {
        let r = Recovery {
            version: RECOVERY_VERSION + 1,
            store_id: StoreId::random().to_string(),
            store_name: "Corner Shop".into(),
            admin_seed: hex::encode(TillKey::generate().seed()),
            secrets: vec![generate(1)],
            recovery: None,
        };
        let sealed = seal_recovery(&r, "correct horse battery", 2).expect("seal");
        assert!(matches!(
            open_recovery(&sealed, "correct horse battery"),
            Err(RecoveryError::Damaged(m)) if m.contains("version 3")
        ));
    }

    #[test]
    fn a_published_recipient_is_checked() {
        let r = generate(1);
        let published = recipient_of(&r).expect("recipient");
        assert_eq!(published.id, r.key_id);
        assert!(parse_recipient(&published).is_some());
        let wrong_id = RecoveryRecipient {
            id: generate(2).key_id,
            ..published.clone()
        };
        assert!(parse_recipient(&wrong_id).is_none());
        let malformed = RecoveryRecipient {
            recipient: "age1notarecipient".into(),
            ..published
        };
        assert!(parse_recipient(&malformed).is_none());
    }
}
