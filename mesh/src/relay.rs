//! The store's own relay: an iroh-relay server a store runs on its back-office
//! machine, so tills that cannot reach each other directly still sync without the
//! internet. Plain HTTP is fine on a store LAN (the traffic inside is end-to-end
//! encrypted QUIC between tills either way).
//!
//! With an identity ([`RelayIdentity`]) the relay also answers QUIC address
//! discovery on the same port number over UDP: a till behind a NAT learns the
//! public address its packets come from, tells its peers, and two tills behind two
//! NATs can then punch a direct path instead of staying on the relay. The QUIC side
//! needs TLS; the relay's certificate is self-signed and tills trust it by its
//! fingerprint ([`fingerprint`]), given with `tillmesh relays add URL --cert FP`.
//!
//! With TLS ([`Relay::spawn_tls`]) the relay is served over HTTPS on a port of its
//! own, with the same certificate (the relay's own, or one the store configured
//! from PEM files, [`RelayIdentity::from_pem_files`]); address discovery then
//! answers on the HTTPS port number, and the plain HTTP port serves only the
//! captive-portal probe.

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use iroh_relay::server::{CertConfig, QuicConfig, RelayConfig, Server, ServerConfig, TlsConfig};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};

/// The relay's usual port (HTTP over TCP, address discovery over UDP).
pub const DEFAULT_PORT: u16 = 3340;

/// File names of a relay's identity inside its directory.
const CERT_FILE: &str = "relay-cert.der";
const KEY_FILE: &str = "relay-key.der";

/// The relay's TLS certificate (with its chain) and key, for QUIC address
/// discovery and HTTPS.
pub struct RelayIdentity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Clone for RelayIdentity {
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl std::fmt::Debug for RelayIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayIdentity")
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

/// Reading or creating a relay identity failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// A file could not be read or written.
    #[error("relay identity file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The certificate could not be made.
    #[error("cannot make the relay certificate: {0}")]
    Generate(String),
    /// The files are there but do not hold a usable certificate and key.
    #[error(
        "relay identity in {dir} is damaged ({reason}); move {CERT_FILE} and {KEY_FILE} away to make a new one (tills then need the new fingerprint)"
    )]
    Damaged {
        /// The directory.
        dir: String,
        /// What is wrong.
        reason: String,
    },
    /// Certificate files given on the command line cannot be used.
    #[error(
        "the relay certificate {cert} with key {key} cannot be used: {reason} (give a PEM certificate chain, leaf first, and its PEM private key)"
    )]
    Unusable {
        /// The certificate chain file.
        cert: String,
        /// The key file.
        key: String,
        /// What is wrong.
        reason: String,
    },
}

impl RelayIdentity {
    /// A new self-signed identity (not saved).
    pub fn generate() -> Result<Self, IdentityError> {
        let made = rcgen::generate_simple_self_signed(vec!["tillmesh-relay".to_string()])
            .map_err(|e| IdentityError::Generate(e.to_string()))?;
        Ok(Self {
            chain: vec![made.cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.signing_key.serialize_der())),
        })
    }

    /// A certificate chain and its key from PEM files (the leaf certificate
    /// first, as web servers take them); checked before it is returned.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, IdentityError> {
        use rustls::pki_types::pem::PemObject;
        let damaged = |reason: String| IdentityError::Unusable {
            cert: cert.display().to_string(),
            key: key.display().to_string(),
            reason,
        };
        for path in [cert, key] {
            fs::metadata(path).map_err(|source| IdentityError::Io {
                path: path.display().to_string(),
                source,
            })?;
        }
        let chain = CertificateDer::pem_file_iter(cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| damaged(format!("{}: {e}", cert.display())))?;
        if chain.is_empty() {
            return Err(damaged(format!("{} holds no certificate", cert.display())));
        }
        let key = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| damaged(format!("{}: {e}", key.display())))?;
        let id = Self { chain, key };
        id.server_config(&[&rustls::version::TLS13])
            .map_err(damaged)?;
        Ok(id)
    }

    /// The identity saved in `dir`, or a new one saved there (key file mode 0600).
    pub fn load_or_create(dir: &Path) -> Result<Self, IdentityError> {
        let (cert_path, key_path) = (dir.join(CERT_FILE), dir.join(KEY_FILE));
        let io = |path: &PathBuf| {
            let path = path.display().to_string();
            move |source| IdentityError::Io { path, source }
        };
        if cert_path.exists() || key_path.exists() {
            let cert = fs::read(&cert_path).map_err(io(&cert_path))?;
            let key = fs::read(&key_path).map_err(io(&key_path))?;
            let id = Self {
                chain: vec![CertificateDer::from(cert)],
                key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
            };
            id.server_config(&[&rustls::version::TLS13])
                .map_err(|reason| IdentityError::Damaged {
                    dir: dir.display().to_string(),
                    reason,
                })?;
            return Ok(id);
        }
        fs::create_dir_all(dir).map_err(io(&dir.to_path_buf()))?;
        let id = Self::generate()?;
        write_new(&key_path, id.key.secret_der(), true).map_err(io(&key_path))?;
        write_new(&cert_path, &id.chain[0], false).map_err(io(&cert_path))?;
        Ok(id)
    }

    /// The fingerprint tills pin: BLAKE3 of the (leaf) certificate, in hex.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.chain[0])
    }

    /// A TLS server configuration (TLS 1.3 only for the QUIC side).
    fn server_config(
        &self,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Result<rustls::ServerConfig, String> {
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(versions)
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(self.chain.clone(), self.key.clone_key())
        .map_err(|e| e.to_string())
    }
}

/// Write a new file and flush it to disk; `private` files are readable by their
/// owner only.
fn write_new(path: &Path, bytes: &[u8], private: bool) -> std::io::Result<()> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// The fingerprint of a certificate: BLAKE3 of its DER bytes, in hex.
pub fn fingerprint(cert: &[u8]) -> String {
    blake3::hash(cert).to_hex().to_string()
}

/// Whether two relay URLs name the same relay, however they are written (the
/// endpoint writes `http://host:port/`, a configuration often leaves the slash
/// out).
pub fn same_url(a: &str, b: &str) -> bool {
    match (a.parse::<iroh::RelayUrl>(), b.parse::<iroh::RelayUrl>()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a.trim_end_matches('/') == b.trim_end_matches('/'),
    }
}

/// The fingerprints in `certs` (URL, fingerprint) of the relays `urls`, keyed by
/// the URLs as `urls` writes them ([`same_url`]).
pub fn certs_for<'a>(
    urls: &[String],
    certs: impl IntoIterator<Item = (&'a String, &'a String)> + Clone,
) -> std::collections::BTreeMap<String, String> {
    urls.iter()
        .filter_map(|url| {
            certs
                .clone()
                .into_iter()
                .find(|(u, _)| same_url(u, url))
                .map(|(_, fp)| (url.clone(), fp.clone()))
        })
        .collect()
}

/// Whether `fp` looks like a fingerprint (64 hex digits).
pub fn is_fingerprint(fp: &str) -> bool {
    fp.len() == 64 && fp.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A running relay.
#[derive(Debug)]
pub struct Relay {
    server: Server,
    url: String,
    fingerprint: Option<String>,
}

impl Relay {
    /// Start a relay listening on `bind` (plain HTTP). With an identity it also
    /// answers QUIC address discovery on UDP, on the same port number as the HTTP
    /// side (a free one when `bind` has port 0).
    pub async fn spawn(
        bind: SocketAddr,
        identity: Option<&RelayIdentity>,
    ) -> Result<Relay, crate::NodeError> {
        Self::start(bind, identity, None).await
    }

    /// Start a relay served over HTTPS on `https` with `identity`'s certificate,
    /// answering address discovery on the same port number over UDP (a free one
    /// when `https` has port 0); `bind` then serves only the plain-HTTP
    /// captive-portal probe.
    pub async fn spawn_tls(
        bind: SocketAddr,
        https: SocketAddr,
        identity: &RelayIdentity,
    ) -> Result<Relay, crate::NodeError> {
        Self::start(bind, Some(identity), Some(https)).await
    }

    async fn start(
        bind: SocketAddr,
        identity: Option<&RelayIdentity>,
        https: Option<SocketAddr>,
    ) -> Result<Relay, crate::NodeError> {
        let bind_err = |e: String| crate::NodeError::Bind(e);
        let mut cfg = ServerConfig::default();
        cfg.quic = None;
        let mut relay = RelayConfig::new(bind);
        // Address discovery listens on the port tills reach the relay by.
        let mut front = https.unwrap_or(bind);
        if let Some(id) = identity {
            if front.port() == 0 {
                front.set_port(free_port(front).map_err(|e| bind_err(e.to_string()))?);
            }
            let tls = id
                .server_config(&[&rustls::version::TLS13])
                .map_err(|e| bind_err(format!("relay TLS: {e}")))?;
            let mut quic = QuicConfig::new(front);
            quic.server_config = Some(tls);
            cfg.quic = Some(quic);
            if https.is_some() {
                let tls = id
                    .server_config(rustls::DEFAULT_VERSIONS)
                    .map_err(|e| bind_err(format!("relay TLS: {e}")))?;
                relay.tls = Some(TlsConfig::new(
                    front,
                    CertConfig::Manual { server_config: tls },
                ));
            } else {
                relay.http_bind_addr = front;
            }
        }
        cfg.relay = Some(relay);
        let server = Server::spawn(cfg)
            .await
            .map_err(|e| bind_err(e.to_string()))?;
        let url = match https {
            Some(_) => format!(
                "https://{}",
                server
                    .https_addr()
                    .ok_or_else(|| bind_err("the relay has no HTTPS address".into()))?
            ),
            None => format!(
                "http://{}",
                server
                    .http_addr()
                    .ok_or_else(|| bind_err("the relay has no HTTP address".into()))?
            ),
        };
        Ok(Relay {
            server,
            url,
            fingerprint: identity.map(RelayIdentity::fingerprint),
        })
    }

    /// The URL tills use to reach it.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The certificate fingerprint tills pin, when it serves address discovery.
    pub fn fingerprint(&self) -> Option<&str> {
        self.fingerprint.as_deref()
    }

    /// Stop it.
    pub async fn shutdown(self) {
        if let Err(e) = self.server.shutdown().await {
            tracing::warn!(error = %e, "relay shutdown");
        }
    }
}

/// A port free for both TCP and UDP on `bind`'s address.
fn free_port(bind: SocketAddr) -> std::io::Result<u16> {
    let mut last = None;
    for _ in 0..20 {
        let udp = std::net::UdpSocket::bind(bind)?;
        let port = udp.local_addr()?.port();
        match std::net::TcpListener::bind(SocketAddr::new(bind.ip(), port)) {
            Ok(_) => return Ok(port),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free port")))
}

/// The relay certificate fingerprints a till trusts, shared with its endpoint's
/// TLS trust, so the store's relay list can change while the till runs.
#[derive(Debug, Clone, Default)]
pub struct Pins(Arc<std::sync::RwLock<HashSet<String>>>);

impl Pins {
    /// Trust exactly these fingerprints from now on.
    pub fn set(&self, fingerprints: impl IntoIterator<Item = String>) {
        let new: HashSet<String> = fingerprints
            .into_iter()
            .map(|f| f.to_ascii_lowercase())
            .collect();
        if let Ok(mut p) = self.0.write() {
            *p = new;
        }
    }

    /// Whether `fingerprint` is trusted.
    pub fn contains(&self, fingerprint: &str) -> bool {
        self.0.read().is_ok_and(|p| p.contains(fingerprint))
    }
}

/// The TLS trust of a till's endpoint: certificates pinned by fingerprint (the
/// store's relays) are trusted as they are; anything else is checked against the
/// usual web roots.
pub(crate) fn pinned_trust(pins: Pins) -> iroh_relay::tls::CaTlsConfig {
    iroh_relay::tls::CaTlsConfig::custom_server_cert_verifier(Arc::new(move |provider| {
        let fallback =
            iroh_relay::tls::CaTlsConfig::embedded().server_cert_verifier(provider.clone())?;
        Ok(Arc::new(Pinned {
            pins: pins.clone(),
            fallback,
            provider,
        }) as Arc<dyn ServerCertVerifier>)
    }))
}

#[derive(Debug)]
struct Pinned {
    pins: Pins,
    fallback: Arc<dyn ServerCertVerifier>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.pins.contains(&fingerprint(end_entity)) {
            return Ok(ServerCertVerified::assertion());
        }
        self.fallback
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_kept_and_a_damaged_one_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = RelayIdentity::load_or_create(dir.path()).expect("create");
        let again = RelayIdentity::load_or_create(dir.path()).expect("load");
        assert_eq!(first.fingerprint(), again.fingerprint());
        assert!(is_fingerprint(&first.fingerprint()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join(KEY_FILE))
                .expect("key file")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        fs::write(dir.path().join(KEY_FILE), b"not a key").expect("damage");
        let err = RelayIdentity::load_or_create(dir.path()).expect_err("damaged key");
        assert!(matches!(err, IdentityError::Damaged { .. }), "{err}");
        let other = RelayIdentity::generate().expect("generate");
        assert_ne!(other.fingerprint(), first.fingerprint());
    }
}
