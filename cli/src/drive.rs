//! `tillmesh drive`: the store's Google login, kept in the till home as
//! `drive.json` with its tokens encrypted to the store's backup keys, so that
//! only a till of the store can use them, and re-encrypted when the keys
//! rotate. Drive sinks take their tokens from it; `drive status` and `drive
//! logout` look at and end it. The login runs in the operator's process, never
//! in the daemon: a daemon never waits for a person.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use tillmesh_backup::drive::{AccessTokens, DriveConfig, DriveSink, GOOGLE_API};
use tillmesh_backup::oauth::{
    AuthRequest, LoopbackRedirect, OAuthClient, RefreshingTokens, Tokens,
};
use tillmesh_store::StoreSecret;

use crate::args::{DriveCmd, GoogleSignIn};
use crate::backups::now_ms;
use crate::commands::{print_json, rejected};
use crate::exit::Damaged;
use crate::home::{HomeFile, write_private};

/// The scope for files the app made, in My Drive.
pub const SCOPE_FILE: &str = "https://www.googleapis.com/auth/drive.file";
/// The scope for the hidden app data folder.
pub const SCOPE_APPDATA: &str = "https://www.googleapis.com/auth/drive.appdata";

/// What `drive.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DriveLogin {
    /// The format version (1).
    pub version: u32,
    /// The OAuth client and its endpoints.
    pub client: OAuthClient,
    /// The Drive API root.
    pub api: String,
    /// Whether the store's files go to the app data folder.
    pub app_data: bool,
    /// The account, as Drive reported it at login.
    pub account: String,
    /// When the login was made (ms since the epoch).
    pub logged_in_ms: u64,
    /// The store key the tokens are encrypted to.
    pub key_id: String,
    /// The tokens (JSON), age-encrypted to that key, base64 (empty once
    /// signed out).
    pub sealed: String,
    /// Signed out (`drive logout`) at `logged_in_ms`: kept, tokens wiped, so
    /// that the other tills learn it too.
    #[serde(default)]
    pub signed_out: bool,
}

/// The format version of `drive.json` this version writes and reads.
fn format_version() -> u32 {
    HomeFile::DriveLogin.version().unwrap_or(1)
}

/// The store configuration key the login is shared under.
const SHARED_KEY: &str = "drive/login";

/// Share the store's Google login between this home and the store's
/// configuration, whichever is newer: a login (or sign-out) made on this till
/// is published for the others (where this till's role may write the
/// configuration), and one made on another till is taken into this home. The
/// tokens stay sealed to the store's keys all the way. Run by the daemon's key
/// keeper.
pub fn share(store: &mut tillmesh_store::Store, home: &Path) -> Result<()> {
    let here = load_record(home)?;
    let published: Option<DriveLogin> = store
        .config_value(SHARED_KEY)?
        .and_then(|v| serde_json::from_value(v).ok())
        .filter(|l: &DriveLogin| l.version == format_version());
    let stamp = |l: &Option<DriveLogin>| l.as_ref().map(|l| l.logged_in_ms);
    if stamp(&here) > stamp(&published) {
        if let Some(l) = here {
            store.set_config_value(SHARED_KEY, serde_json::to_value(&l)?)?;
            tracing::info!(
                signed_out = l.signed_out,
                "published the store's Google login to the other tills"
            );
        }
    } else if stamp(&published) > stamp(&here)
        && let Some(l) = published
    {
        save(home, &l)?;
        tracing::info!(
            account = l.account,
            signed_out = l.signed_out,
            "took the store's Google login from another till"
        );
        reseal(home)?;
    }
    Ok(())
}

fn login_path(home: &Path) -> std::path::PathBuf {
    crate::home::path(home, HomeFile::DriveLogin)
}

/// The store's Google login in this home, if there is one (and it is not
/// signed out).
pub fn load(home: &Path) -> Result<Option<DriveLogin>> {
    Ok(load_record(home)?.filter(|l| !l.signed_out))
}

/// What `drive.json` holds, a sign-out included.
fn load_record(home: &Path) -> Result<Option<DriveLogin>> {
    let path = login_path(home);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let login: DriveLogin = serde_json::from_slice(&bytes).map_err(|e| {
        Damaged(format!(
            "{} is damaged ({e}); run `tillmesh drive login` again",
            path.display()
        ))
    })?;
    if login.version != format_version() {
        return Err(Damaged(format!(
            "{} is version {}; this tillmesh reads version {}",
            path.display(),
            login.version,
            format_version()
        ))
        .into());
    }
    Ok(Some(login))
}

fn save(home: &Path, login: &DriveLogin) -> Result<()> {
    write_private(&login_path(home), &serde_json::to_vec_pretty(login)?)
}

fn store_keys(home: &Path) -> Result<Vec<StoreSecret>> {
    let keys = crate::backups::store_secrets(home)?;
    if keys.is_empty() {
        return Err(rejected(
            "this till holds none of the store's backup keys yet, so a login could not be kept for the store; \
             run it on the admin till, or wait for this till's daemon to fetch the keys",
        ));
    }
    Ok(keys)
}

/// Encrypt `tokens` to the store's current backup key.
fn seal(tokens: &Tokens, keys: &[StoreSecret]) -> Result<(String, String)> {
    use base64::Engine;
    let key = tillmesh_backup::keys::current(keys).context("no store key")?;
    let identity: age::x25519::Identity = key
        .identity
        .parse()
        .map_err(|e| Damaged(format!("the store key {} is damaged: {e}", key.key_id)))?;
    let recipient = identity.to_public();
    let plain = serde_json::to_vec(tokens)?;
    let sealed = age::encrypt(&recipient, &plain).context("cannot encrypt the Google tokens")?;
    Ok((
        key.key_id.clone(),
        base64::engine::general_purpose::STANDARD.encode(sealed),
    ))
}

/// The tokens of `login`, opened with whichever store key they were sealed to.
fn open(login: &DriveLogin, keys: &[StoreSecret]) -> Result<Tokens> {
    use base64::Engine;
    let sealed = base64::engine::general_purpose::STANDARD
        .decode(&login.sealed)
        .map_err(|e| {
            Damaged(format!(
                "drive.json is damaged ({e}); run `tillmesh drive login` again"
            ))
        })?;
    let key = keys
        .iter()
        .find(|k| k.key_id == login.key_id)
        .ok_or_else(|| {
            rejected(format!(
                "the Google login is sealed to store key {}, which this till does not hold; \
             run `tillmesh drive login` again on a till that holds the store's keys",
                login.key_id
            ))
        })?;
    let identity: age::x25519::Identity = key
        .identity
        .parse()
        .map_err(|e| Damaged(format!("the store key {} is damaged: {e}", key.key_id)))?;
    let plain = age::decrypt(&identity, &sealed).map_err(|e| {
        Damaged(format!(
            "drive.json does not open with store key {} ({e})",
            key.key_id
        ))
    })?;
    Ok(serde_json::from_slice(&plain)
        .map_err(|e| Damaged(format!("drive.json holds unreadable tokens ({e})")))?)
}

/// Seal the login in `home` to the store's current key again (after a key
/// rotation); nothing to do without a login or when it is sealed to it already.
pub fn reseal(home: &Path) -> Result<()> {
    let Some(mut login) = load(home)? else {
        return Ok(());
    };
    let keys = crate::backups::store_secrets(home)?;
    if keys.is_empty() {
        return Ok(());
    }
    if tillmesh_backup::keys::current(&keys).is_some_and(|k| k.key_id == login.key_id) {
        return Ok(());
    }
    let tokens = open(&login, &keys)?;
    (login.key_id, login.sealed) = seal(&tokens, &keys)?;
    save(home, &login)
}

/// Tokens for the store's Drive sinks, refreshed as needed.
pub fn access_tokens(home: &Path) -> Result<Arc<dyn AccessTokens>> {
    let login = load(home)?
        .ok_or_else(|| rejected("this store has no Google login; run `tillmesh drive login`"))?;
    Ok(tokens_of(home, &login)?)
}

/// The tokens of `login`, opened with the store's keys in `home`.
fn tokens_of(home: &Path, login: &DriveLogin) -> Result<Arc<RefreshingTokens>> {
    let tokens = open(login, &store_keys(home)?)?;
    refreshing(login.client.clone(), tokens)
}

/// Tokens of `client` that refresh themselves from `tokens`' refresh token.
fn refreshing(client: OAuthClient, tokens: Tokens) -> Result<Arc<RefreshingTokens>> {
    let refresh = tokens.refresh_token.clone().context(
        "the Google login holds no refresh token; remove Tillmesh's access at \
         myaccount.google.com/permissions and run `tillmesh drive login` again",
    )?;
    Ok(Arc::new(RefreshingTokens::new(
        client,
        refresh,
        Some(tokens),
    )))
}

/// A sink of `folder` at the Drive API `api` with `tokens`.
fn sink_at(
    api: &str,
    app_data: bool,
    folder: &str,
    tokens: Arc<dyn AccessTokens>,
) -> Result<DriveSink> {
    let config = DriveConfig {
        api: api.to_string(),
        folder: folder.to_string(),
        app_data,
    };
    Ok(DriveSink::new(config, tokens)?)
}

/// The account behind `tokens` at the Drive API `api`, and its quota.
fn account(
    api: &str,
    app_data: bool,
    tokens: Arc<dyn AccessTokens>,
) -> Result<tillmesh_backup::drive::Account> {
    Ok(sink_at(api, app_data, "", tokens)?.account()?)
}

/// Where the store's files go by default: `tillmesh-` and the store's id.
pub fn default_folder(home: &Path) -> Result<String> {
    Ok(format!("tillmesh-{}", crate::backups::store_id_of(home)?))
}

/// The Drive configuration of a sink in `folder` under the login in `home`.
pub fn sink_config(home: &Path, folder: &str) -> Result<DriveConfig> {
    let login = load(home)?.ok_or_else(|| {
        rejected("this store has no Google login; run `tillmesh drive login` first")
    })?;
    Ok(DriveConfig {
        api: login.api,
        folder: folder.to_string(),
        app_data: login.app_data,
    })
}

/// The Drive sink `name` (default: the first configured), opened: the
/// store's mailbox.
pub fn mailbox(home: &Path, name: Option<&str>) -> Result<(String, crate::backups::OpenSink)> {
    let sinks = crate::backups::load_sinks(home)?;
    let (name, spec) = sinks
        .into_iter()
        .find(|(n, s)| {
            matches!(s.config, tillmesh_backup::sink::SinkConfig::Drive(_))
                && name.is_none_or(|want| want == n)
        })
        .ok_or_else(|| match name {
            Some(n) => rejected(format!(
                "no Drive sink named {n}; add one with `tillmesh sink add {n} drive FOLDER`"
            )),
            None => rejected("no Drive sink; add one with `tillmesh sink add NAME drive FOLDER`"),
        })?;
    let sink = crate::backups::open_sink(home, &spec.config)?;
    Ok((name, sink))
}

/// A Google sign-in just made: the client, the Drive API root and the
/// tokens.
pub struct SignedIn {
    pub client: OAuthClient,
    pub api: String,
    pub app_data: bool,
    pub tokens: Tokens,
}

impl std::fmt::Debug for SignedIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the tokens.
        f.debug_struct("SignedIn")
            .field("client", &self.client.client_id)
            .field("api", &self.api)
            .finish_non_exhaustive()
    }
}

impl SignedIn {
    /// Tokens that refresh themselves, for a Drive sink.
    pub fn access_tokens(&self) -> Result<Arc<dyn AccessTokens>> {
        Ok(refreshing(self.client.clone(), self.tokens.clone())?)
    }

    /// The sink of `folder` in the Drive signed in to.
    pub fn sink(&self, folder: &str) -> Result<DriveSink> {
        sink_at(&self.api, self.app_data, folder, self.access_tokens()?)
    }
}

/// Sign in to Google as `g` says: the device flow (a code for another
/// device) or a browser on this machine sent back to a loopback address
/// (with PKCE); what to do is written to `out`.
pub fn sign_in(g: &GoogleSignIn, out: &mut dyn Write) -> Result<SignedIn> {
    let client_id = g.client_id.as_deref().ok_or_else(|| {
        rejected(
            "no Google OAuth client: give --client-id or set TILLMESH_GOOGLE_CLIENT_ID \
             (docs/OPERATIONS.md says how to make one)",
        )
    })?;
    let secret = g.client_secret.as_deref();
    let (client, api) = match &g.endpoint {
        Some(root) => (
            OAuthClient::at(root, client_id, secret),
            root.trim_end_matches('/').to_string(),
        ),
        None => (
            OAuthClient::google(client_id, secret),
            GOOGLE_API.to_string(),
        ),
    };
    let scope = if g.app_data {
        SCOPE_APPDATA
    } else {
        SCOPE_FILE
    };
    let timeout = Duration::from_secs(g.timeout);
    let tokens = if g.device {
        let login = client.device_start(&[scope])?;
        writeln!(
            out,
            "On a phone or computer, open {} and enter the code {}\nWaiting for the approval (the code is good for {} minutes)...",
            login.verification_url,
            login.user_code,
            login.expires_in.as_secs() / 60
        )?;
        out.flush()?;
        client.device_wait(&login)?
    } else {
        let redirect = LoopbackRedirect::bind()?;
        let req = AuthRequest::new(
            &client.auth_uri,
            &client.client_id,
            &redirect.uri(),
            &[scope],
        );
        writeln!(
            out,
            "Open this address in a browser on this machine to let Tillmesh keep the store's backups in Google Drive:\n{}\nWaiting for the browser (up to {} s)...",
            req.url(),
            timeout.as_secs()
        )?;
        out.flush()?;
        let code = redirect.wait(&req.state, timeout)?;
        client.exchange(&code, &req.pkce.verifier, &redirect.uri())?
    };
    Ok(SignedIn {
        client,
        api,
        app_data: g.app_data,
        tokens,
    })
}

/// Keep `signed` as the store's login in `home`, sealed to the store's
/// `keys`, once Drive shows the tokens work; the login it replaces is revoked
/// (one login per store). The account, as Drive reports it.
pub fn keep_login(
    home: &Path,
    signed: &SignedIn,
    keys: &[StoreSecret],
) -> Result<tillmesh_backup::drive::Account> {
    let account = signed.sink("")?.account()?;
    let tokens = &signed.tokens;
    if let Some(old) = load(home)?
        && let Ok(old_tokens) = open(&old, keys)
        && let Some(old_refresh) = old_tokens.refresh_token
        && Some(&old_refresh) != tokens.refresh_token.as_ref()
        && let Err(e) = old.client.revoke(&old_refresh)
    {
        tracing::warn!(error = %e, "could not revoke the previous Google login");
    }
    let (key_id, sealed) = seal(tokens, keys)?;
    save(
        home,
        &DriveLogin {
            version: format_version(),
            client: signed.client.clone(),
            api: signed.api.clone(),
            app_data: signed.app_data,
            account: account.email.clone(),
            logged_in_ms: now_ms().max(load_record(home)?.map_or(0, |l| l.logged_in_ms + 1)),
            key_id,
            sealed,
            signed_out: false,
        },
    )?;
    Ok(account)
}

/// `tillmesh drive ...`.
pub fn run(home: &Path, c: &DriveCmd, out: &mut dyn Write) -> Result<()> {
    match c {
        DriveCmd::Login(g) => {
            let keys = store_keys(home)?;
            let signed = sign_in(g, out)?;
            let account = keep_login(home, &signed, &keys)?;
            writeln!(
                out,
                "Signed in to Google Drive as {} ({}). Add a sink with `tillmesh sink add drive drive {}`.",
                account.email,
                quota_text(account.quota.usage, account.quota.limit),
                default_folder(home)?
            )?;
        }
        DriveCmd::Status(f) => {
            let status = status(home)?;
            if f.json {
                return print_json(out, &status);
            }
            match &status.problem {
                Some(p) if !status.logged_in => writeln!(out, "Google Drive: {p}")?,
                _ => {
                    writeln!(out, "Google Drive: signed in as {}", status.account)?;
                    writeln!(out, "  API:     {}", status.api)?;
                    writeln!(
                        out,
                        "  storage: {}",
                        quota_text(status.quota_used.unwrap_or(0), status.quota_total)
                    )?;
                    for s in &status.sinks {
                        let last = s
                            .last_backup_ms
                            .map_or("no scheduled backup yet".to_string(), |t| {
                                format!("last backup {}", crate::output::time(t))
                            });
                        writeln!(out, "  sink {}: folder {}, {last}", s.name, s.folder)?;
                        if let Some(e) = &s.last_error {
                            writeln!(out, "    failing: {e}")?;
                        }
                    }
                    if let Some(p) = &status.problem {
                        writeln!(out, "  PROBLEM: {p}")?;
                    }
                    if let Some(ms) = status.token_expires_ms {
                        writeln!(
                            out,
                            "  access token good for {} more minutes (refreshed as needed)",
                            ms.saturating_sub(now_ms()) / 60_000
                        )?;
                    }
                }
            }
        }
        DriveCmd::Sync { .. } => {
            anyhow::bail!("drive sync runs in steps (core::execute)")
        }
        DriveCmd::Logout => {
            let Some(login) = load(home)? else {
                writeln!(out, "This store has no Google login.")?;
                return Ok(());
            };
            let revoked = open(&login, &store_keys(home)?)
                .ok()
                .and_then(|t| t.refresh_token)
                .map(|r| login.client.revoke(&r));
            // The tokens are wiped; the sign-out itself is kept for the other tills.
            save(
                home,
                &DriveLogin {
                    sealed: String::new(),
                    signed_out: true,
                    logged_in_ms: now_ms().max(login.logged_in_ms + 1),
                    ..login
                },
            )?;
            match revoked {
                Some(Ok(())) => writeln!(
                    out,
                    "Signed out of Google Drive: the login is revoked at Google and its tokens deleted here (the other tills' daemons learn it)."
                )?,
                Some(Err(e)) => writeln!(
                    out,
                    "Deleted the Google login's tokens here, but Google could not be told ({e}); remove Tillmesh's access at myaccount.google.com/permissions."
                )?,
                None => writeln!(
                    out,
                    "Deleted the Google login's tokens here (they could not be read to revoke them)."
                )?,
            }
        }
    }
    Ok(())
}

fn quota_text(used: u64, limit: Option<u64>) -> String {
    let gib = |b: u64| format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64);
    match limit {
        Some(l) if l > 0 => format!(
            "{} of {} used, {:.0} %",
            gib(used),
            gib(l),
            used as f64 * 100.0 / l as f64
        ),
        _ => format!("{} used, no limit", gib(used)),
    }
}

/// What `drive status` shows.
#[derive(Debug, Serialize)]
pub struct DriveStatus {
    /// Whether this home holds a login.
    pub logged_in: bool,
    /// The account.
    pub account: String,
    /// The API root.
    pub api: String,
    /// Bytes used in the account, when Drive answered.
    pub quota_used: Option<u64>,
    /// The account's limit, if it has one.
    pub quota_total: Option<u64>,
    /// When the current access token expires (ms since the epoch).
    pub token_expires_ms: Option<u64>,
    /// The Drive sinks.
    pub sinks: Vec<DriveSinkRow>,
    /// What is wrong, and what to do.
    pub problem: Option<String>,
}

/// A Drive sink in `drive status`.
#[derive(Debug, Serialize)]
pub struct DriveSinkRow {
    /// Its name.
    pub name: String,
    /// Its folder in Drive.
    pub folder: String,
    /// When the daemon last backed up there (ms since the epoch).
    pub last_backup_ms: Option<u64>,
    /// The last error there, while failing.
    pub last_error: Option<String>,
}

/// The login, checked against Drive now.
pub fn status(home: &Path) -> Result<DriveStatus> {
    let schedule = crate::backups::load_schedule(home);
    let sinks: Vec<DriveSinkRow> = crate::backups::load_sinks(home)?
        .into_iter()
        .filter_map(|(name, s)| match s.config {
            tillmesh_backup::sink::SinkConfig::Drive(d) => {
                let st = schedule.sinks.get(&name).cloned().unwrap_or_default();
                Some(DriveSinkRow {
                    name,
                    folder: d.folder,
                    last_backup_ms: st.last_ok_ms,
                    last_error: st.last_error,
                })
            }
            _ => None,
        })
        .collect();
    let Some(login) = load(home)? else {
        return Ok(DriveStatus {
            logged_in: false,
            account: String::new(),
            api: String::new(),
            quota_used: None,
            quota_total: None,
            token_expires_ms: None,
            sinks,
            problem: Some("not signed in: run `tillmesh drive login`".into()),
        });
    };
    let mut st = DriveStatus {
        logged_in: true,
        account: login.account.clone(),
        api: login.api.clone(),
        quota_used: None,
        quota_total: None,
        token_expires_ms: None,
        sinks,
        problem: None,
    };
    // The grant is checked at the token endpoint on every look.
    let refreshed = tokens_of(home, &login).and_then(|t| {
        t.refreshed()?;
        Ok(t)
    });
    match refreshed {
        Err(e) => st.problem = Some(format!("{e:#}")),
        Ok(t) => {
            st.token_expires_ms = t.expires_at_ms();
            match account(&login.api, login.app_data, t) {
                Ok(a) => {
                    st.account = a.email;
                    st.quota_used = Some(a.quota.usage);
                    st.quota_total = a.quota.limit;
                    if a.quota.nearly_full() {
                        st.problem = Some(format!(
                            "the Drive is {:.0} % full: free space in it, or buy more storage, before backups stop",
                            a.quota.percent()
                        ));
                    }
                }
                Err(e) => st.problem = Some(format!("{e:#}")),
            }
        }
    }
    Ok(st)
}

/// `tillmesh drive-emulator`: serve until stopped. The first line printed
/// holds the address it listens on (with port 0, the one it was given).
pub fn emulate(a: &crate::args::DriveEmulatorArgs) -> Result<()> {
    let options = tillmesh_drive_emulator::Options {
        auto_approve: a.auto_approve,
        quota: a.quota,
        device_interval_s: a.device_interval,
        ..Default::default()
    };
    let emulator = tillmesh_drive_emulator::Emulator::start(a.bind, options)
        .with_context(|| format!("cannot serve the Drive emulator on {}", a.bind))?;
    println!(
        "Drive emulator on {}: Google sign-in at /o/oauth2/v2/auth, /token, /device/code, /revoke; Drive at /drive/v3 and /upload/drive/v3{}",
        emulator.url(),
        if a.auto_approve {
            " (every sign-in approved at once)"
        } else {
            ""
        }
    );
    std::io::stdout().flush()?;
    loop {
        std::thread::park();
    }
}
