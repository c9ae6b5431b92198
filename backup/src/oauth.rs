//! The browser half of an installed app's OAuth 2.0 login (RFC 8252): PKCE
//! (RFC 7636, S256), the authorization URL, and the loopback redirect that
//! catches the code.
//!
//! `tillmesh drive login` prints [`AuthRequest::url`] for the operator to open;
//! the identity provider sends the browser back to `http://127.0.0.1:PORT/`
//! with `code` and `state`, which [`LoopbackRedirect::wait`] reads (refusing a
//! `state` it did not send, so another page cannot slip its own code in), and
//! the code is then exchanged for tokens together with the PKCE verifier,
//! which never left this process. The out-of-band redirect Google blocked in
//! 2022 is not used. Endpoints come from configuration: Google's, or an
//! emulator's.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::archive::now_ms;

/// A PKCE pair: the verifier stays here, the challenge goes in the URL.
#[derive(Clone, PartialEq, Eq)]
pub struct Pkce {
    /// 43 characters of the unreserved set (32 random bytes, base64url).
    pub verifier: String,
    /// `BASE64URL(SHA256(verifier))`.
    pub challenge: String,
}

impl std::fmt::Debug for Pkce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The verifier is a secret until the code is exchanged.
        f.debug_struct("Pkce")
            .field("challenge", &self.challenge)
            .finish_non_exhaustive()
    }
}

impl Pkce {
    /// A new pair from 32 random bytes.
    pub fn new() -> Pkce {
        Pkce::from_verifier(base64url(&rand::random::<[u8; 32]>()))
    }

    /// The pair of a given verifier.
    pub fn from_verifier(verifier: String) -> Pkce {
        let challenge = base64url(&Sha256::digest(verifier.as_bytes()));
        Pkce {
            verifier,
            challenge,
        }
    }
}

impl Default for Pkce {
    fn default() -> Self {
        Pkce::new()
    }
}

/// What the authorization URL asks for.
#[derive(Debug, Clone)]
pub struct AuthRequest {
    /// The authorization endpoint (Google: `https://accounts.google.com/o/oauth2/v2/auth`).
    pub auth_uri: String,
    /// The app's client id.
    pub client_id: String,
    /// Where the browser comes back ([`LoopbackRedirect::uri`]).
    pub redirect_uri: String,
    /// Scopes, space-separated in the URL.
    pub scopes: Vec<String>,
    /// A random value the redirect must bring back.
    pub state: String,
    /// The PKCE pair.
    pub pkce: Pkce,
}

impl AuthRequest {
    /// A request with a fresh `state` and PKCE pair.
    pub fn new(auth_uri: &str, client_id: &str, redirect_uri: &str, scopes: &[&str]) -> Self {
        AuthRequest {
            auth_uri: auth_uri.to_string(),
            client_id: client_id.to_string(),
            redirect_uri: redirect_uri.to_string(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            state: base64url(&rand::random::<[u8; 16]>()),
            pkce: Pkce::new(),
        }
    }

    /// The URL the operator opens: a code for a refresh token (`access_type=
    /// offline`, `prompt=consent`), bound to the PKCE challenge.
    pub fn url(&self) -> String {
        let params = [
            ("response_type", "code"),
            ("client_id", &self.client_id),
            ("redirect_uri", &self.redirect_uri),
            ("scope", &self.scopes.join(" ")),
            ("state", &self.state),
            ("code_challenge", &self.pkce.challenge),
            ("code_challenge_method", "S256"),
            ("access_type", "offline"),
            ("prompt", "consent"),
        ];
        let query: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{k}={}", percent_encode(v)))
            .collect();
        let sep = if self.auth_uri.contains('?') {
            '&'
        } else {
            '?'
        };
        format!("{}{sep}{}", self.auth_uri, query.join("&"))
    }
}

/// Why a login did not bring back a code.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoginError {
    /// The operator (or the provider) said no.
    #[error("the login was refused: {0}")]
    Refused(String),
    /// A redirect whose `state` is not the one sent: not this login's.
    #[error("a redirect for another login arrived (its state does not match); ignored it")]
    WrongState,
    /// Nothing came back in time.
    #[error("no answer from the browser within {0} s; run the login again")]
    TimedOut(u64),
    /// The loopback port could not be opened or read.
    #[error("the login's local port failed: {0}")]
    Io(String),
}

/// The loopback redirect: a one-shot listener on 127.0.0.1.
#[derive(Debug)]
pub struct LoopbackRedirect {
    listener: TcpListener,
    addr: SocketAddr,
}

impl LoopbackRedirect {
    /// Listen on a free port of 127.0.0.1.
    pub fn bind() -> Result<LoopbackRedirect, LoginError> {
        let listener =
            TcpListener::bind(("127.0.0.1", 0)).map_err(|e| LoginError::Io(e.to_string()))?;
        let addr = listener
            .local_addr()
            .map_err(|e| LoginError::Io(e.to_string()))?;
        Ok(LoopbackRedirect { listener, addr })
    }

    /// The redirect URI to register in the request.
    pub fn uri(&self) -> String {
        format!("http://127.0.0.1:{}/", self.addr.port())
    }

    /// Wait up to `timeout` for the browser to come back with a code for
    /// `state`; answer it with a page saying what happened. Requests that are
    /// not a redirect (a browser's favicon) are answered 404 and waited past; a
    /// redirect with another `state` is refused.
    pub fn wait(&self, state: &str, timeout: Duration) -> Result<String, LoginError> {
        let until = Instant::now() + timeout;
        self.listener
            .set_nonblocking(true)
            .map_err(|e| LoginError::Io(e.to_string()))?;
        loop {
            let stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() >= until {
                        return Err(LoginError::TimedOut(timeout.as_secs()));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
                Err(e) => return Err(LoginError::Io(e.to_string())),
            };
            if let Some(outcome) = answer(stream, state) {
                return outcome;
            }
        }
    }
}

/// Read one request from the browser and answer it; `None` when it was not
/// the redirect (keep waiting).
fn answer(mut stream: TcpStream, state: &str) -> Option<Result<String, LoginError>> {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line).ok()?;
    // "GET /?code=...&state=... HTTP/1.1"
    let target = line.split_whitespace().nth(1).unwrap_or("");
    let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
    let param = |name: &str| {
        query.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k == name).then(|| percent_decode(v))
        })
    };
    let outcome = match (param("code"), param("error"), param("state")) {
        (_, Some(e), _) => Err(LoginError::Refused(e)),
        (Some(_), None, Some(s)) if s != state => Err(LoginError::WrongState),
        (Some(code), None, Some(_)) => Ok(code),
        _ => {
            let _ = stream.write_all(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
            return None;
        }
    };
    let page = match &outcome {
        Ok(_) => "Tillmesh is signed in. You can close this page.".to_string(),
        Err(e) => format!("Tillmesh was not signed in: {e}."),
    };
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
        page.len()
    );
    match outcome {
        // Another login's redirect is refused, and this one waited for.
        Err(LoginError::WrongState) => None,
        other => Some(other),
    }
}

/// Base64url without padding (RFC 4648 §5), as PKCE and `state` use it.
fn base64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Percent-encode all but the unreserved characters (RFC 3986 §2.3).
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Decode `%XX` escapes and `+` (a space in a query); a `%` not followed by
/// two hex digits stays as it is.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pkce_challenge_is_rfc_7636s() {
        // RFC 7636, appendix B: the random octets, their verifier, its challenge.
        let octets: [u8; 32] = [
            116, 24, 223, 180, 151, 153, 224, 37, 79, 250, 96, 125, 216, 173, 187, 186, 22, 212,
            37, 77, 105, 214, 191, 240, 91, 88, 5, 88, 83, 132, 141, 121,
        ];
        assert_eq!(
            base64url(&octets),
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
        );
        let p = Pkce::from_verifier(base64url(&octets));
        assert_eq!(p.challenge, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
        let fresh = Pkce::new();
        assert_eq!(fresh.verifier.len(), 43);
        assert!(
            fresh
                .verifier
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_ne!(fresh, Pkce::new());
        assert!(
            !format!("{fresh:?}").contains(&fresh.verifier),
            "no secret in logs"
        );
        // Base64url of the RFC 4648 test vectors, without padding.
        for (plain, want) in [
            ("", ""),
            ("f", "Zg"),
            ("fo", "Zm8"),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg"),
        ] {
            assert_eq!(base64url(plain.as_bytes()), want);
        }
    }

    #[test]
    fn the_authorization_url_carries_every_parameter_encoded() {
        let r = AuthRequest::new(
            "https://accounts.google.com/o/oauth2/v2/auth",
            "123.apps.googleusercontent.com",
            "http://127.0.0.1:4711/",
            &["https://www.googleapis.com/auth/drive.file"],
        );
        let url = r.url();
        assert!(
            url.starts_with("https://accounts.google.com/o/oauth2/v2/auth?response_type=code&")
        );
        for part in [
            "client_id=123.apps.googleusercontent.com",
            "redirect_uri=http%3A%2F%2F127.0.0.1%3A4711%2F",
            "scope=https%3A%2F%2Fwww.googleapis.com%2Fauth%2Fdrive.file",
            &format!("state={}", r.state),
            &format!("code_challenge={}", r.pkce.challenge),
            "code_challenge_method=S256",
            "access_type=offline",
        ] {
            assert!(url.contains(part), "{url} lacks {part}");
        }
        assert!(!url.contains(&r.pkce.verifier), "the verifier never leaves");
        assert_eq!(percent_decode("a%20b+c%2Fd%zz%é%4"), "a b c/d%zz%é%4");
    }

    fn browser(uri: &str, path: &str) -> String {
        let addr = uri.trim_start_matches("http://").trim_end_matches('/');
        let mut s = TcpStream::connect(addr).expect("connect");
        write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").expect("send");
        let mut reply = String::new();
        std::io::Read::read_to_string(&mut s, &mut reply).expect("reply");
        reply
    }

    #[test]
    fn the_loopback_redirect_takes_this_logins_code_only() {
        let r = LoopbackRedirect::bind().expect("bind");
        let uri = r.uri();
        let page = std::thread::spawn(move || {
            // A favicon, then another login's redirect, then this one.
            let miss = browser(&uri, "/favicon.ico");
            let other = browser(&uri, "/?code=evil&state=someone-else");
            let ok = browser(&uri, "/?state=s%2D1&code=4%2F0Ab-code&scope=x");
            (miss, other, ok)
        });
        assert_eq!(
            r.wait("s-1", Duration::from_secs(10)),
            Ok("4/0Ab-code".to_string())
        );
        let (miss, other, ok) = page.join().expect("browser");
        assert!(miss.starts_with("HTTP/1.1 404"), "{miss}");
        assert!(other.contains("not signed in"), "{other}");
        assert!(ok.contains("signed in. You can close"), "{ok}");
    }

    #[test]
    fn a_refusal_or_silence_ends_the_login_with_why() {
        let r = LoopbackRedirect::bind().expect("bind");
        let uri = r.uri();
        let t = std::thread::spawn(move || browser(&uri, "/?error=access_denied&state=s"));
        assert_eq!(
            r.wait("s", Duration::from_secs(10)),
            Err(LoginError::Refused("access_denied".into()))
        );
        t.join().expect("browser");
        let quiet = LoopbackRedirect::bind().expect("bind");
        assert_eq!(
            quiet.wait("s", Duration::from_millis(100)),
            Err(LoginError::TimedOut(0))
        );
    }
}

/// An OAuth client and the endpoints it talks to: Google's, or an emulator's.
/// The client secret of an installed app is not a secret (Google says so), so
/// this is kept in the store's configuration as it is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OAuthClient {
    /// The app's client id.
    pub client_id: String,
    /// The app's client secret (installed and device apps have one; not secret).
    #[serde(default)]
    pub client_secret: Option<String>,
    /// The authorization endpoint.
    pub auth_uri: String,
    /// The token endpoint.
    pub token_uri: String,
    /// The device authorization endpoint.
    pub device_uri: String,
    /// The revocation endpoint.
    pub revoke_uri: String,
}

impl OAuthClient {
    /// Google's endpoints.
    pub fn google(client_id: &str, client_secret: Option<&str>) -> OAuthClient {
        OAuthClient {
            client_id: client_id.to_string(),
            client_secret: client_secret.map(str::to_string),
            auth_uri: "https://accounts.google.com/o/oauth2/v2/auth".into(),
            token_uri: "https://oauth2.googleapis.com/token".into(),
            device_uri: "https://oauth2.googleapis.com/device/code".into(),
            revoke_uri: "https://oauth2.googleapis.com/revoke".into(),
        }
    }

    /// Every endpoint under one root (an emulator serving Google's paths).
    pub fn at(root: &str, client_id: &str, client_secret: Option<&str>) -> OAuthClient {
        let root = root.trim_end_matches('/');
        OAuthClient {
            client_id: client_id.to_string(),
            client_secret: client_secret.map(str::to_string),
            auth_uri: format!("{root}/o/oauth2/v2/auth"),
            token_uri: format!("{root}/token"),
            device_uri: format!("{root}/device/code"),
            revoke_uri: format!("{root}/revoke"),
        }
    }

    fn post(&self, url: &str, form: &[(&str, &str)]) -> Result<serde_json::Value, OAuthError> {
        let http = crate::drive::http_client().map_err(|e| OAuthError::Network(e.to_string()))?;
        let mut all: Vec<(&str, &str)> = vec![("client_id", &self.client_id)];
        if let Some(s) = &self.client_secret {
            all.push(("client_secret", s));
        }
        all.extend_from_slice(form);
        let r = http
            .post(url)
            .form(&all)
            .send()
            .map_err(|e| OAuthError::Network(format!("{url}: {e}")))?;
        let status = r.status().as_u16();
        let body = r.bytes().map(|b| b.to_vec()).unwrap_or_default();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        if (200..300).contains(&status) {
            return Ok(v);
        }
        let error = v["error"].as_str().unwrap_or("").to_string();
        let said = v["error_description"].as_str().unwrap_or("").to_string();
        Err(match error.as_str() {
            "authorization_pending" => OAuthError::Pending,
            "slow_down" => OAuthError::SlowDown,
            "invalid_grant"
            | "invalid_token"
            | "access_denied"
            | "expired_token"
            | "unauthorized_client"
            | "invalid_client" => OAuthError::Refused(if said.is_empty() {
                error
            } else {
                format!("{error}: {said}")
            }),
            _ if status >= 500 => OAuthError::Network(format!("{url}: HTTP {status}")),
            _ => OAuthError::Provider(format!("HTTP {status} {error} {said}").trim().to_string()),
        })
    }

    /// Exchange an authorization `code` (with the PKCE `verifier` and the
    /// `redirect_uri` it was issued for) for tokens.
    pub fn exchange(
        &self,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
    ) -> Result<Tokens, OAuthError> {
        let v = self.post(
            &self.token_uri,
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("code_verifier", verifier),
                ("redirect_uri", redirect_uri),
            ],
        )?;
        Tokens::from_answer(&v, None)
    }

    /// A new access token for `refresh_token`.
    pub fn refresh(&self, refresh_token: &str) -> Result<Tokens, OAuthError> {
        let v = self.post(
            &self.token_uri,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
            ],
        )?;
        Tokens::from_answer(&v, Some(refresh_token))
    }

    /// Begin a device login for `scopes`.
    pub fn device_start(&self, scopes: &[&str]) -> Result<DeviceLogin, OAuthError> {
        let v = self.post(&self.device_uri, &[("scope", &scopes.join(" "))])?;
        let s = |k: &str| v[k].as_str().map(str::to_string);
        Ok(DeviceLogin {
            device_code: s("device_code")
                .ok_or_else(|| OAuthError::Provider("no device_code".into()))?,
            user_code: s("user_code").ok_or_else(|| OAuthError::Provider("no user_code".into()))?,
            // Google says `verification_url`; RFC 8628 says `verification_uri`.
            verification_url: s("verification_url")
                .or_else(|| s("verification_uri"))
                .ok_or_else(|| OAuthError::Provider("no verification URL".into()))?,
            expires_in: Duration::from_secs(v["expires_in"].as_u64().unwrap_or(1800)),
            interval: Duration::from_secs(v["interval"].as_u64().unwrap_or(5).max(1)),
        })
    }

    /// Poll until the device login is approved, refused or expired, waiting
    /// `interval` between polls (longer after `slow_down`).
    pub fn device_wait(&self, login: &DeviceLogin) -> Result<Tokens, OAuthError> {
        let until = Instant::now() + login.expires_in;
        let mut interval = login.interval;
        loop {
            std::thread::sleep(interval);
            match self.post(
                &self.token_uri,
                &[
                    ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                    ("device_code", &login.device_code),
                ],
            ) {
                Ok(v) => return Tokens::from_answer(&v, None),
                Err(OAuthError::Pending) => {}
                Err(OAuthError::SlowDown) => interval += Duration::from_secs(5),
                Err(e) => return Err(e),
            }
            if Instant::now() >= until {
                return Err(OAuthError::Refused(
                    "the code expired before it was approved".into(),
                ));
            }
        }
    }

    /// Revoke `token` (a refresh token ends the whole grant).
    pub fn revoke(&self, token: &str) -> Result<(), OAuthError> {
        self.post(&self.revoke_uri, &[("token", token)]).map(|_| ())
    }
}

/// A device login in progress: what the operator is shown.
#[derive(Debug, Clone)]
pub struct DeviceLogin {
    /// Polled for; never shown.
    pub device_code: String,
    /// The code the operator types.
    pub user_code: String,
    /// Where they type it.
    pub verification_url: String,
    /// How long the code is good.
    pub expires_in: Duration,
    /// How often to poll.
    pub interval: Duration,
}

/// Tokens from the token endpoint.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tokens {
    /// The access token.
    pub access_token: String,
    /// The refresh token (kept from before on a refresh).
    pub refresh_token: Option<String>,
    /// When the access token expires, in ms since the epoch.
    pub expires_at_ms: u64,
    /// The scopes granted.
    pub scope: String,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("expires_at_ms", &self.expires_at_ms)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl Tokens {
    fn from_answer(v: &serde_json::Value, refresh: Option<&str>) -> Result<Tokens, OAuthError> {
        let access = v["access_token"]
            .as_str()
            .ok_or_else(|| OAuthError::Provider("the token answer has no access_token".into()))?;
        if !v["token_type"]
            .as_str()
            .is_some_and(|t| t.eq_ignore_ascii_case("bearer"))
        {
            return Err(OAuthError::Provider(
                "the token is not a bearer token".into(),
            ));
        }
        Ok(Tokens {
            access_token: access.to_string(),
            refresh_token: v["refresh_token"]
                .as_str()
                .map(str::to_string)
                .or_else(|| refresh.map(str::to_string)),
            expires_at_ms: now_ms() + v["expires_in"].as_u64().unwrap_or(3600) * 1000,
            scope: v["scope"].as_str().unwrap_or_default().to_string(),
        })
    }

    /// Whether the access token is good for at least another minute.
    pub fn fresh(&self) -> bool {
        self.expires_at_ms > now_ms() + 60_000
    }
}

/// Why a token request failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum OAuthError {
    /// The provider refused the grant (revoked, expired, denied).
    #[error("the Google login was refused or revoked ({0}); run `tillmesh drive login` again")]
    Refused(String),
    /// The provider could not be reached, or failed for now.
    #[error("cannot reach the login service: {0}")]
    Network(String),
    /// The provider said something unexpected.
    #[error("the login service answered unexpectedly: {0}")]
    Provider(String),
    /// A device login is not approved yet.
    #[error("the device login is not approved yet")]
    Pending,
    /// Poll more slowly.
    #[error("the login service asks to poll more slowly")]
    SlowDown,
}

/// Access tokens refreshed from a refresh token as needed, for a sink.
#[derive(Debug)]
pub struct RefreshingTokens {
    client: OAuthClient,
    refresh_token: String,
    current: std::sync::Mutex<Option<Tokens>>,
}

impl RefreshingTokens {
    /// Tokens of `client` from `refresh_token` (and a current access token, if known).
    pub fn new(client: OAuthClient, refresh_token: String, current: Option<Tokens>) -> Self {
        RefreshingTokens {
            client,
            refresh_token,
            current: std::sync::Mutex::new(current),
        }
    }

    /// When the access token held now expires (ms since the epoch).
    pub fn expires_at_ms(&self) -> Option<u64> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|t| t.expires_at_ms)
    }

    fn renew(&self) -> Result<String, crate::sink::SinkError> {
        let t = self
            .client
            .refresh(&self.refresh_token)
            .map_err(|e| match e {
                OAuthError::Network(reason) => crate::sink::SinkError::Transient {
                    sink: "Google Drive".into(),
                    reason,
                },
                other => crate::sink::SinkError::Auth {
                    sink: "Google Drive".into(),
                    reason: other.to_string(),
                },
            })?;
        let access = t.access_token.clone();
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(t);
        Ok(access)
    }
}

impl crate::drive::AccessTokens for RefreshingTokens {
    fn access(&self) -> Result<String, crate::sink::SinkError> {
        let held = self
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match held {
            Some(t) if t.fresh() => Ok(t.access_token),
            _ => self.renew(),
        }
    }

    fn refreshed(&self) -> Result<String, crate::sink::SinkError> {
        self.renew()
    }
}
