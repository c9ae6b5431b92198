//! Helpers for tests of this crate and of the crates built on it (feature
//! `test-utils`): in-memory tills, a product, a sale.

use crate::{
    LineRequest, NewProduct, NewStore, Role, SaleRequest, Store, StoreId, StoreOptions, Tender,
    TillKey, Unit,
};

/// A till of store `store_id` in memory (real redb, no file, no fsync).
pub fn till(store_id: StoreId, name: &str, role: Role, founder: bool, opts: StoreOptions) -> Store {
    Store::create_in_memory(
        TillKey::generate(),
        NewStore {
            store_id,
            store_name: "Test Shop".into(),
            till_name: name.parse().expect("valid till name"),
            role,
            founder,
        },
        opts,
    )
    .expect("in-memory store")
}

/// The founding till `A` of a new store named `store_name`, in memory, holding
/// the trust root of a new admin key and certified by it as the back office:
/// (its store, its key, the admin key).
pub fn founder_in_memory(store_name: &str) -> (Store, TillKey, TillKey) {
    let (key, admin) = (TillKey::generate(), TillKey::generate());
    let name: crate::TillName = "A".parse().expect("valid till name");
    let mut store = Store::create_in_memory(
        key.clone(),
        NewStore {
            store_id: StoreId::random(),
            store_name: store_name.into(),
            till_name: name.clone(),
            role: Role::BackOffice,
            founder: true,
        },
        StoreOptions::default(),
    )
    .expect("in-memory store");
    store.set_admin_key(admin.till_id()).expect("admin key");
    store
        .certify(&admin, key.till_id(), &name, Role::BackOffice)
        .expect("certify the founder");
    (store, key, admin)
}

/// A product sold each, standard tax, no barcode.
pub fn product(sku: &str, price_cents: i64) -> NewProduct {
    NewProduct {
        sku: sku.parse().expect("valid sku"),
        name: sku.to_string(),
        barcodes: vec![],
        price_cents,
        unit: Unit::Each,
        tax_class: "standard".into(),
        category: String::new(),
    }
}

/// A one-line sale of `qty` pieces of `code`, paid `tender`.
pub fn sale(code: &str, qty: i64, tender: Tender) -> SaleRequest {
    SaleRequest {
        lines: vec![LineRequest {
            code: code.into(),
            qty: Some(qty),
            grams: None,
            discount_cents: 0,
        }],
        tender,
    }
}

/// A store of tills named `names`, as after each of them joined: the first founds
/// it as the back office, `setup` gives it what it should hold (products, say), and
/// it certifies every till (the others as tills) with a fresh admin key; the others
/// start from its documents. `create(i, key, new)` makes till `i`'s store (in
/// memory, or in a file). Gives each store with its till key, founder first.
pub fn certified_stores(
    store_name: &str,
    names: &[String],
    setup: impl FnOnce(&mut Store),
    create: impl FnMut(usize, TillKey, NewStore) -> Store,
) -> Vec<(Store, TillKey)> {
    let roles: Vec<Role> = (0..names.len())
        .map(|i| if i == 0 { Role::BackOffice } else { Role::Till })
        .collect();
    certified_with_roles(store_name, names, &roles, setup, create)
}

/// [`certified_stores`] with till `i` certified in `roles[i]` (the founder
/// holds the admin key whatever its role).
pub fn certified_with_roles(
    store_name: &str,
    names: &[String],
    roles: &[Role],
    setup: impl FnOnce(&mut Store),
    mut create: impl FnMut(usize, TillKey, NewStore) -> Store,
) -> Vec<(Store, TillKey)> {
    let store_id = StoreId::random();
    let admin = TillKey::generate();
    let keys: Vec<TillKey> = names.iter().map(|_| TillKey::generate()).collect();
    let role = |i: usize| roles[i];
    let new = |i: usize| NewStore {
        store_id,
        store_name: store_name.into(),
        till_name: names[i].parse().expect("till name"),
        role: role(i),
        founder: i == 0,
    };
    let mut founder = create(0, keys[0].clone(), new(0));
    founder.set_admin_key(admin.till_id()).expect("admin key");
    founder
        .set_admin_signer(admin.clone())
        .expect("admin signer");
    setup(&mut founder);
    for (i, k) in keys.iter().enumerate() {
        let name = names[i].parse().expect("till name");
        founder
            .certify(&admin, k.till_id(), &name, role(i))
            .expect("certify");
    }
    let seed = everything(&mut founder);
    let mut out = vec![(founder, keys[0].clone())];
    for (i, k) in keys.iter().enumerate().skip(1) {
        let mut s = create(i, k.clone(), new(i));
        s.set_admin_key(admin.till_id()).expect("admin key");
        deliver(&mut s, &seed);
        out.push((s, k.clone()));
    }
    out
}

/// A document's changes with the proofs that travel with them.
pub type Delivery = (crate::DocId, Vec<Vec<u8>>, Vec<crate::Proof>);

/// Every document of `store` as changes with the proofs it keeps, membership
/// first: what a new till receives from it.
pub fn everything(store: &mut Store) -> Vec<Delivery> {
    let mut docs = store.doc_ids().expect("docs");
    docs.sort_by_key(|d| *d != crate::DocId::Membership);
    docs.into_iter()
        .map(|doc| {
            let changes = store.changes_since(&doc, &[]).expect("changes");
            let proofs = store.proofs(&doc).expect("proofs");
            (doc, changes, proofs)
        })
        .collect()
}

/// Apply what [`everything`] gave to `store`.
pub fn deliver(store: &mut Store, docs: &[Delivery]) {
    for (doc, changes, proofs) in docs {
        store.apply_changes(doc, changes, proofs).expect("deliver");
    }
}

/// Certify more tills on the founder (`stores[0]`, which holds the admin key
/// since [`certified_stores`]) and hand the membership to the other stores.
pub fn certify_more(stores: &mut [(Store, TillKey)], tills: &[(TillKey, &str, Role)]) {
    let admin = stores[0]
        .0
        .admin_signer
        .clone()
        .expect("the founder holds the admin key");
    for (key, name, role) in tills {
        stores[0]
            .0
            .certify(
                &admin,
                key.till_id(),
                &name.parse().expect("till name"),
                *role,
            )
            .expect("certify");
    }
    let doc = crate::DocId::Membership;
    let changes = stores[0].0.changes_since(&doc, &[]).expect("changes");
    let proofs = stores[0].0.proofs(&doc).expect("proofs");
    for (s, _) in stores.iter_mut().skip(1) {
        s.apply_changes(&doc, &changes, &proofs)
            .expect("membership");
    }
}

/// Tills in memory, certified as after joining: the first is the back office
/// holding the admin key, every other a manager (so that any till may edit
/// prices), each starting from the first's documents after `setup`.
pub fn managers_in_memory(
    store_name: &str,
    names: &[String],
    setup: impl FnOnce(&mut Store),
) -> Vec<(Store, TillKey)> {
    let roles: Vec<Role> = (0..names.len())
        .map(|i| {
            if i == 0 {
                Role::BackOffice
            } else {
                Role::Manager
            }
        })
        .collect();
    certified_with_roles(store_name, names, &roles, setup, |_, key, new| {
        Store::create_in_memory(key, new, StoreOptions::default()).expect("in-memory store")
    })
}

/// [`certified_stores`] in memory.
pub fn certified_in_memory(
    store_name: &str,
    names: &[String],
    setup: impl FnOnce(&mut Store),
) -> Vec<(Store, TillKey)> {
    certified_stores(store_name, names, setup, |_, key, new| {
        Store::create_in_memory(key, new, StoreOptions::default()).expect("in-memory store")
    })
}

/// Give `to` every change `from` has that `to` lacks, with `from`'s proofs,
/// membership first; gives the conflicts logged.
pub fn sync_from(from: &mut Store, to: &mut Store) -> usize {
    let mut docs = from.doc_ids().expect("docs");
    docs.sort_by_key(|d| *d != crate::DocId::Membership);
    let mut conflicts = 0;
    for doc in docs {
        let have = to.heads(&doc).expect("heads");
        let changes = from.changes_since(&doc, &have).expect("changes");
        if !changes.is_empty() {
            let proofs = from.proofs(&doc).expect("proofs");
            conflicts += to
                .apply_changes(&doc, &changes, &proofs)
                .expect("apply")
                .conflicts;
        }
    }
    conflicts
}

/// Two certified tills in memory with their own clocks: A (back office, the
/// admin till) holding `setup`'s data, and B in `role_b`, each holding all.
pub fn pair_with_clocks(
    role_b: Role,
    ca: &crate::ManualClock,
    cb: &crate::ManualClock,
    setup: impl FnOnce(&mut Store),
) -> (Store, Store) {
    let clocks = [ca.clone(), cb.clone()];
    let mut v = certified_with_roles(
        "Test Shop",
        &["A".to_string(), "B".to_string()],
        &[Role::BackOffice, role_b],
        setup,
        |i, key, new| {
            let opts = StoreOptions {
                clock: std::sync::Arc::new(clocks[i].clone()),
                ..StoreOptions::default()
            };
            Store::create_in_memory(key, new, opts).expect("in-memory store")
        },
    );
    let (b, _) = v.pop().expect("B");
    let (a, _) = v.pop().expect("A");
    (a, b)
}

/// Two certified tills in memory: A founds the store and holds its admin key,
/// B has received only the membership document (as right after joining).
pub fn members_pair(role_a: Role, role_b: Role) -> (Store, Store) {
    let store_id = StoreId::random();
    let admin = TillKey::generate();
    let mut a = till(store_id, "A", role_a, true, StoreOptions::default());
    let mut b = till(store_id, "B", role_b, false, StoreOptions::default());
    for s in [&mut a, &mut b] {
        s.set_admin_key(admin.till_id()).expect("trust root");
    }
    a.set_admin_signer(admin.clone()).expect("admin key");
    let (ida, idb) = (a.till_id(), b.till_id());
    a.certify(&admin, ida, &"A".parse().expect("name"), role_a)
        .expect("certify A");
    a.certify(&admin, idb, &"B".parse().expect("name"), role_b)
        .expect("certify B");
    let doc = crate::DocId::Membership;
    let changes = a.changes_since(&doc, &[]).expect("changes");
    let proofs = a.proofs(&doc).expect("proofs");
    b.apply_changes(&doc, &changes, &proofs)
        .expect("membership");
    (a, b)
}

/// The admin key a store holds (the founder of [`certified_stores`]).
pub fn admin_key(store: &Store) -> TillKey {
    store
        .admin_signer
        .clone()
        .expect("this store holds the admin key")
}
