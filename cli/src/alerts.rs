//! Alerts kept and pushed: the daemon looks at the status report's alerts
//! (the one evaluator, [`crate::status::collect`]) every few seconds, keeps
//! each raise and clear in `alerts.json` (the active ones and a bounded
//! history), and POSTs them to the store's webhooks, signed with HMAC-SHA256,
//! retried with backoff until the receiver takes them.
//!
//! One till pushes each alert, not every till of the store: an alert about
//! this till (its backups, its recovery key, its unreplicated changes) is
//! pushed by this till; one every till sees alike (another till offline,
//! conflicts waiting, a clock ahead) only by the lead till, the online member
//! with the lowest id. When the lead goes down, the others see it offline
//! and the next lowest takes over.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tillmesh_backup::schedule::Backoff;
use tillmesh_store::Store;

use tillmesh_store::settings::Setting;

use crate::backups::now_ms;
use crate::commands::{print_json, rejected};
use crate::home::{HomeFile, write_private};
use crate::output::{Table, time};
use crate::status::{Alert, StatusReport};

/// The alert rules' thresholds, in minutes: the store's settings
/// `alerts/NAME` (see [`tillmesh_store::settings::SETTINGS`]).
pub fn thresholds() -> impl Iterator<Item = (&'static str, &'static Setting)> {
    tillmesh_store::settings::SETTINGS
        .iter()
        .filter_map(|s| Some((s.key.strip_prefix("alerts/")?, s)))
}

/// The daemon keeps this much of its refusals for the alerts (the longest
/// `refusals_min` it honours).
pub const REFUSALS_KEPT_MS: u64 = 24 * 3_600_000;

/// This many refusals of other peers (not revoked tills) within
/// `refusals_min` are a burst.
pub const REFUSAL_BURST: usize = 10;

/// The alerts of `refusals` (the daemon's, oldest first) within the last
/// `window_ms` before `now`: each revoked till that tried to connect
/// (`revoked_till_trying`, naming it by `name`), and a burst of other
/// refusals (`refused_connections`).
pub fn refusal_alerts(
    refusals: &[tillmesh_mesh::Refusal],
    name: impl Fn(&tillmesh_store::TillId) -> String,
    window_ms: u64,
    now: u64,
) -> Vec<Alert> {
    let recent: Vec<_> = refusals
        .iter()
        .filter(|r| r.at_ms + window_ms >= now)
        .collect();
    let minutes = window_ms / 60_000;
    let mut out = Vec::new();
    let mut revoked: std::collections::BTreeMap<tillmesh_store::TillId, usize> =
        std::collections::BTreeMap::new();
    for r in recent.iter().filter(|r| r.revoked) {
        *revoked.entry(r.peer).or_default() += 1;
    }
    for (peer, n) in revoked {
        let who = name(&peer);
        out.push(Alert::new(
            "revoked_till_trying",
            "warning",
            Some(&who),
            format!(
                "revoked till {who} tried to connect {n} {} in the last {minutes} min and was refused:                  if it still sells, its sales stay on it (`tillmesh export-unsynced` there)",
                if n == 1 { "time" } else { "times" }
            ),
        ));
    }
    let others: Vec<_> = recent.iter().filter(|r| !r.revoked).collect();
    if others.len() >= REFUSAL_BURST {
        let peers: BTreeSet<_> = others.iter().map(|r| r.peer).collect();
        let last = others.last().map(|r| r.cause.as_str()).unwrap_or_default();
        out.push(Alert::new(
            "refused_connections",
            "warning",
            None,
            format!(
                "{} connections or changes refused in the last {minutes} min, from {} peers                  (the last: {last}); see `tillmesh audit`",
                others.len(),
                peers.len()
            ),
        ));
    }
    out
}

/// The threshold `name` (one of [`thresholds`]): the store's, or the default.
pub fn threshold(store: &Store, name: &str) -> Result<u64> {
    let (_, s) = thresholds()
        .find(|(n, _)| *n == name)
        .ok_or_else(|| unknown_threshold(name))?;
    Ok(store.setting(s.key)?)
}

fn unknown_threshold(name: &str) -> anyhow::Error {
    let known: Vec<&str> = thresholds().map(|(n, _)| n).collect();
    rejected(format!(
        "no alert threshold {name}; there are: {}",
        known.join(", ")
    ))
}

/// Set the threshold `name` for the whole store (admin or back-office till).
pub fn set_threshold(store: &mut Store, name: &str, minutes: u64) -> Result<()> {
    threshold(store, name)?;
    store
        .set_setting(&format!("alerts/{name}"), &minutes.to_string())
        .map_err(crate::config::setting_error)?;
    Ok(())
}

/// The store configuration key of the webhooks.
pub const WEBHOOKS_KEY: &str = "alerts/webhooks";

/// The header carrying the body's signature: `sha256=` and the hex HMAC.
pub const SIGNATURE_HEADER: &str = "X-Tillmesh-Signature";

/// Records kept in `alerts.json` (the oldest cleared ones go first).
const KEPT: usize = 500;

/// How long one webhook POST may take.
const POST_TIMEOUT: Duration = Duration::from_secs(10);

/// Alert kinds every till sees alike: pushed by the lead till alone.
const STORE_WIDE: [&str; 3] = ["till_offline", "conflicts_pending", "clock_ahead"];

/// A webhook: where alerts are POSTed, and the secret their signature is made
/// with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Webhook {
    pub url: String,
    pub secret: String,
}

/// The store's webhooks.
pub fn webhooks(store: &Store) -> Result<Vec<Webhook>> {
    Ok(store
        .config_value(WEBHOOKS_KEY)?
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default())
}

/// What `alerts.json` holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Book {
    pub version: u32,
    /// Oldest first.
    pub records: Vec<Record>,
    /// The id of the next notice.
    pub next_notice: u64,
}

/// One alert from its raise to its clear.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Record {
    pub id: String,
    pub kind: String,
    pub severity: String,
    pub subject: Option<String>,
    pub message: String,
    /// When it was raised and cleared (unix ms).
    pub raised_ms: u64,
    pub cleared_ms: Option<u64>,
    /// Whether this till pushes it (else the lead till does).
    pub pushed_here: bool,
    /// Its raise and clear, one per webhook.
    pub notices: Vec<Notice>,
}

/// A raise or clear on its way to one webhook.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Notice {
    /// Unique per till: the receiver's key against duplicates.
    pub id: u64,
    /// `alert.raised` or `alert.cleared`.
    pub event: String,
    pub url: String,
    pub attempts: u32,
    /// When to try next (unix ms).
    pub next_ms: u64,
    pub delivered_ms: Option<u64>,
    pub last_error: Option<String>,
}

impl Notice {
    /// `delivered` or `pending`.
    pub fn state(&self) -> &'static str {
        if self.delivered_ms.is_some() {
            "delivered"
        } else {
            "pending"
        }
    }
}

/// The format version of `alerts.json`.
fn format_version() -> u32 {
    HomeFile::Alerts.version().unwrap_or(1)
}

/// The book in `home` (empty when there is none or it is unreadable: the
/// alerts are evaluated afresh).
pub fn load(home: &Path) -> Book {
    let path = crate::home::path(home, HomeFile::Alerts);
    let read = std::fs::read(&path)
        .ok()
        .map(|b| serde_json::from_slice::<Book>(&b));
    match read {
        Some(Ok(b)) => b,
        Some(Err(e)) => {
            tracing::warn!(file = %path.display(), error = %e, "unreadable; the alerts start afresh");
            Book::default()
        }
        None => Book::default(),
    }
}

/// Write the book to `home`.
pub fn save(home: &Path, book: &Book) -> Result<()> {
    let mut book = book.clone();
    book.version = format_version();
    write_private(
        &crate::home::path(home, HomeFile::Alerts),
        &serde_json::to_vec_pretty(&book)?,
    )
}

/// Whether this till is the lead of `report`: the online member with the
/// lowest id (itself included).
pub fn leads(report: &StatusReport) -> bool {
    report
        .tills
        .iter()
        .filter(|t| t.online && matches!(t.membership.as_str(), "self" | "member"))
        .map(|t| t.id.as_str())
        .min()
        .is_none_or(|lead| lead == report.me.id)
}

impl Book {
    /// The alerts active now.
    pub fn active(&self) -> impl Iterator<Item = &Record> {
        self.records.iter().filter(|r| r.cleared_ms.is_none())
    }

    fn notices_for(&mut self, event: &str, hooks: &[Webhook], at: u64) -> Vec<Notice> {
        hooks
            .iter()
            .map(|h| {
                self.next_notice += 1;
                Notice {
                    id: self.next_notice,
                    event: event.into(),
                    url: h.url.clone(),
                    attempts: 0,
                    next_ms: at,
                    delivered_ms: None,
                    last_error: None,
                }
            })
            .collect()
    }

    /// Compare the alerts of a look at `at` with the active ones: new ones are
    /// raised, gone ones cleared, each queued for `hooks` where this till
    /// pushes it (`lead`: this till leads the store's tills). The alerts
    /// raised and cleared, in that order.
    pub fn observe(
        &mut self,
        now: &[Alert],
        at: u64,
        hooks: &[Webhook],
        lead: bool,
    ) -> (Vec<Record>, Vec<Record>) {
        let mut raised = Vec::new();
        let mut cleared = Vec::new();
        let current: BTreeSet<&str> = now.iter().map(|a| a.id.as_str()).collect();
        for i in 0..self.records.len() {
            let r = &self.records[i];
            if r.cleared_ms.is_some() || current.contains(r.id.as_str()) {
                continue;
            }
            let pushed = r.pushed_here;
            let notices = if pushed {
                self.notices_for("alert.cleared", hooks, at)
            } else {
                Vec::new()
            };
            let r = &mut self.records[i];
            r.cleared_ms = Some(at);
            r.notices.extend(notices);
            cleared.push(r.clone());
        }
        let active: BTreeSet<String> = self.active().map(|r| r.id.clone()).collect();
        for a in now.iter().filter(|a| !active.contains(&a.id)) {
            let pushed_here = lead || !STORE_WIDE.contains(&a.kind);
            let notices = if pushed_here {
                self.notices_for("alert.raised", hooks, at)
            } else {
                Vec::new()
            };
            let r = Record {
                id: a.id.clone(),
                kind: a.kind.to_string(),
                severity: a.severity.to_string(),
                subject: a.subject.clone(),
                message: a.message.clone(),
                raised_ms: at,
                cleared_ms: None,
                pushed_here,
                notices,
            };
            raised.push(r.clone());
            self.records.push(r);
        }
        // The oldest cleared records go beyond the limit (never an active one).
        let mut excess = self.records.len().saturating_sub(KEPT);
        self.records.retain(|r| {
            let drop = excess > 0 && r.cleared_ms.is_some();
            excess -= usize::from(drop);
            !drop
        });
        (raised, cleared)
    }

    /// The notices due at `at`, as (record index, notice index): for each
    /// webhook, its oldest notice not yet taken, once its time has come.
    /// Each webhook gets its notices in the order they were made, so a
    /// receiver that was down never gets a clear before the raise it
    /// clears; a later notice waits behind one being retried.
    pub fn due(&self, at: u64) -> Vec<(usize, usize)> {
        let mut oldest: std::collections::BTreeMap<&str, (u64, usize, usize)> =
            std::collections::BTreeMap::new();
        for (i, r) in self.records.iter().enumerate() {
            for (j, n) in r.notices.iter().enumerate() {
                if n.delivered_ms.is_some() {
                    continue;
                }
                let slot = oldest.entry(n.url.as_str()).or_insert((n.id, i, j));
                if n.id < slot.0 {
                    *slot = (n.id, i, j);
                }
            }
        }
        let mut out: Vec<(usize, usize)> = oldest
            .into_values()
            .filter(|&(_, i, j)| self.records[i].notices[j].next_ms <= at)
            .map(|(_, i, j)| (i, j))
            .collect();
        out.sort_unstable();
        out
    }
}

/// The JSON body of a notice: the alert, what happened to it, which till and
/// store say so, and `text`, a line a chat service shows as it is.
pub fn body(report: &StatusReport, r: &Record, n: &Notice, at: u64) -> serde_json::Value {
    let verb = if n.event == "alert.raised" {
        "raised"
    } else {
        "cleared"
    };
    serde_json::json!({
        "event": n.event,
        "delivery": format!("{}-{}", report.me.id.get(..16).unwrap_or(&report.me.id), n.id),
        "sent_ms": at,
        "store": report.store,
        "store_name": report.store_name,
        "till": report.me.name,
        "till_id": report.me.id,
        "alert": {
            "id": r.id,
            "kind": r.kind,
            "severity": r.severity,
            "subject": r.subject,
            "message": r.message,
            "raised_ms": r.raised_ms,
            "cleared_ms": r.cleared_ms,
        },
        "text": format!(
            "[{} / {}] {} {verb}: {}",
            report.store_name,
            report.me.name,
            r.severity.to_uppercase(),
            r.message
        ),
    })
}

/// The signature header's value for `body` under `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    // HMAC takes a key of any length.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// POST `body` to `hook` (blocking): `Err` with why when the receiver did
/// not take it (no answer, or not a 2xx).
pub fn post(hook: &Webhook, event: &str, body: &[u8]) -> Result<(), String> {
    let client = tillmesh_backup::drive::http_client().map_err(|e| e.to_string())?;
    let reply = client
        .post(&hook.url)
        .timeout(POST_TIMEOUT)
        .header("Content-Type", "application/json")
        .header("X-Tillmesh-Event", event)
        .header(SIGNATURE_HEADER, signature(&hook.secret, body))
        .body(body.to_vec())
        .send()
        .map_err(|e| e.to_string())?;
    if reply.status().is_success() {
        Ok(())
    } else {
        Err(format!("the receiver answered {}", reply.status()))
    }
}

/// Try the due notices of `book` once each (at `at`, with the webhooks of
/// `hooks`; a notice for a webhook since removed is dropped); true when any
/// changed. Failed ones wait as `backoff` says (by default 1 s, 2 s, 4 s …
/// up to an hour).
pub async fn deliver(
    book: &mut Book,
    report: &StatusReport,
    hooks: &[Webhook],
    backoff: &Backoff,
    at: u64,
) -> bool {
    let due = book.due(at);
    let mut changed = false;
    for (i, j) in due {
        let (record, notice) = (&book.records[i], &book.records[i].notices[j]);
        let Some(hook) = hooks.iter().find(|h| h.url == notice.url).cloned() else {
            book.records[i].notices[j].delivered_ms = Some(at);
            book.records[i].notices[j].last_error = Some("the webhook was removed".into());
            changed = true;
            continue;
        };
        let bytes = body(report, record, notice, at).to_string().into_bytes();
        let event = notice.event.clone();
        let result = tokio::task::spawn_blocking(move || post(&hook, &event, &bytes))
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
        let n = &mut book.records[i].notices[j];
        n.attempts += 1;
        match result {
            Ok(()) => {
                n.delivered_ms = Some(now_ms());
                n.last_error = None;
            }
            Err(e) => {
                tracing::info!(
                    url = n.url,
                    error = e,
                    "an alert's webhook did not take it; trying again later"
                );
                let wait = backoff.delay(n.attempts, rand::random::<f64>());
                n.next_ms = now_ms() + wait.as_millis() as u64;
                n.last_error = Some(e);
            }
        }
        changed = true;
    }
    changed
}

/// `tillmesh alerts [--all] [--json]`: the active alerts (with `--all`, the
/// history too) and where each stands with the webhooks.
pub fn render(book: &Book, all: bool, json: bool, out: &mut dyn Write) -> Result<()> {
    let shown: Vec<&Record> = if all {
        book.records.iter().rev().collect()
    } else {
        book.active().collect()
    };
    if json {
        return print_json(out, &shown);
    }
    if shown.is_empty() {
        writeln!(
            out,
            "{}",
            if all {
                "No alerts on record"
            } else {
                "No active alerts"
            }
        )?;
        return Ok(());
    }
    let mut t = Table::new(&[
        "SEVERITY", "ALERT", "RAISED", "CLEARED", "PUSHED", "MESSAGE",
    ]);
    for r in shown {
        let pushed = if !r.pushed_here {
            "by the lead till".to_string()
        } else if r.notices.is_empty() {
            "no webhook".to_string()
        } else if r.notices.iter().all(|n| n.delivered_ms.is_some()) {
            "delivered".to_string()
        } else {
            let n = r.notices.iter().find(|n| n.delivered_ms.is_none());
            format!(
                "pending{}",
                n.and_then(|n| n.last_error.as_ref())
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            )
        };
        t.row(vec![
            r.severity.clone(),
            r.id.clone(),
            time(r.raised_ms),
            r.cleared_ms.map(time).unwrap_or_else(|| "-".into()),
            pushed,
            r.message.clone(),
        ]);
    }
    write!(out, "{}", t.render())?;
    Ok(())
}

/// `tillmesh alerts webhook add URL [--secret S]`: a new secret is made when
/// none is given, and printed once.
pub fn add_webhook(store: &mut Store, url: &str, secret: Option<&str>) -> Result<Webhook> {
    let parsed =
        reqwest::Url::parse(url).map_err(|e| rejected(format!("{url} is not a URL ({e})")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(rejected(format!(
            "{url}: a webhook is an http or https URL"
        )));
    }
    let secret = match secret {
        Some(s) if s.len() >= 16 => s.to_string(),
        Some(_) => return Err(rejected("a webhook secret has at least 16 characters")),
        None => hex::encode(rand::random::<[u8; 24]>()),
    };
    let mut hooks = webhooks(store)?;
    hooks.retain(|h| h.url != url);
    let hook = Webhook {
        url: url.to_string(),
        secret,
    };
    hooks.push(hook.clone());
    store.set_config_value(WEBHOOKS_KEY, serde_json::to_value(&hooks)?)?;
    Ok(hook)
}

/// `tillmesh alerts webhook remove URL`.
pub fn remove_webhook(store: &mut Store, url: &str) -> Result<()> {
    let mut hooks = webhooks(store)?;
    let before = hooks.len();
    hooks.retain(|h| h.url != url);
    if hooks.len() == before {
        return Err(crate::exit::Coded(crate::exit::NOT_FOUND, format!("no webhook {url}")).into());
    }
    store.set_config_value(WEBHOOKS_KEY, serde_json::to_value(&hooks)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revoked_till_trying_and_a_burst_of_refusals_are_alerted_within_the_window() {
        use tillmesh_mesh::Refusal;
        let revoked = tillmesh_store::TillKey::generate().till_id();
        let stranger = tillmesh_store::TillKey::generate().till_id();
        let r = |at_ms, peer, revoked| Refusal {
            at_ms,
            peer,
            revoked,
            cause: "not a member (tillmesh/sync)".into(),
        };
        let name = |id: &tillmesh_store::TillId| {
            if *id == revoked {
                "T9".to_string()
            } else {
                id.fmt_short()
            }
        };
        let minute = 60_000;
        let mut seen = vec![r(0, revoked, true), r(10 * minute, revoked, true)];
        seen.extend((0..9).map(|i| r(10 * minute + i, stranger, false)));
        let kinds = |seen: &[Refusal], now| -> Vec<(&'static str, Option<String>)> {
            refusal_alerts(seen, name, 15 * minute, now)
                .into_iter()
                .map(|a| (a.kind, a.subject))
                .collect()
        };
        // Nine strangers are not yet a burst; the revoked till is alerted.
        assert_eq!(
            kinds(&seen, 11 * minute),
            vec![("revoked_till_trying", Some("T9".into()))]
        );
        seen.push(r(11 * minute, stranger, false));
        assert_eq!(
            kinds(&seen, 11 * minute),
            vec![
                ("revoked_till_trying", Some("T9".into())),
                ("refused_connections", None)
            ]
        );
        let msg = &refusal_alerts(&seen, name, 15 * minute, 11 * minute)[0].message;
        assert!(msg.contains("2 times"), "{msg}");
        // Past the window, cleared.
        assert!(kinds(&seen, 40 * minute).is_empty());
    }

    fn alert(kind: &'static str, subject: Option<&str>) -> Alert {
        Alert::new(kind, "warning", subject, format!("{kind} happened"))
    }

    fn hook() -> Vec<Webhook> {
        vec![Webhook {
            url: "http://127.0.0.1:9/hook".into(),
            secret: "0123456789abcdef".into(),
        }]
    }

    #[test]
    fn an_alert_is_raised_once_and_cleared_once() {
        let mut book = Book::default();
        let a = alert("recovery_key", None);
        let (raised, cleared) = book.observe(std::slice::from_ref(&a), 10, &hook(), false);
        assert_eq!((raised.len(), cleared.len()), (1, 0));
        let (raised, cleared) = book.observe(std::slice::from_ref(&a), 20, &hook(), false);
        assert_eq!(
            (raised.len(), cleared.len()),
            (0, 0),
            "still active: nothing new"
        );
        let (raised, cleared) = book.observe(&[], 30, &hook(), false);
        assert_eq!((raised.len(), cleared.len()), (0, 1));
        assert_eq!(cleared[0].cleared_ms, Some(30));
        let events: Vec<&str> = book.records[0]
            .notices
            .iter()
            .map(|n| n.event.as_str())
            .collect();
        assert_eq!(events, ["alert.raised", "alert.cleared"]);
        // Raised again later: a new record.
        book.observe(std::slice::from_ref(&a), 40, &hook(), false);
        assert_eq!(book.records.len(), 2);
        assert_eq!(book.active().count(), 1);
    }

    #[test]
    fn store_wide_alerts_are_pushed_by_the_lead_till_alone() {
        let mut book = Book::default();
        let offline = alert("till_offline", Some("T02"));
        let own = alert("sink_failing", Some("usb"));
        book.observe(&[offline.clone(), own.clone()], 10, &hook(), false);
        let pushed: Vec<(&str, usize)> = book
            .records
            .iter()
            .map(|r| (r.kind.as_str(), r.notices.len()))
            .collect();
        assert_eq!(pushed, [("till_offline", 0), ("sink_failing", 1)]);
        let mut lead = Book::default();
        lead.observe(&[offline], 10, &hook(), true);
        assert_eq!(lead.records[0].notices.len(), 1);
        assert!(lead.records[0].pushed_here);
    }

    #[test]
    fn due_notices_wait_for_their_time_and_the_signature_is_an_hmac() {
        let mut book = Book::default();
        book.observe(&[alert("recovery_key", None)], 100, &hook(), false);
        assert_eq!(book.due(99), []);
        assert_eq!(book.due(100), [(0, 0)]);
        book.records[0].notices[0].delivered_ms = Some(101);
        assert_eq!(book.due(200), []);
        // A receiver down for a raise gets its clear only after the raise,
        // whenever the clear was made; other webhooks are not held up.
        let mut book = Book::default();
        let mut hooks = hook();
        book.observe(&[alert("sink_failing", Some("usb"))], 100, &hooks, false);
        book.records[0].notices[0].attempts = 3;
        book.records[0].notices[0].next_ms = 5_000;
        hooks.push(Webhook {
            url: "http://127.0.0.1:9/other".into(),
            secret: "0123456789abcdef".into(),
        });
        book.observe(&[], 200, &hooks, false);
        let events = |book: &Book, at| -> Vec<(String, String)> {
            book.due(at)
                .into_iter()
                .map(|(i, j)| {
                    let n = &book.records[i].notices[j];
                    (n.url.clone(), n.event.clone())
                })
                .collect()
        };
        assert_eq!(
            events(&book, 300),
            [(
                "http://127.0.0.1:9/other".to_string(),
                "alert.cleared".to_string()
            )],
            "the first webhook's clear waits for its raise"
        );
        assert_eq!(
            events(&book, 5_000),
            [
                (
                    "http://127.0.0.1:9/hook".to_string(),
                    "alert.raised".to_string()
                ),
                (
                    "http://127.0.0.1:9/other".to_string(),
                    "alert.cleared".to_string()
                )
            ]
        );
        book.records[0].notices[0].delivered_ms = Some(5_001);
        assert_eq!(
            events(&book, 5_001)[0],
            (
                "http://127.0.0.1:9/hook".to_string(),
                "alert.cleared".to_string()
            )
        );
        // RFC 4231, test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn the_history_is_bounded_but_keeps_every_active_alert() {
        let mut book = Book::default();
        let active: Vec<Alert> = (0..10)
            .map(|i| alert("sink_failing", Some(&format!("s{i}"))))
            .collect();
        book.observe(&active, 1, &[], false);
        for i in 0..KEPT as u64 {
            let a = alert("recovery_file", Some(&format!("r{i}")));
            let mut now = active.clone();
            now.push(a);
            book.observe(&now, 2 + 2 * i, &[], false);
            book.observe(&active, 3 + 2 * i, &[], false);
        }
        assert!(book.records.len() <= KEPT);
        assert_eq!(book.active().count(), 10);
    }
}
