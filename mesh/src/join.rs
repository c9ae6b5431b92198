//! Enrolment: one-time tickets and the `tillmesh/join/1` protocol.
//!
//! `invite` (on the admin till) records a one-time secret with an expiry and prints
//! a [`Ticket`]: the store id, the admin key, how to reach the admin till, the
//! secret and the expiry. `join` proves the secret over an iroh connection to the
//! admin till (whose identity iroh authenticates: its id is in the ticket), which
//! marks the invitation used, writes an admin-signed certificate for the new till
//! and answers with what the new till needs to create its store. The new till then
//! fetches every document in an ordinary sync session, as the member it now is.

use std::time::Duration;

use iroh::endpoint::{Connection, VarInt};
use iroh::protocol::{AcceptError, ProtocolHandler};
use serde::{Deserialize, Serialize};
use tillmesh_store::{StoreId, TillId, TillKey, TillName};

use crate::node::PeerAddr;
use crate::wire::{read_msg, request, write_msg};
use tillmesh_store::StoreHandle;

/// The ALPN of enrolment.
pub const JOIN_ALPN: &[u8] = b"tillmesh/join/1";

const TICKET_PREFIX: &str = "tillmesh1";

/// An invitation to join a store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    /// Ticket format version: 1, or 2 when it carries relay certificates.
    pub version: u8,
    /// The store.
    pub store: [u8; 16],
    /// The store's admin public key.
    pub admin_key: [u8; 32],
    /// The admin till's id.
    pub admin_till: [u8; 32],
    /// How to reach the admin till.
    pub addr: PeerAddr,
    /// The one-time secret.
    pub secret: [u8; 32],
    /// Unix milliseconds after which the ticket is refused.
    pub expires_ms: u64,
    /// Certificate fingerprints of the store's relays (URL, fingerprint), so a
    /// till can join through a relay served over HTTPS with its own certificate
    /// (version 2).
    pub relay_certs: Vec<(String, String)>,
}

/// The layout of a version 1 ticket: [`Ticket`] without relay certificates.
#[derive(Serialize, Deserialize)]
struct TicketV1 {
    version: u8,
    store: [u8; 16],
    admin_key: [u8; 32],
    admin_till: [u8; 32],
    addr: PeerAddr,
    secret: [u8; 32],
    expires_ms: u64,
}

/// A ticket string that does not decode.
#[derive(Debug, thiserror::Error)]
#[error("this is not a tillmesh ticket ({0}); copy the whole line `tillmesh invite` printed")]
pub struct BadTicket(String);

impl Ticket {
    /// The ticket as one line of text: version 1 when there are no relay
    /// certificates (so older tills read it), else version 2.
    pub fn encode(&self) -> String {
        let bytes = if self.relay_certs.is_empty() {
            postcard::to_stdvec(&TicketV1 {
                version: 1,
                store: self.store,
                admin_key: self.admin_key,
                admin_till: self.admin_till,
                addr: self.addr.clone(),
                secret: self.secret,
                expires_ms: self.expires_ms,
            })
        } else {
            postcard::to_stdvec(&Ticket {
                version: 2,
                ..self.clone()
            })
        };
        format!("{TICKET_PREFIX}{}", hex::encode(bytes.unwrap_or_default()))
    }

    /// Parse a ticket line (version 1 or 2).
    pub fn decode(s: &str) -> Result<Self, BadTicket> {
        let body = s
            .trim()
            .strip_prefix(TICKET_PREFIX)
            .ok_or_else(|| BadTicket("it does not start with tillmesh1".into()))?;
        let bytes = hex::decode(body).map_err(|e| BadTicket(e.to_string()))?;
        let bad = |e: postcard::Error| BadTicket(e.to_string());
        match bytes.first() {
            Some(1) => {
                let t: TicketV1 = postcard::from_bytes(&bytes).map_err(bad)?;
                Ok(Ticket {
                    version: 1,
                    store: t.store,
                    admin_key: t.admin_key,
                    admin_till: t.admin_till,
                    addr: t.addr,
                    secret: t.secret,
                    expires_ms: t.expires_ms,
                    relay_certs: Vec::new(),
                })
            }
            Some(2) => postcard::from_bytes(&bytes).map_err(bad),
            Some(v) => Err(BadTicket(format!(
                "unknown ticket version {v}: damaged, or made by a newer Tillmesh"
            ))),
            None => Err(BadTicket("it is empty".into())),
        }
    }

    /// The ticket's relay certificates for `urls`, keyed by those URLs as
    /// given (a trailing slash makes no difference), as the endpoint takes them.
    pub fn relay_certs_for(&self, urls: &[String]) -> std::collections::BTreeMap<String, String> {
        crate::relay::certs_for(urls, self.relay_certs.iter().map(|(u, fp)| (u, fp)))
    }
}

/// The join protocol version this build speaks. Version 2 adds the store's
/// backup keys to the reply; a version 1 request gets a version 1 reply.
pub const JOIN_VERSION: u8 = 2;

/// What a joining till asks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinRequest {
    /// Protocol version (1 or 2).
    pub version: u8,
    /// The ticket's secret.
    pub secret: [u8; 32],
    /// The name the new till wants.
    pub name: String,
}

/// What the admin till answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum JoinReply {
    /// Welcome.
    Accepted {
        /// The store's display name.
        store_name: String,
        /// The role given to the new till.
        role: String,
        /// The store's relay URLs.
        relays: Vec<String>,
    },
    /// Refused, with the reason.
    Refused(String),
    /// Welcome, with the store's backup keys (version 2).
    AcceptedWithKeys {
        /// The store's display name.
        store_name: String,
        /// The role given to the new till.
        role: String,
        /// The store's relay URLs.
        relays: Vec<String>,
        /// The store's backup keys, oldest first.
        store_keys: Vec<tillmesh_store::StoreSecret>,
    },
}

/// How long either side of a join or keys request waits for the other: for the
/// request once the connection is open, for the reply once it is sent.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Refused join attempts audited per hour at most, whoever makes them: a
/// stranger with a forged ticket and ever new keys costs the admin till at
/// most this many audit entries (each fsync'd and replicated to every till).
pub const MAX_AUDITED_REFUSALS_PER_HOUR: usize = 60;

const HOUR_MS: u64 = 3_600_000;

/// Which refused attempts go into the audit trail: once per peer and cause per
/// hour (for a stranger without a valid invitation, once per cause whatever its
/// key), and at most [`MAX_AUDITED_REFUSALS_PER_HOUR`] in all. The others are
/// only logged.
#[derive(Debug, Default)]
pub(crate) struct RefusalAudit {
    /// When each (peer, cause) was last audited (Unix milliseconds).
    last: std::collections::HashMap<(TillId, String), u64>,
}

impl RefusalAudit {
    /// Whether the refusal of `peer` for `cause` at `now_ms` is audited.
    pub(crate) fn admit(&mut self, peer: TillId, cause: &str, now_ms: u64) -> bool {
        self.last
            .retain(|_, at| now_ms.saturating_sub(*at) < HOUR_MS);
        let key = (peer, cause.to_string());
        if self.last.contains_key(&key) || self.last.len() >= MAX_AUDITED_REFUSALS_PER_HOUR {
            return false;
        }
        self.last.insert(key, now_ms);
        true
    }

    /// Whether the refusal of a stranger (one without a valid invitation) for
    /// `cause` at `now_ms` is audited: a stranger can make a new key for every
    /// attempt, so it is once per cause an hour, whichever key asks.
    pub(crate) fn admit_stranger(&mut self, cause: &str, now_ms: u64) -> bool {
        self.admit(TillId::from_bytes([0; 32]), cause, now_ms)
    }
}

/// The admin till's side of enrolment.
#[derive(Debug, Clone)]
pub(crate) struct JoinProto {
    pub store: StoreHandle,
    pub admin: TillKey,
    pub relays: crate::node::Relays,
    /// Wakes anti-entropy, so the other tills learn of a new member at once.
    pub wake: std::sync::Arc<tokio::sync::Notify>,
    /// Which refusals are audited.
    pub refusals: std::sync::Arc<std::sync::Mutex<RefusalAudit>>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl ProtocolHandler for JoinProto {
    async fn accept(&self, conn: Connection) -> Result<(), AcceptError> {
        let joiner = TillId::from_bytes(*conn.remote_id().as_bytes());
        let read = async {
            let (send, mut recv) = conn.accept_bi().await?;
            let req = read_msg::<_, JoinRequest>(&mut recv).await;
            Ok::<_, AcceptError>((send, req))
        };
        let (mut send, req) = match tokio::time::timeout(REQUEST_TIMEOUT, read).await {
            Ok(r) => r?,
            Err(_) => {
                tracing::info!(peer = %joiner.fmt_short(), "no join request in time");
                conn.close(VarInt::from_u32(408), b"request timeout");
                return Ok(());
            }
        };
        let req = match req {
            Ok((r, _)) => r,
            Err(e) => {
                tracing::warn!(peer = %joiner.fmt_short(), error = %e, "unreadable join request");
                conn.close(VarInt::from_u32(400), b"bad request");
                return Ok(());
            }
        };
        let admin = self.admin.clone();
        let version = req.version;
        let relays = self.relays.urls();
        let refusals = self.refusals.clone();
        let reply = self
            .store
            .call(move |s| -> JoinReply {
                // The secret first: without it a stranger learns nothing, not
                // even whether a till name exists.
                let now = now_ms();
                if let Err(e) = s.check_invite(&req.secret, now) {
                    let cause = format!("join: {e}");
                    let audit = refusals
                        .lock()
                        .map(|mut r| r.admit_stranger(&cause, now))
                        .unwrap_or(false);
                    tracing::warn!(peer = %joiner.fmt_short(), audited = audit, reason = %e, "refused a join");
                    if audit {
                        let _ = s.record_refused(&joiner.to_string(), &cause);
                    }
                    return JoinReply::Refused(e.to_string());
                }
                let name: TillName = match req.name.parse() {
                    Ok(n) => n,
                    Err(e) => return JoinReply::Refused(e.to_string()),
                };
                match s.tills() {
                    Ok(tills)
                        if tills
                            .iter()
                            .any(|t| t.name == name.as_str() && t.id != joiner) =>
                    {
                        return JoinReply::Refused(format!(
                            "a till named {name} already exists; choose another name"
                        ));
                    }
                    Ok(_) => {}
                    Err(e) => return JoinReply::Refused(e.to_string()),
                }
                let role = match s.redeem_invite(&req.secret, now) {
                    Ok(role) => role,
                    Err(e) => return JoinReply::Refused(e.to_string()),
                };
                if let Err(e) = s.certify(&admin, joiner, &name, role) {
                    return JoinReply::Refused(e.to_string());
                }
                if version >= 2 {
                    JoinReply::AcceptedWithKeys {
                        store_name: s.store_name().to_string(),
                        role: role.to_string(),
                        relays,
                        store_keys: s.store_secrets().unwrap_or_default(),
                    }
                } else {
                    JoinReply::Accepted {
                        store_name: s.store_name().to_string(),
                        role: role.to_string(),
                        relays,
                    }
                }
            })
            .await
            .unwrap_or_else(|e| JoinReply::Refused(e.to_string()));
        if !matches!(reply, JoinReply::Refused(_)) {
            self.wake.notify_one();
        }
        let _ = tokio::time::timeout(REQUEST_TIMEOUT, write_msg(&mut send, &reply)).await;
        let _ = send.finish();
        let _ = tokio::time::timeout(Duration::from_secs(5), conn.closed()).await;
        Ok(())
    }
}

/// `request` within [`REQUEST_TIMEOUT`] (after the connection's own 20 s to
/// connect): a peer that accepts and never answers is a clear error, not a
/// command that hangs.
pub(crate) async fn within<T>(
    limit: Duration,
    peer: &TillId,
    what: &str,
    request: impl Future<Output = Result<T, crate::NodeError>>,
) -> Result<T, crate::NodeError> {
    tokio::time::timeout(limit, request)
        .await
        .unwrap_or_else(|_| {
            Err(crate::NodeError::Unreachable {
                peer: peer.fmt_short(),
                reason: format!(
                    "no answer to the {what} request within {} s (is its daemon running and reachable?)",
                    limit.as_secs()
                ),
            })
        })
}

/// Ask the admin till of `ticket` to admit the till with `key` under `name`.
pub async fn request_join(
    endpoint: &iroh::Endpoint,
    ticket: &Ticket,
    name: &str,
) -> Result<JoinReply, crate::NodeError> {
    let admin = TillId::from_bytes(ticket.admin_till);
    let unreachable = |reason: String| crate::NodeError::Unreachable {
        peer: admin.fmt_short(),
        reason,
    };
    let addr = ticket
        .addr
        .endpoint_addr(&admin)
        .ok_or_else(|| unreachable("the ticket's address is invalid".into()))?;
    let req = JoinRequest {
        version: JOIN_VERSION,
        secret: ticket.secret,
        name: name.to_string(),
    };
    within(
        CONNECT_TIMEOUT + REQUEST_TIMEOUT,
        &admin,
        "join",
        request(endpoint, addr, JOIN_ALPN, &admin, &req),
    )
    .await
}

/// How long `request` tries to connect.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// The store id a ticket is for.
pub fn ticket_store(t: &Ticket) -> StoreId {
    StoreId::from_bytes(t.store)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticket(relay_certs: Vec<(String, String)>) -> Ticket {
        Ticket {
            version: 2,
            store: [1; 16],
            admin_key: [2; 32],
            admin_till: [3; 32],
            addr: PeerAddr {
                ip: vec!["127.0.0.1:4000".parse().expect("addr")],
                relay: vec!["https://10.0.0.2:3341".into()],
            },
            secret: [4; 32],
            expires_ms: 5,
            relay_certs,
        }
    }

    #[test]
    fn refused_joins_are_audited_once_per_peer_and_cause_an_hour_and_few_in_all() {
        let mut r = RefusalAudit::default();
        let (p, q) = (TillKey::generate().till_id(), TillKey::generate().till_id());
        assert!(r.admit(p, "join: unknown invitation", 0));
        assert!(
            !r.admit(p, "join: unknown invitation", 1_000),
            "the same again"
        );
        assert!(
            r.admit(p, "join: this invitation has expired", 1_000),
            "another cause"
        );
        assert!(
            r.admit(q, "join: unknown invitation", 1_000),
            "another peer"
        );
        assert!(
            r.admit(p, "join: unknown invitation", HOUR_MS),
            "an hour later"
        );
        // Ever new keys: at most the cap an hour, then again the next hour.
        let mut audited = 0;
        for i in 0..1_000 {
            audited += usize::from(r.admit(TillKey::generate().till_id(), "x", 2 * HOUR_MS + i));
        }
        assert_eq!(audited, MAX_AUDITED_REFUSALS_PER_HOUR);
        assert!(r.admit(p, "x", 4 * HOUR_MS));
        // Strangers: once per cause, whatever key each attempt comes with.
        let mut r = RefusalAudit::default();
        assert!(r.admit_stranger("join: unknown invitation", 0));
        assert!(!r.admit_stranger("join: unknown invitation", 1_000));
        assert!(r.admit_stranger("join: this invitation has expired", 1_000));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_without_an_answer_times_out_clearly() {
        let peer = TillKey::generate().till_id();
        let e = within(
            REQUEST_TIMEOUT,
            &peer,
            "join",
            std::future::pending::<Result<(), crate::NodeError>>(),
        )
        .await
        .expect_err("times out");
        assert!(
            e.to_string()
                .contains("no answer to the join request within 30 s"),
            "{e}"
        );
    }

    #[test]
    fn tickets_with_relay_certificates_are_version_2_and_others_stay_version_1() {
        let plain = ticket(Vec::new());
        let line = plain.encode();
        let back = Ticket::decode(&line).expect("decode");
        assert_eq!(
            back.version, 1,
            "readable by tills that know version 1 only"
        );
        assert_eq!(back.addr, plain.addr);
        assert!(back.relay_certs.is_empty());
        // Exactly the version 1 layout.
        let bytes = hex::decode(line.strip_prefix(TICKET_PREFIX).expect("prefix")).expect("hex");
        let v1: TicketV1 = postcard::from_bytes(&bytes).expect("a version 1 ticket");
        assert_eq!(v1.secret, plain.secret);

        let pinned = ticket(vec![("https://10.0.0.2:3341".into(), "ab".repeat(32))]);
        let back = Ticket::decode(&pinned.encode()).expect("decode");
        assert_eq!(back, pinned);
        let certs = back.relay_certs_for(&["https://10.0.0.2:3341/".into(), "http://other".into()]);
        assert_eq!(
            certs.get("https://10.0.0.2:3341/"),
            Some(&"ab".repeat(32)),
            "found whatever the trailing slash"
        );
        assert_eq!(certs.len(), 1);

        for bad in ["tillmesh1", "tillmesh1zz", "tillmesh109", "hello"] {
            assert!(Ticket::decode(bad).is_err(), "{bad}");
        }
    }
}
