//! Backups on a real folder: round trip, point-in-time restore, USB carry
//! between tills that never meet, corruption, forgery and a vanished device.

use std::time::Duration;

use tillmesh_backup::archive::{self, Pick, RestoreSpec};
use tillmesh_backup::format::{Form, Kind, Writer};
use tillmesh_backup::{FolderSink, Sink, keys};
use tillmesh_store::test_utils::{product, sale, till};
use tillmesh_store::{DocId, Role, Store, StoreId, StoreOptions, Tender, TillKey};

struct Shop {
    id: StoreId,
    admin: TillKey,
    a: Store,
    b: Store,
}

/// Every change either till lacks, both ways (the enrolment sync).
fn sync(x: &mut Store, y: &mut Store) {
    for _ in 0..2 {
        copy(x, y);
        copy(y, x);
    }
}

fn copy(from: &mut Store, to: &mut Store) {
    let mut ids = from.doc_ids().expect("ids");
    // Membership first: the other documents' proofs count from its members.
    ids.sort_by_key(|d| *d != DocId::Membership);
    for id in ids {
        let have = to.heads(&id).expect("heads");
        let changes = from.changes_since(&id, &have).expect("changes");
        let proofs = from.proofs(&id).expect("proofs");
        to.apply_changes(&id, &changes, &proofs).expect("apply");
    }
}

fn shop() -> Shop {
    let id = StoreId::random();
    let admin = TillKey::generate();
    let mut a = till(id, "A", Role::BackOffice, true, StoreOptions::default());
    let mut b = till(id, "B", Role::Manager, false, StoreOptions::default());
    for s in [&mut a, &mut b] {
        s.set_admin_key(admin.till_id()).expect("admin");
    }
    let (ta, tb) = (a.till_id(), b.till_id());
    a.certify(&admin, ta, &"A".parse().expect("n"), Role::BackOffice)
        .expect("cert a");
    a.certify(&admin, tb, &"B".parse().expect("n"), Role::Manager)
        .expect("cert b");
    a.add_product(product("TEA", 250)).expect("product");
    let secret = keys::generate(1);
    a.add_store_secret(secret.clone()).expect("secret");
    b.add_store_secret(secret).expect("secret");
    sync(&mut a, &mut b);
    Shop { id, admin, a, b }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
}

/// A snapshot of `from`'s documents as `signer` (a member) writes it by hand,
/// dated `created_ms`, its manifest naming `lie` (document, heads) for a
/// document whose record is an empty document.
fn hand_made_snapshot(
    shop: &mut Shop,
    sink: &FolderSink,
    created_ms: u64,
    lie: Option<(DocId, Vec<[u8; 32]>)>,
) -> String {
    let secret = shop.a.store_secrets().expect("secrets")[0].clone();
    let identity: age::x25519::Identity = secret.identity.parse().expect("id");
    let mut w = Writer::new(Kind::Snapshot, shop.id, "Test Shop");
    for id in shop.a.doc_ids().expect("ids") {
        let (saved, heads) = shop.a.save_doc(&id).expect("save");
        w.add(
            &id.to_string(),
            heads.iter().map(|h| h.0).collect(),
            Form::Saved,
            saved,
        );
    }
    if let Some((doc, heads)) = lie {
        w.add(
            &doc.to_string(),
            heads,
            Form::Saved,
            automerge::Automerge::new().save(),
        );
    }
    let bytes = w
        .finish_to(shop.a.till_key(), &identity.to_public(), created_ms)
        .expect("file");
    let name = format!(
        "{}/snapshots/{created_ms:013}-{}-00000001.tms",
        shop.id,
        shop.a.till_id().fmt_short()
    );
    sink.put(&name, &bytes).expect("put");
    name
}

/// A recovery key for the shop, published (signed by the admin) on till A.
fn publish_recovery(shop: &mut Shop) -> tillmesh_store::StoreSecret {
    let recovery = keys::generate(0);
    shop.a
        .publish_recovery_recipient(
            &shop.admin,
            &keys::recipient_of(&recovery).expect("recipient"),
        )
        .expect("publish");
    recovery
}

fn sell(s: &mut Store, n: usize) {
    for _ in 0..n {
        s.record_sale(sale("TEA", 1, Tender::Cash)).expect("sale");
    }
}

fn receipts(s: &mut Store) -> Vec<String> {
    let mut r: Vec<String> = s
        .sales(None, None)
        .expect("sales")
        .into_iter()
        .map(|r| r.entry.receipt.to_string())
        .collect();
    r.sort();
    r
}

fn restore(
    sink: &dyn Sink,
    shop: &Shop,
    pick: Pick,
) -> Result<(Store, archive::RestoreReport, tempfile::TempDir), archive::BackupError> {
    let home = tempfile::tempdir().expect("home");
    let secrets = shop.a.store_secrets().expect("secrets");
    let key = TillKey::generate();
    let report = archive::restore(
        sink,
        RestoreSpec {
            store_id: shop.id,
            admin: shop.admin.till_id(),
            secrets: &secrets,
            recovery: None,
            home: home.path(),
            key: key.clone(),
            till_name: "R".parse().expect("n"),
            certify_with: None,
            pick,
        },
    )?;
    let store = Store::open(
        &home.path().join(archive::STORE_FILE),
        key,
        StoreOptions::default(),
    )
    .expect("open restored");
    Ok((store, report, home))
}

#[test]
fn restore_gives_identical_documents_and_views() {
    let mut shop = shop();
    sell(&mut shop.a, 20);
    let dir = tempfile::tempdir().expect("dir");
    let sink = FolderSink::new(dir.path()).expect("sink");
    let r = archive::backup(&mut shop.a, &sink, Kind::Snapshot).expect("backup");
    assert!(r.name.is_some() && r.docs >= 4, "{r:?}");

    // The sink holds only ciphertext: no product name, no store name.
    for obj in sink.list("").expect("list") {
        let bytes = sink.get(&obj.name).expect("get");
        assert!(!bytes.windows(8).any(|w| w == b"Test Sho"), "{}", obj.name);
    }

    let (mut restored, report, _home) = restore(&sink, &shop, Pick::Newest).expect("restore");
    assert!(report.skipped.is_empty(), "{report:?}");
    let mut ids = shop.a.doc_ids().expect("ids");
    ids.sort_by_key(|d| d.to_string());
    let mut rids = restored.doc_ids().expect("ids");
    rids.sort_by_key(|d| d.to_string());
    assert_eq!(ids, rids);
    for id in &ids {
        assert_eq!(
            shop.a.heads(id).expect("h"),
            restored.heads(id).expect("h"),
            "{id}"
        );
    }
    assert_eq!(receipts(&mut shop.a), receipts(&mut restored));
    assert_eq!(
        shop.a.stock(&"TEA".parse().expect("sku")).expect("stock"),
        restored.stock(&"TEA".parse().expect("sku")).expect("stock")
    );
    assert_eq!(
        shop.a.product(&"TEA".parse().expect("sku")).expect("p"),
        restored.product(&"TEA".parse().expect("sku")).expect("p")
    );

    // A live till is never overwritten.
    let secrets = shop.a.store_secrets().expect("secrets");
    let e = archive::restore(
        &sink,
        RestoreSpec {
            store_id: shop.id,
            admin: shop.admin.till_id(),
            secrets: &secrets,
            recovery: None,
            home: _home.path(),
            key: TillKey::generate(),
            till_name: "R".parse().expect("n"),
            certify_with: None,
            pick: Pick::Newest,
        },
    )
    .expect_err("home in use");
    assert!(e.to_string().contains("already holds a till"), "{e}");
}

/// A till holding the recovery key (the admin till, also one restored from a
/// recovery file) reads a stick's bundles encrypted to a backup key it lacks:
/// the recovery key opens them.
#[test]
fn usb_sync_with_the_recovery_key_reads_bundles_of_a_key_the_till_lacks() {
    let mut shop = shop();
    let recovery = publish_recovery(&mut shop);
    // A rotation B never heard of.
    shop.a.add_store_secret(keys::generate(2)).expect("rotate");
    sell(&mut shop.a, 3);
    let stick = tempfile::tempdir().expect("stick");
    let sink = FolderSink::new(stick.path()).expect("sink");
    archive::usb_sync(&mut shop.a, &sink, &[], &Default::default()).expect("a");
    let without = archive::usb_sync(&mut shop.b, &sink, &[], &Default::default()).expect("b");
    assert_eq!(without.refused.len(), 1, "{without:?}");
    assert!(without.imported_files.is_empty(), "{without:?}");
    let with = archive::usb_sync(&mut shop.b, &sink, &[recovery], &Default::default())
        .expect("b with the recovery key");
    assert!(with.refused.is_empty(), "{with:?}");
    assert!(with.imported_changes >= 3, "{with:?}");
    assert_eq!(receipts(&mut shop.b), receipts(&mut shop.a));
}

#[test]
fn the_recovery_key_restores_what_was_backed_up_after_a_rotation() {
    let mut shop = shop();
    let first = shop.a.store_secrets().expect("secrets");
    let recovery = publish_recovery(&mut shop);
    assert_eq!(archive::recipients(&shop.a).expect("recipients").len(), 2);
    let dir = tempfile::tempdir().expect("dir");
    let sink = FolderSink::new(dir.path()).expect("sink");
    sell(&mut shop.a, 2);
    archive::backup(&mut shop.a, &sink, Kind::Snapshot).expect("snapshot");
    // A rotation: what follows is encrypted to a key the recovery file lacks.
    let rotated = keys::generate(2);
    shop.a.add_store_secret(rotated.clone()).expect("rotate");
    sell(&mut shop.a, 3);
    archive::backup(&mut shop.a, &sink, Kind::Snapshot).expect("snapshot");
    sell(&mut shop.a, 1);
    let b = archive::backup(&mut shop.a, &sink, Kind::Bundle).expect("bundle");
    assert!(b.name.is_some());

    let restore_with = |recovery: Option<&tillmesh_store::StoreSecret>| {
        let home = tempfile::tempdir().expect("home");
        let key = TillKey::generate();
        let report = archive::restore(
            &sink,
            RestoreSpec {
                store_id: shop.id,
                admin: shop.admin.till_id(),
                secrets: &first,
                recovery,
                home: home.path(),
                key: key.clone(),
                till_name: "R".parse().expect("n"),
                certify_with: None,
                pick: Pick::Newest,
            },
        );
        (report, home, key)
    };
    let (report, home, key) = restore_with(Some(&recovery));
    let report = report.expect("restore with the recovery key");
    assert!(report.skipped.is_empty(), "{report:?}");
    assert_eq!(report.bundles.len(), 1, "{report:?}");
    let mut restored = Store::open(
        &home.path().join(archive::STORE_FILE),
        key,
        StoreOptions::default(),
    )
    .expect("open");
    assert_eq!(receipts(&mut restored), receipts(&mut shop.a));
    assert_eq!(
        restored.store_secrets().expect("secrets"),
        first,
        "the recovery key is never kept in the store, which hands its keys to tills"
    );

    // Without it, the same keys reach only the snapshot before the rotation.
    let (report, _home, _key) = restore_with(None);
    let report = report.expect("restore without");
    assert_eq!(report.skipped.len(), 2, "{report:?}");
    assert!(
        report.skipped[0].1.contains(&rotated.key_id),
        "names the key it lacks: {report:?}"
    );
}

#[test]
fn point_in_time_restore_returns_the_state_then() {
    let mut shop = shop();
    let dir = tempfile::tempdir().expect("dir");
    let sink = FolderSink::new(dir.path()).expect("sink");
    sell(&mut shop.a, 3);
    archive::backup(&mut shop.a, &sink, Kind::Snapshot).expect("snapshot");
    std::thread::sleep(Duration::from_millis(5));
    sell(&mut shop.a, 2);
    let b1 = archive::backup(&mut shop.a, &sink, Kind::Bundle).expect("bundle");
    assert_eq!(b1.changes, 2, "two sales: {b1:?}");
    let at_b1 = receipts(&mut shop.a);
    let listed = archive::list(&sink, shop.id).expect("list");
    let t1 = listed
        .iter()
        .find(|l| Some(&l.name) == b1.name.as_ref())
        .and_then(|l| l.created_ms)
        .expect("created");
    std::thread::sleep(Duration::from_millis(5));
    sell(&mut shop.a, 4);
    archive::backup(&mut shop.a, &sink, Kind::Bundle).expect("bundle 2");
    // Nothing new: no empty bundle.
    let none = archive::backup(&mut shop.a, &sink, Kind::Bundle).expect("bundle 3");
    assert!(none.name.is_none(), "{none:?}");

    let (mut then, report, _h) = restore(&sink, &shop, Pick::At(t1)).expect("restore at t1");
    assert_eq!(report.bundles.len(), 1, "{report:?}");
    assert_eq!(receipts(&mut then), at_b1);
    let (mut now, _, _h2) = restore(&sink, &shop, Pick::Newest).expect("restore now");
    assert_eq!(receipts(&mut now), receipts(&mut shop.a));
    assert_eq!(receipts(&mut now).len(), 9);
}

/// A backup taken a few documents at a time, with sales between the steps and
/// before the write: the index claims only what the file holds, so the next
/// bundle carries the rest and a restore has every sale.
#[test]
fn sales_made_while_a_backup_is_in_the_making_go_in_the_next_one() {
    for kind in [Kind::Snapshot, Kind::Bundle] {
        let mut shop = shop();
        let dir = tempfile::tempdir().expect("dir");
        let sink = FolderSink::new(dir.path()).expect("sink");
        if kind == Kind::Bundle {
            archive::backup(&mut shop.a, &sink, Kind::Snapshot).expect("first snapshot");
        }
        sell(&mut shop.a, 3);
        let mut pending = archive::Pending::start(&shop.a, &sink, kind).expect("start");
        let mut steps = 0;
        while !pending.step(&mut shop.a, Duration::ZERO).expect("step") {
            sell(&mut shop.a, 1);
            steps += 1;
        }
        assert!(
            steps >= 2,
            "one document per step with no time: {steps} steps"
        );
        sell(&mut shop.a, 2);
        let first = pending.write(&sink).expect("write");
        assert!(first.name.is_some(), "{first:?}");
        let next = archive::backup(&mut shop.a, &sink, Kind::Bundle).expect("next bundle");
        assert!(
            next.changes >= 2,
            "the sales made after the last step are in the next bundle: {next:?}"
        );
        let all = receipts(&mut shop.a);
        assert_eq!(all.len(), 5 + steps, "{kind}");
        let (mut back, _, _h) = restore(&sink, &shop, Pick::Newest).expect("restore");
        assert_eq!(receipts(&mut back), all, "{kind}: every sale is restored");
    }
}

#[test]
fn usb_carry_converges_tills_that_never_meet() {
    let mut shop = shop();
    sell(&mut shop.a, 5);
    sell(&mut shop.b, 7);
    shop.b
        .set_price(&"TEA".parse().expect("sku"), 300)
        .expect("price");
    let stick = tempfile::tempdir().expect("stick");
    let sink = FolderSink::new(stick.path()).expect("sink");
    let first = archive::usb_sync(&mut shop.a, &sink, &[], &Default::default()).expect("a");
    assert_eq!(first.imported_changes, 0);
    assert!(first.exported_changes > 0);
    let second = archive::usb_sync(&mut shop.b, &sink, &[], &Default::default()).expect("b");
    assert!(second.imported_changes > 0 && second.exported_changes > 0);
    let third = archive::usb_sync(&mut shop.a, &sink, &[], &Default::default()).expect("a again");
    assert!(third.imported_changes > 0, "{third:?}");
    assert!(
        third.exported.is_none(),
        "nothing new for the stick: {third:?}"
    );
    assert_eq!(receipts(&mut shop.a), receipts(&mut shop.b));
    assert_eq!(receipts(&mut shop.a).len(), 12);
    for id in shop.a.doc_ids().expect("ids") {
        assert_eq!(
            shop.a.heads(&id).expect("h"),
            shop.b.heads(&id).expect("h"),
            "{id}"
        );
    }
    // Once more on B: nothing moves either way.
    let idle = archive::usb_sync(&mut shop.b, &sink, &[], &Default::default()).expect("idle");
    assert_eq!(idle.imported_changes, 0);
    assert!(idle.exported.is_none());
}

/// Files a till imported whole are passed over by its next `usb sync` (only
/// what is new is read), and what they carried stays.
#[test]
fn usb_sync_passes_over_files_imported_before() {
    let mut shop = shop();
    sell(&mut shop.a, 2);
    let stick = tempfile::tempdir().expect("stick");
    let sink = FolderSink::new(stick.path()).expect("sink");
    archive::usb_sync(&mut shop.a, &sink, &[], &Default::default()).expect("a");
    let mut known = std::collections::BTreeSet::new();
    let first = archive::usb_sync(&mut shop.b, &sink, &[], &known).expect("b");
    assert_eq!(first.files_read, 1, "{first:?}");
    assert_eq!(first.imported_files.len(), 1, "{first:?}");
    known.extend(first.imported_files);
    sell(&mut shop.a, 3);
    archive::usb_sync(&mut shop.a, &sink, &[], &Default::default()).expect("a again");
    let second = archive::usb_sync(&mut shop.b, &sink, &[], &known).expect("b again");
    assert_eq!(second.files_known, 1, "{second:?}");
    assert_eq!(
        second.files_read, 1,
        "only the new bundle is read: {second:?}"
    );
    assert!(second.imported_changes >= 3, "{second:?}");
    assert_eq!(receipts(&mut shop.b).len(), 5);
    // Without the record, every file is read again and nothing is new.
    let all = archive::usb_sync(&mut shop.b, &sink, &[], &Default::default()).expect("b once more");
    assert_eq!(all.files_read, 2, "{all:?}");
    assert_eq!(all.imported_changes, 0, "{all:?}");
}

/// A till certified in one file on the stick is a member for the files after
/// it in the same `usb sync`: its own bundle is taken, not refused.
#[test]
fn usb_sync_takes_files_of_a_till_certified_earlier_on_the_same_stick() {
    let mut shop = shop();
    let mut c = till(shop.id, "C", Role::Till, false, StoreOptions::default());
    c.set_admin_key(shop.admin.till_id()).expect("admin");
    for k in shop.a.store_secrets().expect("secrets") {
        c.add_store_secret(k).expect("secret");
    }
    let tc = c.till_id();
    shop.a
        .certify(&shop.admin, tc, &"C".parse().expect("n"), Role::Till)
        .expect("cert c");
    sync(&mut shop.a, &mut c);
    sell(&mut shop.a, 1);
    sell(&mut c, 2);
    let stick = tempfile::tempdir().expect("stick");
    let sink = FolderSink::new(stick.path()).expect("sink");
    archive::usb_sync(&mut shop.a, &sink, &[], &Default::default()).expect("a");
    archive::usb_sync(&mut c, &sink, &[], &Default::default()).expect("c");
    // B has never heard of C: A's file certifies it, C's file follows.
    let report = archive::usb_sync(&mut shop.b, &sink, &[], &Default::default()).expect("b");
    assert!(report.refused.is_empty(), "{report:?}");
    assert_eq!(report.files_read, 2, "{report:?}");
    assert_eq!(receipts(&mut shop.b), receipts(&mut c));
    assert_eq!(receipts(&mut shop.b).len(), 3);
}

/// An import made in steps (as the daemon makes it, sales between steps) ends
/// with every document of the file, like one made in one go.
#[test]
fn an_import_in_steps_lets_sales_in_between_and_takes_everything() {
    let mut shop = shop();
    sell(&mut shop.a, 24);
    shop.a
        .set_price(&"TEA".parse().expect("sku"), 275)
        .expect("price");
    let dir = tempfile::tempdir().expect("dir");
    let sink = FolderSink::new(dir.path()).expect("sink");
    let made = archive::backup(&mut shop.a, &sink, Kind::Snapshot).expect("snapshot");
    let bytes = sink.get(made.name.as_deref().expect("name")).expect("get");
    let opener = archive::Opener::of(&shop.b, &[]).expect("opener");
    let (_, contents) = opener.open(&bytes).expect("open");
    let mut import = archive::Import::new(&contents).expect("decode");
    let mut steps = 0;
    while !import.step(&mut shop.b, Duration::ZERO).expect("step") {
        // The store is free between steps: a sale goes in.
        sell(&mut shop.b, 1);
        steps += 1;
    }
    assert!(steps >= 2, "one document per step with no time: {steps}");
    assert!(import.imported().changes > 0, "{:?}", import.imported());
    let a_receipts = receipts(&mut shop.a);
    let b_receipts = receipts(&mut shop.b);
    assert_eq!(b_receipts.len(), a_receipts.len() + steps);
    assert!(a_receipts.iter().all(|r| b_receipts.contains(r)));
    for id in shop.a.doc_ids().expect("ids") {
        if id.owner() == Some(shop.b.till_id()) {
            continue;
        }
        assert_eq!(
            shop.a.heads(&id).expect("h"),
            shop.b.heads(&id).expect("h"),
            "{id}"
        );
    }
    let tea = "TEA".parse().expect("sku");
    assert_eq!(
        shop.b.product(&tea).expect("p").expect("tea").price_cents,
        275
    );
}

fn flip(sink: &FolderSink, name: &str, at: usize) {
    let p = sink.root().join(name);
    let mut bytes = std::fs::read(&p).expect("read");
    let i = at.min(bytes.len() - 1);
    bytes[i] ^= 0x40;
    std::fs::write(&p, bytes).expect("write");
}

#[test]
fn damaged_and_foreign_files_get_specific_errors() {
    let mut shop = shop();
    sell(&mut shop.a, 4);
    let dir = tempfile::tempdir().expect("dir");
    let sink = FolderSink::new(dir.path()).expect("sink");
    let good = archive::backup(&mut shop.a, &sink, Kind::Snapshot)
        .expect("snapshot")
        .name
        .expect("name");
    std::thread::sleep(Duration::from_millis(5));
    sell(&mut shop.a, 1);
    let flipped = archive::backup(&mut shop.a, &sink, Kind::Snapshot)
        .expect("snapshot")
        .name
        .expect("name");
    flip(&sink, &flipped, 300);
    std::thread::sleep(Duration::from_millis(5));
    let truncated = archive::backup(&mut shop.a, &sink, Kind::Snapshot)
        .expect("snapshot")
        .name
        .expect("name");
    let p = sink.root().join(&truncated);
    let len = std::fs::metadata(&p).expect("meta").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .expect("open")
        .set_len(len / 2)
        .expect("truncate");

    // A file of another store, copied into this store's folder.
    let mut other = shop_other();
    let odir = tempfile::tempdir().expect("dir");
    let osink = FolderSink::new(odir.path()).expect("sink");
    let oname = archive::backup(&mut other, &osink, Kind::Snapshot)
        .expect("other")
        .name
        .expect("name");
    let foreign = format!("{}/snapshots/0000000000001-foreign.tms", shop.id);
    sink.put(&foreign, &osink.get(&oname).expect("get"))
        .expect("put");

    // A file encrypted to a key this till no longer holds (rotated away).
    let old = keys::generate(0);
    let mut w = Writer::new(Kind::Snapshot, shop.id, "Test Shop");
    let (saved, heads) = shop.a.save_doc(&DocId::Catalog).expect("save");
    w.add(
        "catalog",
        heads.iter().map(|h| h.0).collect(),
        Form::Saved,
        saved,
    );
    let rotated = format!("{}/snapshots/0000000000002-rotated.tms", shop.id);
    let file = w.finish(shop.a.till_key(), &old, 2).expect("file");
    sink.put(&rotated, &file).expect("put");

    let verdicts = archive::verify(&shop.a, &sink, None).expect("verify");
    let error_of = |name: &str| {
        verdicts
            .iter()
            .find(|v| v.name == name)
            .unwrap_or_else(|| panic!("{name} listed"))
            .error
            .clone()
    };
    assert_eq!(error_of(&good), None);
    assert!(
        error_of(&flipped).expect("flipped").contains("signature"),
        "{verdicts:?}"
    );
    assert!(
        error_of(&truncated)
            .expect("truncated")
            .contains("truncated"),
        "{verdicts:?}"
    );
    assert!(
        error_of(&foreign)
            .expect("foreign")
            .contains("another store"),
        "{verdicts:?}"
    );
    assert!(
        error_of(&rotated)
            .expect("rotated")
            .contains("does not hold"),
        "{verdicts:?}"
    );

    // Restore passes over the damaged newer snapshots to the newest intact one.
    let (mut restored, report, _h) = restore(&sink, &shop, Pick::Newest).expect("restore");
    assert_eq!(report.snapshot, good, "{report:?}");
    assert_eq!(report.skipped.len(), 2, "{report:?}");
    assert_eq!(receipts(&mut restored).len(), 4);
    // Asked for a damaged one by name: a specific error, not a silent fallback.
    let e = restore(&sink, &shop, Pick::Named(flipped.clone())).expect_err("named");
    assert!(e.to_string().contains("signature"), "{e}");
}

fn shop_other() -> Store {
    let mut s = till(
        StoreId::random(),
        "X",
        Role::BackOffice,
        true,
        StoreOptions::default(),
    );
    let admin = TillKey::generate();
    s.set_admin_key(admin.till_id()).expect("admin");
    let me = s.till_id();
    s.certify(&admin, me, &"X".parse().expect("n"), Role::BackOffice)
        .expect("cert");
    s.add_store_secret(keys::generate(1)).expect("secret");
    s
}

#[test]
fn a_bundle_forged_with_the_public_key_is_refused_whole() {
    let mut shop = shop();
    sell(&mut shop.a, 2);
    let stick = tempfile::tempdir().expect("stick");
    let sink = FolderSink::new(stick.path()).expect("sink");
    archive::usb_sync(&mut shop.a, &sink, &[], &Default::default()).expect("a");

    // The forger knows the store id and its public recipient (both are on any
    // file's header and in any member's config) and makes a fake sale.
    let secret = shop.a.store_secrets().expect("secrets")[0].clone();
    let identity: age::x25519::Identity = secret.identity.parse().expect("id");
    let recipient = identity.to_public();
    let mut forger = till(shop.id, "F", Role::Till, true, StoreOptions::default());
    forger.add_product(product("TEA", 1)).expect("product");
    sell(&mut forger, 1);
    let mut w = Writer::new(Kind::Bundle, shop.id, "Test Shop");
    for id in forger.doc_ids().expect("ids") {
        let changes = forger.changes_since(&id, &[]).expect("changes");
        let heads = forger.heads(&id).expect("heads");
        w.add(
            &id.to_string(),
            heads.iter().map(|h| h.0).collect(),
            Form::Changes,
            postcard::to_stdvec(&changes).expect("encode"),
        );
    }
    // Dated a minute ahead (within the clock bound), so restore reaches it
    // after the snapshot made below.
    let now = now_ms() + 60_000;
    let forged = w
        .finish_to(forger.till_key(), &recipient, now)
        .expect("forged file");
    let name = format!(
        "{}/bundles/{}/{now:013}-00000000.tmb",
        shop.id,
        forger.till_id()
    );
    sink.put(&name, &forged).expect("put");

    let before = receipts(&mut shop.b);
    let report = archive::usb_sync(&mut shop.b, &sink, &[], &Default::default()).expect("b");
    assert_eq!(report.refused.len(), 1, "{report:?}");
    assert!(report.refused[0].1.contains("not a member"), "{report:?}");
    assert_eq!(
        receipts(&mut shop.b).len(),
        before.len() + 2,
        "only A's sales"
    );
    assert_eq!(
        shop.b
            .product(&"TEA".parse().expect("sku"))
            .expect("p")
            .expect("tea")
            .price_cents,
        250,
        "the forged price did not land"
    );
    // Restore passes over it too.
    archive::backup(&mut shop.a, &sink, Kind::Snapshot).expect("snapshot");
    let (mut restored, report, _h) = restore(&sink, &shop, Pick::Newest).expect("restore");
    assert!(report.skipped.iter().any(|(n, _)| n == &name), "{report:?}");
    assert!(!receipts(&mut restored).iter().any(|r| r.starts_with("F-")));
}

#[test]
fn a_removed_device_fails_clearly_and_the_next_backup_succeeds() {
    let mut shop = shop();
    sell(&mut shop.a, 2);
    let parent = tempfile::tempdir().expect("dir");
    let mount = parent.path().join("stick");
    std::fs::create_dir(&mount).expect("mkdir");
    let sink = FolderSink::new(&mount).expect("sink");
    archive::backup(&mut shop.a, &sink, Kind::Snapshot).expect("first");
    std::fs::remove_dir_all(&mount).expect("unplug");
    let e = archive::backup(&mut shop.a, &sink, Kind::Snapshot).expect_err("removed");
    assert!(
        e.to_string().contains("plugged in") || e.to_string().contains("disappeared"),
        "{e}"
    );
    sell(&mut shop.a, 1);
    std::fs::create_dir(&mount).expect("plug back");
    let r = archive::backup(&mut shop.a, &sink, Kind::Snapshot).expect("next");
    assert!(r.name.is_some());
    let listed = archive::list(&sink, shop.id).expect("list");
    assert_eq!(listed.len(), 1);
    assert!(listed.iter().all(|l| l.problem.is_none()));
}

#[test]
fn prune_keeps_the_policy_and_never_the_only_copy() {
    use tillmesh_backup::retention::Policy;
    let only_newest: Policy = "last=1,daily=0,weekly=0,monthly=0".parse().expect("policy");
    let mut shop = shop();
    let dir = tempfile::tempdir().expect("dir");
    let sink = FolderSink::new(dir.path()).expect("sink");
    let pause = || std::thread::sleep(Duration::from_millis(3));

    sell(&mut shop.a, 3);
    let s1 = archive::backup(&mut shop.a, &sink, Kind::Snapshot)
        .expect("s1")
        .name
        .expect("s1 name");
    pause();
    // B sells what A never sees; its bundle is the only copy of those sales.
    sell(&mut shop.b, 2);
    let b1 = archive::backup(&mut shop.b, &sink, Kind::Bundle)
        .expect("b1")
        .name
        .expect("b1 name");
    pause();
    sell(&mut shop.a, 2);
    let s2 = archive::backup(&mut shop.a, &sink, Kind::Snapshot)
        .expect("s2")
        .name
        .expect("s2 name");
    let files = |sink: &FolderSink| -> Vec<String> {
        archive::list(sink, shop.id)
            .expect("list")
            .into_iter()
            .map(|l| l.name)
            .collect()
    };
    let before = files(&sink);

    let dry = tillmesh_backup::prune(&shop.a, &sink, &only_newest, true).expect("dry run");
    assert_eq!(dry.deleted, vec![s1.clone()], "{dry:?}");
    assert_eq!(dry.only_copy, vec![b1.clone()], "{dry:?}");
    assert_eq!(files(&sink), before, "a dry run deletes nothing");

    let r = tillmesh_backup::prune(&shop.a, &sink, &only_newest, false).expect("prune");
    assert_eq!(r.deleted, vec![s1.clone()]);
    assert!(r.freed_bytes > 0);
    assert_eq!(files(&sink), vec![b1.clone(), s2.clone()]);

    // Once a snapshot holds B's sales too, B's bundle and the older snapshot go.
    sync(&mut shop.a, &mut shop.b);
    pause();
    let s3 = archive::backup(&mut shop.a, &sink, Kind::Snapshot)
        .expect("s3")
        .name
        .expect("s3 name");
    let r = tillmesh_backup::prune(&shop.a, &sink, &only_newest, false).expect("prune 2");
    let mut deleted = r.deleted.clone();
    deleted.sort();
    let mut want = vec![b1, s2];
    want.sort();
    assert_eq!(deleted, want, "{r:?}");
    assert!(r.only_copy.is_empty(), "{r:?}");
    assert_eq!(files(&sink), vec![s3.clone()]);

    // Pruning again deletes nothing, and the store restores whole.
    let again = tillmesh_backup::prune(&shop.a, &sink, &only_newest, false).expect("prune 3");
    assert!(again.deleted.is_empty(), "{again:?}");
    let (mut restored, _, _home) = restore(&sink, &shop, Pick::Newest).expect("restore");
    assert_eq!(receipts(&mut restored), receipts(&mut shop.a));
    assert_eq!(receipts(&mut restored).len(), 7);
}

#[test]
fn prune_leaves_damaged_files_alone() {
    use tillmesh_backup::retention::Policy;
    let only_newest: Policy = "last=1,daily=0,weekly=0,monthly=0".parse().expect("policy");
    let mut shop = shop();
    let dir = tempfile::tempdir().expect("dir");
    let sink = FolderSink::new(dir.path()).expect("sink");
    sell(&mut shop.a, 2);
    let old = archive::backup(&mut shop.a, &sink, Kind::Snapshot)
        .expect("old")
        .name
        .expect("name");
    std::thread::sleep(Duration::from_millis(3));
    let new = archive::backup(&mut shop.a, &sink, Kind::Snapshot)
        .expect("new")
        .name
        .expect("name");
    // The newest is damaged: it is left alone, and the older intact one becomes
    // the reference, so it is kept too.
    flip(&sink, &new, 200);
    let r = tillmesh_backup::prune(&shop.a, &sink, &only_newest, false).expect("prune");
    assert!(r.deleted.is_empty(), "{r:?}");
    assert!(r.unreadable.iter().any(|(n, _)| *n == new), "{r:?}");
    assert!(r.kept.contains(&old), "{r:?}");
    assert_eq!(archive::list(&sink, shop.id).expect("list").len(), 2);
}

#[test]
fn a_file_dated_in_the_future_is_refused_and_steers_neither_restore_nor_prune() {
    use tillmesh_backup::retention::Policy;
    let only_newest: Policy = "last=1,daily=0,weekly=0,monthly=0".parse().expect("policy");
    let mut shop = shop();
    let dir = tempfile::tempdir().expect("dir");
    let sink = FolderSink::new(dir.path()).expect("sink");
    sell(&mut shop.a, 2);
    let honest = archive::backup(&mut shop.a, &sink, Kind::Snapshot)
        .expect("snapshot")
        .name
        .expect("name");
    // A member's file dated a day ahead (a wrong clock, or a forged date).
    let ahead = hand_made_snapshot(&mut shop, &sink, now_ms() + 86_400_000, None);
    let listed = archive::list(&sink, shop.id).expect("list");
    let row = listed.iter().find(|l| l.name == ahead).expect("listed");
    assert!(
        row.problem
            .as_deref()
            .is_some_and(|p| p.contains("ahead of this till's clock")),
        "{row:?}"
    );
    // Prune keeps the honest snapshot (the newest that counts) and leaves the
    // future one alone, reported.
    let r = tillmesh_backup::prune(&shop.a, &sink, &only_newest, false).expect("prune");
    assert!(r.deleted.is_empty(), "{r:?}");
    assert!(r.kept.contains(&honest), "{r:?}");
    assert!(r.unreadable.iter().any(|(n, _)| *n == ahead), "{r:?}");
    // Restore takes the honest one; a till syncing from the stick refuses the
    // future one by name.
    let (_restored, report, _home) = restore(&sink, &shop, Pick::Newest).expect("restore");
    assert_eq!(report.snapshot, honest);
    let synced = archive::usb_sync(&mut shop.b, &sink, &[], &Default::default()).expect("usb");
    assert!(
        synced.refused.iter().any(|(n, _)| *n == ahead),
        "{synced:?}"
    );
}

#[test]
fn prune_checks_a_snapshots_heads_against_its_records() {
    use tillmesh_backup::retention::Policy;
    let only_newest: Policy = "last=1,daily=0,weekly=0,monthly=0".parse().expect("policy");
    let mut shop = shop();
    let dir = tempfile::tempdir().expect("dir");
    let sink = FolderSink::new(dir.path()).expect("sink");
    // B's sales exist only in B's bundle.
    sell(&mut shop.b, 2);
    let bundle = archive::backup(&mut shop.b, &sink, Kind::Bundle)
        .expect("bundle")
        .name
        .expect("name");
    let b_id = shop.b.till_id();
    let doc = shop
        .b
        .doc_ids()
        .expect("ids")
        .into_iter()
        .find(|d| matches!(d, DocId::Sales(t, _) if *t == b_id))
        .expect("B's sales");
    let heads: Vec<[u8; 32]> = shop
        .b
        .heads(&doc)
        .expect("heads")
        .iter()
        .map(|h| h.0)
        .collect();
    std::thread::sleep(Duration::from_millis(3));
    // A newer snapshot whose manifest names B's heads while its record for
    // that document is empty.
    hand_made_snapshot(&mut shop, &sink, now_ms(), Some((doc, heads)));
    let r = tillmesh_backup::prune(&shop.a, &sink, &only_newest, false).expect("prune");
    assert!(r.only_copy.contains(&bundle), "{r:?}");
    assert!(!r.deleted.contains(&bundle), "{r:?}");
    assert!(
        archive::list(&sink, shop.id)
            .expect("list")
            .iter()
            .any(|l| l.name == bundle)
    );
}

#[test]
fn restore_passes_over_the_newest_snapshot_when_a_later_file_revokes_its_signer() {
    let mut shop = shop();
    let dir = tempfile::tempdir().expect("dir");
    let sink = FolderSink::new(dir.path()).expect("sink");
    sell(&mut shop.a, 2);
    sync(&mut shop.a, &mut shop.b);
    let by_a = archive::backup(&mut shop.a, &sink, Kind::Snapshot)
        .expect("A's snapshot")
        .name
        .expect("name");
    std::thread::sleep(Duration::from_millis(3));
    // B's snapshot is the newest, and its membership says B is a member.
    let by_b = archive::backup(&mut shop.b, &sink, Kind::Snapshot)
        .expect("B's snapshot")
        .name
        .expect("name");
    std::thread::sleep(Duration::from_millis(3));
    // Then the admin revokes B, and A's next bundle carries the revocation.
    let b_id = shop.b.till_id();
    shop.a.revoke(&shop.admin, b_id).expect("revoke");
    archive::backup(&mut shop.a, &sink, Kind::Bundle).expect("A's bundle");
    let (mut restored, report, _home) = restore(&sink, &shop, Pick::Newest).expect("restore");
    assert_eq!(report.snapshot, by_a, "{report:?}");
    assert!(
        report
            .skipped
            .iter()
            .any(|(n, why)| *n == by_b && why.contains("not a member")),
        "{report:?}"
    );
    assert_eq!(receipts(&mut restored), receipts(&mut shop.a));
}
