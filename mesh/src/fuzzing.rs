//! Fuzz target bodies for everything a till decodes from a peer: sync frames
//! ([`wire_frame`]) and sync messages sent in pieces ([`sync_pieces`]), gossip
//! ([`gossip()`]), tickets ([`ticket`]), and the join and keys requests and replies
//! ([`join`], [`keys`]). Each body is called by its cargo-fuzz target (`fuzz/`)
//! and, on every committed input, by an ordinary test; see
//! [`tillmesh_store::fuzzing`] and docs/fuzzing.md.

use std::future::Future;
use std::task::{Context, Poll, Waker};

use tillmesh_store::fuzzing::Target;
use tillmesh_store::{DocId, TillKey};

use crate::gossip::{self, Heartbeat, Incoming};
use crate::join::{JoinReply, JoinRequest, Ticket};
use crate::keys::{KeysReply, KeysRequest};
use crate::node::PeerAddr;
use crate::wire::{Frame, Pieces, read_frame, read_msg, write_frame, write_msg, write_sync};

/// This crate's targets.
pub const TARGETS: &[Target] = &[
    Target {
        name: "wire_frame",
        run: wire_frame,
        seeds: wire_frame_seeds,
    },
    Target {
        name: "sync_pieces",
        run: sync_pieces,
        seeds: sync_pieces_seeds,
    },
    Target {
        name: "gossip",
        run: gossip,
        seeds: gossip_seeds,
    },
    Target {
        name: "ticket",
        run: ticket,
        seeds: ticket_seeds,
    },
    Target {
        name: "join",
        run: join,
        seeds: join_seeds,
    },
    Target {
        name: "keys",
        run: keys,
        seeds: keys_seeds,
    },
];

/// The result of a future over in-memory bytes, which never waits.
fn ready<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("reading or writing memory never waits"),
    }
}

/// The bytes of one message with the framing of [`write_msg`].
fn framed<T: serde::Serialize>(msg: &T) -> Vec<u8> {
    let mut out = Vec::new();
    ready(write_msg(&mut out, msg)).expect("encode");
    out
}

/// One sync frame as read from a peer. A frame that decodes encodes again to
/// the same frame.
pub fn wire_frame(data: &[u8]) -> bool {
    let Ok((frame, size)) = ready(read_frame(&mut &data[..])) else {
        return false;
    };
    assert!(size <= data.len(), "read past the input");
    let mut again = Vec::new();
    ready(write_frame(&mut again, &frame)).expect("a frame read encodes");
    let (back, _) = ready(read_frame(&mut again.as_slice())).expect("and decodes");
    assert_eq!(back, frame);
    true
}

fn wire_frame_seeds() -> Vec<(String, Vec<u8>)> {
    let frames = [
        (
            "hello",
            Frame::Hello {
                version: crate::wire::PROTOCOL_VERSION,
                store: [7; 16],
                wall_ms: 1_700_000_000_000,
            },
        ),
        ("buckets", Frame::Buckets(vec![[1; 32], [2; 32]])),
        (
            "manifest",
            Frame::Manifest(vec![("catalog".into(), vec![[3; 32]])]),
        ),
        (
            "sync",
            Frame::Sync {
                doc: "catalog".into(),
                msg: vec![0x42, 1, 2, 3],
            },
        ),
        (
            "sync-part",
            Frame::SyncPart {
                doc: "config".into(),
                part: vec![9; 40],
            },
        ),
        ("round-end", Frame::RoundEnd { sent: 3 }),
        ("bye", Frame::Bye),
    ];
    let mut seeds: Vec<(String, Vec<u8>)> = frames
        .iter()
        .map(|(name, f)| (format!("valid-{name}"), framed(f)))
        .collect();
    seeds.push(("broken-over-limit".into(), u32::MAX.to_be_bytes().to_vec()));
    seeds.push(("broken-unknown-variant".into(), vec![0, 0, 0, 1, 0x7f]));
    seeds
}

/// A round of sync messages as a peer sends it: frames until `RoundEnd`, sync
/// messages sent in pieces put back together as a session does. Accepted when
/// the round ends cleanly: every message whole, for a known document, as many
/// as announced. A message put back together is its pieces in order.
pub fn sync_pieces(data: &[u8]) -> bool {
    let mut r = data;
    let mut pieces = Pieces::default();
    let mut expect = Vec::new();
    let mut received = 0u32;
    loop {
        let Ok((frame, _)) = ready(read_frame(&mut r)) else {
            return false;
        };
        match frame {
            Frame::SyncPart { doc, part } => {
                expect.extend_from_slice(&part);
                if pieces.part(doc, part).is_err() {
                    return false;
                }
                assert!(pieces.pending());
            }
            Frame::Sync { doc, msg } => {
                expect.extend_from_slice(&msg);
                let Ok(whole) = pieces.last(&doc, msg) else {
                    return false;
                };
                assert_eq!(whole, expect, "a message is its pieces in order");
                assert!(!pieces.pending());
                expect.clear();
                if doc.parse::<DocId>().is_err() {
                    return false;
                }
                received += 1;
            }
            Frame::RoundEnd { sent } => {
                return !pieces.pending() && sent == received && r.is_empty();
            }
            _ => return false,
        }
    }
}

fn sync_pieces_seeds() -> Vec<(String, Vec<u8>)> {
    let round = |messages: &[(&str, Vec<u8>)], sent: u32| {
        let mut out = Vec::new();
        for (doc, msg) in messages {
            ready(write_sync(&mut out, doc, msg.clone(), 16)).expect("write");
        }
        ready(write_frame(&mut out, &Frame::RoundEnd { sent })).expect("write");
        out
    };
    let big: Vec<u8> = (0..50u8).collect();
    let mut mixed = Vec::new();
    for (doc, part) in [("catalog", vec![1u8; 8]), ("config", vec![2; 8])] {
        ready(write_frame(
            &mut mixed,
            &Frame::SyncPart {
                doc: doc.into(),
                part,
            },
        ))
        .expect("write");
    }
    let mut unfinished = Vec::new();
    let part = Frame::SyncPart {
        doc: "catalog".into(),
        part: vec![1; 8],
    };
    ready(write_frame(&mut unfinished, &part)).expect("write");
    ready(write_frame(&mut unfinished, &Frame::RoundEnd { sent: 0 })).expect("write");
    vec![
        (
            "valid-one-message".into(),
            round(&[("catalog", vec![1, 2, 3])], 1),
        ),
        (
            "valid-in-pieces".into(),
            round(&[("catalog", big.clone()), ("config", vec![4; 5])], 2),
        ),
        ("broken-miscounted".into(), round(&[("catalog", big)], 2)),
        (
            "broken-unknown-doc".into(),
            round(&[("catalogue", vec![1])], 1),
        ),
        ("broken-pieces-of-two-docs".into(), mixed),
        ("broken-round-ends-mid-message".into(), unfinished),
    ]
}

/// A gossip message. A change that decodes encodes again to the same change;
/// a heartbeat is accepted only with its till's signature.
pub fn gossip(data: &[u8]) -> bool {
    match gossip::decode_checked(data) {
        None => false,
        Some(Incoming::Change(doc, change, proofs)) => {
            if let Some(again) = gossip::encode(&doc, change.clone(), &proofs) {
                assert_eq!(
                    gossip::decode_checked(&again),
                    Some(Incoming::Change(doc, change, proofs))
                );
            }
            true
        }
        Some(Incoming::Heartbeat(_)) => true,
        Some(Incoming::Holds(docs)) => {
            if let Some(again) = gossip::encode_holds(&docs) {
                assert_eq!(gossip::decode_checked(&again), Some(Incoming::Holds(docs)));
            }
            true
        }
    }
}

fn gossip_seeds() -> Vec<(String, Vec<u8>)> {
    let key = TillKey::from_seed([5; 32]);
    let hb = Heartbeat {
        till: *key.till_id().as_bytes(),
        wall_ms: 1_700_000_000_000,
        unreplicated: 2,
        unreplicated_oldest_ms: Some(1_699_999_999_000),
        version: "0.1.0".into(),
    };
    let heartbeat = gossip::encode_heartbeat(&key, &hb).expect("heartbeat");
    let forged = gossip::encode_heartbeat(&TillKey::from_seed([6; 32]), &hb).expect("heartbeat");
    let change = gossip::encode(&DocId::Catalog, vec![0x85, 0x6f, 0x4a, 0x83, 1, 2, 3], &[])
        .expect("change");
    let unknown_doc = postcard::to_stdvec(&gossip::GossipMsg::Change {
        doc: "catalogue".into(),
        change: vec![1],
    })
    .expect("encode");
    let day: tillmesh_store::Day = "2026-11-24".parse().expect("day");
    let holds = gossip::encode_holds(&[(
        DocId::Sales(key.till_id(), day),
        vec![tillmesh_store::ChangeHash([7; 32])],
    )])
    .expect("holds");
    vec![
        ("valid-change".into(), change),
        ("valid-heartbeat".into(), heartbeat),
        ("valid-holds".into(), holds),
        ("broken-forged-heartbeat".into(), forged),
        ("broken-unknown-doc".into(), unknown_doc),
    ]
}

/// A ticket line as pasted by an operator. A ticket that decodes encodes again
/// to the same ticket (up to its version, which follows its contents).
pub fn ticket(data: &[u8]) -> bool {
    let Ok(line) = std::str::from_utf8(data) else {
        return false;
    };
    let Ok(t) = Ticket::decode(line) else {
        return false;
    };
    let back = Ticket::decode(&t.encode()).expect("a ticket read encodes and decodes");
    assert_eq!(
        Ticket { version: 0, ..back },
        Ticket { version: 0, ..t },
        "a ticket survives encoding"
    );
    true
}

fn ticket_seeds() -> Vec<(String, Vec<u8>)> {
    let t = |relay_certs: Vec<(String, String)>| Ticket {
        version: 2,
        store: [7; 16],
        admin_key: [2; 32],
        admin_till: [3; 32],
        addr: PeerAddr {
            ip: vec![std::net::SocketAddr::from(([192, 168, 1, 20], 4000))],
            relay: vec!["https://10.0.0.2:3341".into()],
        },
        secret: [4; 32],
        expires_ms: 1_700_000_000_000,
        relay_certs,
    };
    let v1 = t(Vec::new()).encode();
    let v2 = t(vec![("https://10.0.0.2:3341".into(), "ab".repeat(32))]).encode();
    let newer = format!("tillmesh109{}", &v1["tillmesh101".len()..]);
    vec![
        ("valid-v1".into(), v1.into_bytes()),
        ("valid-v2".into(), v2.into_bytes()),
        ("broken-newer-version".into(), newer.into_bytes()),
        ("broken-not-hex".into(), b"tillmesh1zz".to_vec()),
        ("broken-no-prefix".into(), b"hello".to_vec()),
    ]
}

/// A join request (what the admin till reads) or a join reply (what the
/// joining till reads), framed as on the wire; a request's till name is parsed
/// as the admin till does.
pub fn join(data: &[u8]) -> bool {
    let request = ready(read_msg::<_, JoinRequest>(&mut &data[..]));
    if let Ok((req, _)) = &request {
        let _ = req.name.parse::<tillmesh_store::TillName>();
    }
    let reply = ready(read_msg::<_, JoinReply>(&mut &data[..]));
    request.is_ok() || reply.is_ok()
}

fn join_seeds() -> Vec<(String, Vec<u8>)> {
    let request = JoinRequest {
        version: crate::join::JOIN_VERSION,
        secret: [4; 32],
        name: "T2".into(),
    };
    let accepted = JoinReply::AcceptedWithKeys {
        store_name: "Corner Grocer".into(),
        role: "till".into(),
        relays: vec!["http://10.0.0.2:3340".into()],
        store_keys: vec![tillmesh_store::StoreSecret {
            key_id: "0123456789abcdef".into(),
            created_ms: 1,
            identity: "AGE-SECRET-KEY-1QQQ".into(),
        }],
    };
    let mut unknown = framed(&JoinReply::Refused("no".into()));
    unknown[4] = 9;
    vec![
        ("valid-request".into(), framed(&request)),
        ("valid-accepted".into(), framed(&accepted)),
        (
            "valid-refused".into(),
            framed(&JoinReply::Refused("used".into())),
        ),
        ("broken-unknown-variant".into(), unknown),
    ]
}

/// A keys request (what the holder reads) or reply (what the member reads),
/// framed as on the wire.
pub fn keys(data: &[u8]) -> bool {
    let request = ready(read_msg::<_, KeysRequest>(&mut &data[..]));
    let reply = ready(read_msg::<_, KeysReply>(&mut &data[..]));
    request.is_ok() || reply.is_ok()
}

fn keys_seeds() -> Vec<(String, Vec<u8>)> {
    let keys = KeysReply::Keys(vec![tillmesh_store::StoreSecret {
        key_id: "0123456789abcdef".into(),
        created_ms: 1,
        identity: "AGE-SECRET-KEY-1QQQ".into(),
    }]);
    let mut too_long = framed(&KeysReply::Refused("not a member".into()));
    too_long[3] = 0xff;
    vec![
        ("valid-request".into(), framed(&KeysRequest { version: 1 })),
        ("valid-keys".into(), framed(&keys)),
        (
            "valid-refused".into(),
            framed(&KeysReply::Refused("not a member".into())),
        ),
        ("broken-length-past-the-end".into(), too_long),
    ]
}

#[cfg(test)]
mod tests {
    /// Every committed input of this crate's targets runs clean.
    #[test]
    fn the_corpus_runs_clean() {
        let fuzz = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
        tillmesh_store::fuzzing::check_corpus(&fuzz, super::TARGETS);
    }
}
