//! Every change proven by its author and allowed by the author's certified
//! role, checked on arrival: a rogue member who writes raw Automerge changes
//! and signs them with its own key gets nothing in beyond its role, a change
//! under another till's name is refused, a revoked till's later changes are
//! refused while what it wrote before stays, and after random writes, forgeries
//! and deliveries in random order every till holds exactly the allowed writes.

use automerge::transaction::Transactable;
use automerge::{ActorId, Automerge, Change, ROOT};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tillmesh_store::test_utils::{members_pair, product, sale, sync_from};
use tillmesh_store::{
    ApplyError, DocId, Proof, Role, Sku, StorageError, Store, Tender, TillKey, test_utils,
};

/// A raw change to `doc` that `writer` makes under an actor naming `actor_till`
/// (its own id, or a forged one), on top of what `writer` holds, putting `key`
/// = `value`; with a proof signed by `signer`.
fn raw_change(
    writer: &mut Store,
    doc: &DocId,
    actor_till: &[u8; 32],
    key: &str,
    value: &str,
    signer: &TillKey,
) -> (Vec<u8>, Vec<Proof>) {
    let mut am = Automerge::new();
    let mut actor = actor_till.to_vec();
    actor.extend_from_slice(&[0xAB; 8]);
    am.set_actor(ActorId::from(actor));
    for c in writer.changes_since(doc, &[]).expect("changes") {
        am.load_incremental(&c).expect("load");
    }
    am.transact::<_, _, automerge::AutomergeError>(|tx| {
        tx.put(ROOT, key, value)?;
        Ok(())
    })
    .expect("write");
    let change = am.get_last_local_change().expect("change");
    let proof = Proof::sign(signer, &writer.store_id(), doc, 1, vec![change.hash()]);
    (change.raw_bytes().to_vec(), vec![proof])
}

/// A price field as a till writes it, claiming whatever role it likes.
fn price_field(till: &Store, cents: i64, claimed: &str) -> String {
    serde_json::json!({
        "v": 1, "value": cents, "hlc": 1u64 << 40,
        "till": till.till_id().to_string(), "role": claimed,
    })
    .to_string()
}

fn tea() -> Sku {
    "TEA".parse().expect("sku")
}

fn price(s: &Store) -> i64 {
    s.product(&tea()).expect("q").expect("TEA").price_cents
}

#[test]
fn a_till_cannot_change_prices_even_when_it_signs_its_own_change() {
    let (mut a, mut b) = members_pair(Role::BackOffice, Role::Till);
    a.add_product(product("TEA", 200)).expect("product");
    sync_from(&mut a, &mut b);
    // Refused up front on the till itself.
    let err = b.set_price(&tea(), 1).expect_err("a till may not");
    assert!(err.to_string().contains("manager"), "names who may: {err}");
    // Written raw, under its own name and signed with its own key, claiming
    // the back office's role: refused on arrival, nothing kept.
    let b_key = b.till_key().clone();
    let b_id = *b.till_id().as_bytes();
    let field = price_field(&b, 1, "back-office");
    let (change, proofs) = raw_change(
        &mut b,
        &DocId::Catalog,
        &b_id,
        "TEA/price_cents",
        &field,
        &b_key,
    );
    let before = a.heads(&DocId::Catalog).expect("heads");
    let err = a
        .apply_changes(&DocId::Catalog, std::slice::from_ref(&change), &proofs)
        .expect_err("refused");
    assert!(matches!(err, ApplyError::Forbidden { .. }), "{err:?}");
    assert_eq!(a.heads(&DocId::Catalog).expect("heads"), before);
    assert_eq!(price(&a), 200);
    // The same holds for the configuration and the membership.
    for (doc, key) in [
        (DocId::Config, "backup/interval_s"),
        (DocId::Membership, &*format!("till/{}/role", b.till_id())),
    ] {
        let (change, proofs) = raw_change(&mut b, &doc, &b_id, key, "\"x\"", &b_key);
        let err = a
            .apply_changes(&doc, &[change], &proofs)
            .expect_err("refused");
        assert!(
            matches!(err, ApplyError::Forbidden { .. }),
            "{doc}: {err:?}"
        );
    }
    // A till may publish its own address in the membership document.
    let key = format!("till/{}/addr", b.till_id());
    let (change, proofs) = raw_change(&mut b, &DocId::Membership, &b_id, &key, "{}", &b_key);
    a.apply_changes(&DocId::Membership, &[change], &proofs)
        .expect("its own address");
}

#[test]
fn a_change_under_another_tills_name_or_without_proof_is_refused() {
    let (mut a, mut b) = members_pair(Role::Manager, Role::Manager);
    a.add_product(product("TEA", 200)).expect("product");
    sync_from(&mut a, &mut b);
    let a_id = *a.till_id().as_bytes();
    let b_key = b.till_key().clone();
    let field = price_field(&a, 5, "manager");
    // B writes a price under A's actor id and signs it itself: refused.
    let (change, proofs) = raw_change(
        &mut b,
        &DocId::Catalog,
        &a_id,
        "TEA/price_cents",
        &field,
        &b_key,
    );
    let err = a
        .apply_changes(&DocId::Catalog, std::slice::from_ref(&change), &proofs)
        .expect_err("forged");
    assert!(matches!(err, ApplyError::Unproven { .. }), "{err:?}");
    // Nor with no proof, nor with a proof by a stranger's key.
    let stranger = TillKey::generate();
    let hash = Change::from_bytes(change.clone()).expect("change").hash();
    let strange = Proof::sign(&stranger, &a.store_id(), &DocId::Catalog, 1, vec![hash]);
    for proofs in [vec![], vec![strange]] {
        let err = b
            .apply_changes(&DocId::Catalog, std::slice::from_ref(&change), &proofs)
            .expect_err("unproven");
        assert!(matches!(err, ApplyError::Unproven { .. }), "{err:?}");
    }
    assert_eq!(price(&a), 200);
    assert_eq!(price(&b), 200);
}

#[test]
fn a_revoked_tills_later_changes_are_refused_and_its_earlier_ones_kept() {
    let mut tills =
        test_utils::certified_in_memory("Shop", &["A".into(), "B".into(), "C".into()], |a| {
            a.add_product(product("TEA", 200)).expect("product");
        });
    let (mut a, _) = tills.remove(0);
    let (mut b, _) = tills.remove(0);
    let (mut c, _) = tills.remove(0);
    b.record_sale(sale("TEA", 1, Tender::Cash)).expect("before");
    sync_from(&mut b, &mut a);
    let admin = test_utils::admin_key(&a);
    let b_id = b.till_id();
    a.revoke(&admin, b_id).expect("revoke");
    sync_from(&mut a, &mut c);
    b.record_sale(sale("TEA", 1, Tender::Cash)).expect("after");
    let doc = b
        .doc_ids()
        .expect("ids")
        .into_iter()
        .find(|d| matches!(d, DocId::Sales(t, _) if *t == b_id))
        .expect("B's sales");
    // From B itself: its proofs no longer count, the whole batch is refused.
    let all = b.changes_since(&doc, &[]).expect("changes");
    let proofs = b.proofs(&doc).expect("proofs");
    let err = c.apply_changes(&doc, &all, &proofs).expect_err("revoked");
    assert!(matches!(err, ApplyError::Unproven { .. }), "{err:?}");
    // From the admin till: the sale made before the revocation, under the
    // admin key's signature of B's documents at the revocation.
    sync_from(&mut a, &mut c);
    assert_eq!(c.sales(None, None).expect("sales").len(), 1);
    // B's later sale still does not get in, on its own.
    let later = b
        .changes_since(&doc, &c.heads(&doc).expect("heads"))
        .expect("later");
    assert_eq!(later.len(), 1);
    assert!(c.apply_changes(&doc, &later, &proofs).is_err());
    assert_eq!(c.sales(None, None).expect("sales").len(), 1);
}

/// Random writes by tills of random roles, some forged (another till's name,
/// beyond the writer's role), one till revoked half way, delivered by random
/// pairs in random order; after everyone has caught up from everyone, every
/// till holds the same documents and views and none of the forbidden writes.
#[test]
fn random_writes_forgeries_and_revocations_converge_to_the_allowed_writes() {
    for seed in 0..6u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let roles = [Role::BackOffice, Role::Manager, Role::Till, Role::Till];
        let names: Vec<String> = (0..4).map(|i| format!("T{i}")).collect();
        let mut tills: Vec<Store> = test_utils::certified_with_roles(
            "Shop",
            &names,
            &roles,
            |a| {
                a.add_product(product("TEA", 200)).expect("product");
            },
            |_, key, new| Store::create_in_memory(key, new, Default::default()).expect("store"),
        )
        .into_iter()
        .map(|(s, _)| s)
        .collect();
        let admin = test_utils::admin_key(&tills[0]);
        let mut forbidden_prices = Vec::new();
        let mut revoked = false;
        let mut t3_sales = 0;
        for step in 0..60 {
            let t = rng.random_range(0..4);
            match rng.random_range(0..5) {
                0 => {
                    let cents = 300 + step;
                    let r = tills[t].set_price(&tea(), cents);
                    // Only the manager and the back office may.
                    assert_eq!(r.is_ok(), roles[t] != Role::Till, "seed {seed}: {r:?}");
                    if let Err(e) = r {
                        assert!(
                            matches!(
                                e,
                                tillmesh_store::ProductError::Storage(
                                    StorageError::Forbidden { .. }
                                )
                            ),
                            "seed {seed}: {e:?}"
                        );
                    }
                }
                1 | 2 => {
                    let _ = tills[t].record_sale(sale("TEA", 1, Tender::Card));
                }
                3 => {
                    // A till's forged price, signed with its own key.
                    let cents = 10_000 + step;
                    let key = tills[t].till_key().clone();
                    let id = *tills[t].till_id().as_bytes();
                    let field = price_field(&tills[t], cents, "back-office");
                    if roles[t] == Role::Till {
                        let (c, p) = raw_change(
                            &mut tills[t],
                            &DocId::Catalog,
                            &id,
                            "TEA/price_cents",
                            &field,
                            &key,
                        );
                        forbidden_prices.push(cents);
                        let to = (t + 1) % 4;
                        assert!(tills[to].apply_changes(&DocId::Catalog, &[c], &p).is_err());
                    }
                }
                _ => {
                    let (from, to) = (rng.random_range(0..4), rng.random_range(0..4));
                    if from != to {
                        deliver_all(&mut tills, from, to);
                    }
                }
            }
            if step == 30 && !revoked {
                // The admin till holds what T3 wrote so far, revokes it, and
                // the revocation reaches every till at once (gossip).
                deliver_all(&mut tills, 3, 0);
                let id = tills[3].till_id();
                tills[0].revoke(&admin, id).expect("revoke");
                for to in 1..4 {
                    deliver_all(&mut tills, 0, to);
                }
                t3_sales = tills[0]
                    .sales(None, None)
                    .expect("sales")
                    .iter()
                    .filter(|s| s.entry.receipt.to_string().starts_with("T3-"))
                    .count();
                revoked = true;
            }
        }
        // Everyone catches up from everyone (what cannot be proven stays out).
        for _ in 0..3 {
            for from in 0..4 {
                for to in 0..4 {
                    if from != to {
                        deliver_all(&mut tills, from, to);
                    }
                }
            }
        }
        // The honest tills agree on everything, and no forbidden price shows.
        let dump = tills[0].view_dump().expect("dump");
        for (i, t) in tills.iter_mut().enumerate().take(3).skip(1) {
            assert_eq!(t.view_dump().expect("dump"), dump, "seed {seed}: till {i}");
        }
        for t in tills.iter_mut().take(3) {
            assert!(
                !forbidden_prices.contains(&price(t)),
                "seed {seed}: a forbidden price won"
            );
            // Nothing T3 sold after its revocation got in anywhere.
            let sold = t
                .sales(None, None)
                .expect("sales")
                .iter()
                .filter(|s| s.entry.receipt.to_string().starts_with("T3-"))
                .count();
            assert_eq!(sold, t3_sales, "seed {seed}");
        }
    }
}

/// Deliver every document `from` holds to `to`, each with `from`'s proofs;
/// refusals are what the rules say, so they are left as they are.
fn deliver_all(tills: &mut [Store], from: usize, to: usize) {
    let mut docs = tills[from].doc_ids().expect("ids");
    docs.sort_by_key(|d| *d != DocId::Membership);
    for doc in docs {
        let have = tills[to].heads(&doc).expect("heads");
        let changes = tills[from].changes_since(&doc, &have).expect("changes");
        if changes.is_empty() {
            continue;
        }
        let proofs = tills[from].proofs(&doc).expect("proofs");
        let _ = tills[to].apply_changes(&doc, &changes, &proofs);
    }
}

/// A new member's own entry (its address, under its own proof) may reach a
/// till in the same batch as its certificate (under the admin key's proof):
/// the certificate is taken first, then the entry it makes valid.
#[test]
fn a_new_members_address_arrives_with_its_certificate_in_one_batch() {
    let mut tills = test_utils::certified_in_memory("Shop", &["A".into(), "B".into()], |_| {});
    let (mut a, _) = tills.remove(0);
    let (mut b, _) = tills.remove(0);
    let admin = test_utils::admin_key(&a);
    let key = TillKey::generate();
    let name = "C".parse().expect("name");
    a.certify(&admin, key.till_id(), &name, Role::Till)
        .expect("certify");
    let mut c = Store::create_in_memory(
        key.clone(),
        tillmesh_store::NewStore {
            store_id: a.store_id(),
            store_name: "Shop".into(),
            till_name: name,
            role: Role::Till,
            founder: false,
        },
        tillmesh_store::StoreOptions::default(),
    )
    .expect("C");
    c.set_admin_key(admin.till_id()).expect("admin key");
    test_utils::deliver(&mut c, &test_utils::everything(&mut a));
    let addr = serde_json::json!({"at": "127.0.0.1:4000"});
    c.publish_address(addr.clone()).expect("address");
    sync_from(&mut c, &mut a);
    // B has neither the certificate nor the address: both come in one batch.
    sync_from(&mut a, &mut b);
    let seen = b
        .tills()
        .expect("tills")
        .into_iter()
        .find(|t| t.id == key.till_id())
        .expect("C is a member on B");
    assert_eq!(seen.addr, Some(addr));
}

/// Under `role-priority` a writer ranks by its certified role: a manager whose
/// change claims the back office's role does not beat the back office.
#[test]
fn role_priority_ranks_a_writer_by_its_certificate_not_its_claim() {
    let (mut a, mut m) = members_pair(Role::BackOffice, Role::Manager);
    a.set_config_value(
        "conflict_policy/catalog",
        serde_json::json!("role-priority"),
    )
    .expect("policy");
    a.add_product(product("TEA", 200)).expect("product");
    sync_from(&mut a, &mut m);
    // Concurrent edits: the back office sets 3.00; the manager writes 0.01 with
    // a later clock, claiming to be the back office (its proof is its own, and
    // a manager may edit prices, so the change itself is accepted).
    a.set_price(&tea(), 300).expect("back office's price");
    let m_key = m.till_key().clone();
    let m_id = *m.till_id().as_bytes();
    let field = serde_json::json!({
        "v": 1, "value": 1, "hlc": u64::MAX >> 1,
        "till": m.till_id().to_string(), "role": "back-office",
    })
    .to_string();
    let (change, proofs) = raw_change(
        &mut m,
        &DocId::Catalog,
        &m_id,
        "TEA/price_cents",
        &field,
        &m_key,
    );
    a.apply_changes(&DocId::Catalog, &[change], &proofs)
        .expect("a manager's price change is allowed");
    assert_eq!(price(&a), 300, "the back office outranks a manager");
    sync_from(&mut a, &mut m);
    assert_eq!(price(&m), 300);
}
