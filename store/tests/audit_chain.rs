//! `verify_audit` names the entry (till, sequence number) of a tampered entry, a
//! removed one and a forked chain, and tells a removed entry from one that has
//! not arrived yet (the rule is in docs/SECURITY.md).

use std::sync::Arc;

use automerge::transaction::Transactable;
use automerge::{ActorId, Automerge, ROOT, ReadDoc};
use tillmesh_store::{
    AuditEntry, AuditProblemKind, ChainReport, DocId, Hlc, ManualClock, Month, Role, Store,
    StoreId, StoreOptions, TillId, test_utils,
};

/// 2026-05-04 10:00 UTC.
const MAY: u64 = 1_777_888_800_000;
const DAY_MS: u64 = 86_400_000;

fn till(id: StoreId, name: &str, founder: bool, clock: &ManualClock) -> Store {
    test_utils::till(
        id,
        name,
        Role::BackOffice,
        founder,
        StoreOptions {
            clock: Arc::new(clock.clone()),
            durable: false,
            ..StoreOptions::default()
        },
    )
}

/// Put forged changes into a till's store past the proof check (as a till
/// restored from a backup made before signed changes would hold them), so
/// that what the audit chain alone tells can be tested.
fn inject(
    s: &mut Store,
    doc: &DocId,
    changes: &[Vec<u8>],
) -> Result<tillmesh_store::ApplyReport, tillmesh_store::ApplyError> {
    s.accept_legacy_history(true).expect("legacy door");
    let r = s.apply_changes(doc, changes, &[]);
    s.accept_legacy_history(false).expect("closed");
    r
}

/// A till with `n` price changes (and its earlier entries) in its audit chain.
fn audited(clock: &ManualClock, n: i64) -> Store {
    let mut s = till(StoreId::random(), "A", true, clock);
    s.add_product(test_utils::product("TEA", 200))
        .expect("product");
    for i in 0..n {
        s.set_price(&"TEA".parse().expect("sku"), 201 + i)
            .expect("price");
    }
    s
}

fn audit_doc(s: &Store, month: Option<Month>) -> DocId {
    let me = s.till_id();
    s.doc_ids()
        .expect("ids")
        .into_iter()
        .find(|d| matches!(d, DocId::Audit(t, m) if *t == me && month.is_none_or(|x| x == *m)))
        .expect("an audit document")
}

fn entries(s: &mut Store) -> Vec<AuditEntry> {
    let me = s.till_id();
    s.audit_entries(Some(me)).expect("entries")[&me].clone()
}

fn report(s: &mut Store, till: TillId) -> ChainReport {
    s.verify_audit()
        .expect("verify")
        .into_iter()
        .find(|r| r.till == till)
        .expect("a chain of the till")
}

fn own_report(s: &mut Store) -> ChainReport {
    let me = s.till_id();
    report(s, me)
}

/// The problems of a report as (seq, kind).
fn problems(r: &ChainReport) -> Vec<(u64, AuditProblemKind)> {
    r.problems.iter().map(|p| (p.seq, p.kind)).collect()
}

/// An Automerge document writing as `till` (its actor id names the till, as a
/// forger's would) holding `changes`.
fn forger(till: TillId, changes: &[Vec<u8>]) -> Automerge {
    let mut actor = till.as_bytes().to_vec();
    actor.extend_from_slice(&[0xEE; 8]);
    let mut am = Automerge::new();
    am.set_actor(ActorId::from(actor));
    for c in changes {
        am.load_incremental(c).expect("load a real change");
    }
    am
}

fn last_change(am: &Automerge) -> Vec<u8> {
    am.get_last_local_change()
        .expect("a forged change")
        .raw_bytes()
        .to_vec()
}

/// Put `entry` at its key in `doc`, as a change under `s`'s till on top of
/// `base` (changes of `doc`), and inject it through the legacy door.
fn forge_entry(s: &mut Store, doc: &DocId, base: &[Vec<u8>], entry: &AuditEntry) {
    let mut am = forger(s.till_id(), base);
    am.transact::<_, _, automerge::AutomergeError>(|tx| {
        tx.put(
            ROOT,
            key(entry.seq),
            serde_json::to_string(entry).expect("json"),
        )
    })
    .expect("forge");
    inject(s, doc, &[last_change(&am)]).expect("apply");
}

/// The changes of `doc` before the one that wrote `key`.
fn changes_before(s: &mut Store, doc: &DocId, key: &str) -> Vec<Vec<u8>> {
    let all = s.changes_since(doc, &[]).expect("changes");
    let mut am = Automerge::new();
    for (i, c) in all.iter().enumerate() {
        am.load_incremental(c).expect("load");
        if am.get(ROOT, key).expect("read").is_some() {
            return all[..i].to_vec();
        }
    }
    panic!("no change wrote {key}");
}

#[derive(serde::Serialize)]
struct Body<'a> {
    v: u32,
    seq: u64,
    prev: &'a str,
    hlc: Hlc,
    kind: &'a str,
    subject: &'a str,
    detail: &'a serde_json::Value,
}

/// Hash and sign `e` as its till would (the forger holds the till's key: a till
/// restored from an old backup writing again, or a stolen key).
fn sign(s: &Store, e: &mut AuditEntry) {
    let body = Body {
        v: e.version,
        seq: e.seq,
        prev: &e.prev,
        hlc: e.hlc,
        kind: &e.kind,
        subject: &e.subject,
        detail: &e.detail,
    };
    let mut h = blake3::Hasher::new_derive_key("tillmesh audit entry v1");
    h.update(&serde_json::to_vec(&body).expect("json"));
    let hash = *h.finalize().as_bytes();
    e.hash = hex::encode(hash);
    e.sig = hex::encode(s.till_key().sign(&hash));
}

fn key(seq: u64) -> String {
    format!("{seq:012}")
}

#[test]
fn an_untouched_chain_is_intact() {
    let clock = ManualClock::new(MAY);
    let mut s = audited(&clock, 4);
    let r = own_report(&mut s);
    assert!(r.intact() && r.missing.is_empty(), "{r:?}");
    assert_eq!(r.entries, entries(&mut s).len() as u64);
}

#[test]
fn a_tampered_entry_is_named() {
    let clock = ManualClock::new(MAY);
    let mut s = audited(&clock, 4);
    let doc = audit_doc(&s, None);
    let victim = entries(&mut s)
        .into_iter()
        .find(|e| e.kind == "price")
        .expect("a price entry");
    let mut forged = victim.clone();
    forged.detail = serde_json::json!({"old_cents": 200, "new_cents": 1});
    let base = s.changes_since(&doc, &[]).expect("changes");
    forge_entry(&mut s, &doc, &base, &forged);
    let r = own_report(&mut s);
    assert!(!r.intact());
    let found = problems(&r);
    assert!(
        found.contains(&(victim.seq, AuditProblemKind::Altered)),
        "{r:?}"
    );
    assert!(
        found.contains(&(victim.seq, AuditProblemKind::Rewritten)),
        "{r:?}"
    );
    // And in the JSON the CLI prints.
    let json = serde_json::to_value(&r).expect("json");
    assert!(
        json["problems"]
            .as_array()
            .expect("problems")
            .iter()
            .any(|p| p["seq"] == victim.seq && p["kind"] == "altered"),
        "{json}"
    );
}

#[test]
fn an_entry_deleted_from_the_middle_is_removed_not_missing() {
    let clock = ManualClock::new(MAY);
    let mut s = audited(&clock, 4);
    let doc = audit_doc(&s, None);
    let all = entries(&mut s);
    let victim = all[all.len() / 2].seq;
    let mut am = forger(s.till_id(), &s.changes_since(&doc, &[]).expect("changes"));
    am.transact::<_, _, automerge::AutomergeError>(|tx| tx.delete(ROOT, key(victim)))
        .expect("forge");
    inject(&mut s, &doc, &[last_change(&am)]).expect("apply");
    let r = own_report(&mut s);
    assert_eq!(problems(&r), vec![(victim, AuditProblemKind::Removed)]);
    assert!(r.missing.is_empty(), "{r:?}");
    assert!(r.broken[0].contains(&format!("entry {victim} was removed")));
}

#[test]
fn a_gap_inside_one_document_is_removed_but_one_between_months_is_missing() {
    // Entries in May, then in June.
    let clock = ManualClock::new(MAY);
    let mut a = audited(&clock, 3);
    let may = audit_doc(&a, None);
    let in_may = entries(&mut a).len() as u64;
    clock.advance(31 * DAY_MS as i64);
    for i in 0..3 {
        a.set_price(&"TEA".parse().expect("sku"), 300 + i)
            .expect("price");
    }
    let DocId::Audit(_, may_month) = may else {
        unreachable!()
    };
    let june = a
        .doc_ids()
        .expect("ids")
        .into_iter()
        .find(|d| matches!(d, DocId::Audit(_, m) if *m != may_month))
        .expect("a June document");
    let all = entries(&mut a);
    let till = a.till_id();

    // B holds June's document but not May's (yet): May's entries are missing,
    // nothing is broken.
    let mut b = till_of(&a, "B", &clock);
    inject(&mut b, &june, &a.changes_since(&june, &[]).expect("june")).expect("june");
    let r = report(&mut b, till);
    assert!(r.intact(), "{r:?}");
    assert_eq!(r.missing, (1..=in_may).collect::<Vec<_>>());

    // C holds a May document whose history simply lacks one entry in its
    // middle (a forged document made of the real, signed entries but one):
    // that gap is no arrival gap, it is a removal.
    let victim = 2;
    let mut forged = forger(till, &[]);
    forged
        .transact::<_, _, automerge::AutomergeError>(|tx| {
            for e in all.iter().filter(|e| e.seq <= in_may && e.seq != victim) {
                tx.put(ROOT, key(e.seq), serde_json::to_string(e).expect("json"))?;
            }
            Ok(())
        })
        .expect("forge");
    let mut c = till_of(&a, "C", &clock);
    inject(&mut c, &may, &[last_change(&forged)]).expect("may");
    let r = report(&mut c, till);
    assert_eq!(problems(&r), vec![(victim, AuditProblemKind::Removed)]);
    assert!(r.missing.is_empty(), "{r:?}");
}

/// A till of `a`'s store that holds nothing of `a`'s yet.
fn till_of(a: &Store, name: &str, clock: &ManualClock) -> Store {
    till(a.store_id(), name, false, clock)
}

#[test]
fn two_entries_at_one_place_are_a_fork() {
    let clock = ManualClock::new(MAY);
    let mut s = audited(&clock, 4);
    let doc = audit_doc(&s, None);
    let all = entries(&mut s);
    let at = all[all.len() - 2].clone();
    // A second, validly signed entry at the same place, written concurrently
    // with the real one (from the document as it was before it): Automerge
    // keeps both values of the key.
    let mut other = at.clone();
    other.detail = serde_json::json!({"old_cents": 202, "new_cents": 2});
    sign(&s, &mut other);
    let base = changes_before(&mut s, &doc, &key(at.seq));
    forge_entry(&mut s, &doc, &base, &other);
    let r = own_report(&mut s);
    assert_eq!(
        problems(&r),
        vec![(at.seq, AuditProblemKind::Forked)],
        "both entries are intact; only the fork is wrong"
    );
    assert!(r.broken[0].contains(&format!("entry {} is forked", at.seq)));
    assert_eq!(r.entries, all.len() as u64);

    // The same place taken in another month's document is a fork too.
    let mut s = audited(&clock, 4);
    let all = entries(&mut s);
    let at = all[1].clone();
    let mut other = at.clone();
    other.hlc = Hlc::from_ms(MAY + 40 * DAY_MS);
    other.subject = "COFFEE".into();
    sign(&s, &mut other);
    let later = DocId::Audit(
        s.till_id(),
        tillmesh_store::Day::from_unix_ms(MAY + 40 * DAY_MS).month(),
    );
    forge_entry(&mut s, &later, &[], &other);
    let r = own_report(&mut s);
    assert_eq!(problems(&r), vec![(at.seq, AuditProblemKind::Forked)]);
}
