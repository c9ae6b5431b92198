//! The till's ed25519 key: its identity, its audit signatures, and (in the mesh)
//! its iroh node key. The public half is the [`TillId`].

use std::fs;
use std::io::Write;
use std::path::Path;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use crate::ids::TillId;

/// A till's secret key. Never logged: `Debug` shows only the till id.
#[derive(Clone)]
pub struct TillKey(SigningKey);

impl std::fmt::Debug for TillKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TillKey({})", self.till_id().fmt_short())
    }
}

/// Reading or writing a key file failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// The file could not be read or written.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The file does not hold a key.
    #[error("key file {0} is damaged: expected 64 hex digits")]
    Malformed(String),
}

impl TillKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        Self(SigningKey::from_bytes(&rand::random()))
    }
    /// The key of a 32-byte secret seed.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self(SigningKey::from_bytes(&seed))
    }
    /// The 32-byte secret seed (for building the iroh endpoint key).
    pub fn seed(&self) -> [u8; 32] {
        self.0.to_bytes()
    }
    /// The till this key belongs to.
    pub fn till_id(&self) -> TillId {
        TillId::from_bytes(self.0.verifying_key().to_bytes())
    }
    /// Sign a message.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.0.sign(msg).to_bytes()
    }
    /// Read a key file written by [`TillKey::save`].
    pub fn load(path: &Path) -> Result<Self, KeyFileError> {
        let text = fs::read_to_string(path).map_err(|source| KeyFileError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let mut seed = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut seed)
            .map_err(|_| KeyFileError::Malformed(path.display().to_string()))?;
        Ok(Self::from_seed(seed))
    }
    /// Write the key to a new file readable only by its owner (mode 0600).
    pub fn save(&self, path: &Path) -> Result<(), KeyFileError> {
        let io = |source| KeyFileError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(path).map_err(io)?;
        f.write_all(hex::encode(self.seed()).as_bytes())
            .map_err(io)?;
        f.sync_all().map_err(io)
    }
}

/// Whether `sig` is `till`'s signature of `msg`.
pub fn verify(till: &TillId, msg: &[u8], sig: &[u8; 64]) -> bool {
    let Ok(key) = VerifyingKey::from_bytes(till.as_bytes()) else {
        return false;
    };
    key.verify_strict(msg, &Signature::from_bytes(sig)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_file_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("till.key");
        let key = TillKey::generate();
        key.save(&path).expect("save");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let back = TillKey::load(&path).expect("load");
        assert_eq!(back.till_id(), key.till_id());
        let sig = back.sign(b"hello");
        assert!(verify(&key.till_id(), b"hello", &sig));
        assert!(!verify(&key.till_id(), b"hellp", &sig));
        assert!(key.save(&path).is_err(), "never overwrites a key");
    }
}
