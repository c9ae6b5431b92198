//! Fuzz targets: the shape every crate's targets share ([`Target`]), this crate's
//! own targets (a batch of changes from another till, [`store_changes`], and
//! signed changes with their proofs checked, [`signed_changes`]) and the
//! check that runs every committed input as an ordinary test ([`check_corpus`]).
//!
//! A target's body takes any bytes and says whether they were accepted. It must
//! never panic: a panic is a bug, found by cargo-fuzz (`fuzz/`) or by the
//! corpus check, which both call the same body. Inputs live in
//! `fuzz/corpus/<target>/` (seeds `valid-*` and `broken-*`, and whatever the
//! fuzzer kept) and `fuzz/crashers/<target>/` (inputs that once crashed). See
//! docs/fuzzing.md.

/// One fuzz target, as the fuzz crate and the corpus tests see it.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// Its name: `fuzz/fuzz_targets/<name>.rs`, `fuzz/corpus/<name>/`.
    pub name: &'static str,
    /// The body: whether the input was accepted; panics only on a bug.
    pub run: fn(&[u8]) -> bool,
    /// Inputs to start from, as (file name, bytes): the body must accept a
    /// `valid-*` input and refuse it cut short; it must refuse a `broken-*` one.
    pub seeds: fn() -> Vec<(String, Vec<u8>)>,
}

/// This crate's targets.
#[cfg(any(test, feature = "test-utils"))]
pub const TARGETS: &[Target] = &[
    Target {
        name: "store_changes",
        run: store_changes,
        seeds: store_changes_seeds,
    },
    Target {
        name: "signed_changes",
        run: signed_changes,
        seeds: signed_changes_seeds,
    },
];

#[cfg(any(test, feature = "test-utils"))]
pub use changes::{store_changes, store_changes_seeds};
#[cfg(any(test, feature = "test-utils"))]
pub use signed::{signed_changes, signed_changes_seeds};

/// Changes as the store's targets lay them out: the count (one byte), then
/// each change as a 4-byte little-endian length and its bytes, and nothing
/// after. `None` when the layout does not hold.
#[cfg(any(test, feature = "test-utils"))]
fn read_changes(data: &[u8]) -> Option<Vec<Vec<u8>>> {
    let (&count, mut rest) = data.split_first()?;
    let mut changes = Vec::new();
    for _ in 0..count {
        let (len, tail) = rest.split_at_checked(4)?;
        let len = u32::from_le_bytes(len.try_into().ok()?) as usize;
        let (change, tail) = tail.split_at_checked(len)?;
        changes.push(change.to_vec());
        rest = tail;
    }
    rest.is_empty().then_some(changes)
}

/// The inverse of [`read_changes`], appended to `out`.
#[cfg(any(test, feature = "test-utils"))]
fn write_changes(out: &mut Vec<u8>, changes: &[Vec<u8>]) {
    out.push(changes.len() as u8);
    for c in changes {
        out.extend_from_slice(&(c.len() as u32).to_le_bytes());
        out.extend_from_slice(c);
    }
}

#[cfg(any(test, feature = "test-utils"))]
mod signed {
    use crate::{DocId, NewStore, Proof, Role, Store, StoreId, StoreOptions, TillKey};

    const STORE: [u8; 16] = [9; 16];

    fn new_store(key: &TillKey, name: &str, founder: bool) -> Store {
        let admin = TillKey::from_seed([1; 32]);
        let mut s = Store::create_in_memory(
            key.clone(),
            NewStore {
                store_id: StoreId::from_bytes(STORE),
                store_name: "Fuzz Shop".into(),
                till_name: name.parse().expect("till name"),
                role: if founder {
                    Role::BackOffice
                } else {
                    Role::Till
                },
                founder,
            },
            StoreOptions::default(),
        )
        .expect("in-memory store");
        s.set_admin_key(admin.till_id()).expect("admin key");
        s
    }

    /// The receiving till: the admin till of a store in which till `[2; 32]`
    /// is a certified member (and `[3; 32]` is not).
    fn receiver() -> Store {
        let admin = TillKey::from_seed([1; 32]);
        let mut s = new_store(&TillKey::from_seed([4; 32]), "A", true);
        s.set_admin_signer(admin.clone()).expect("admin signer");
        s.certify(
            &admin,
            TillKey::from_seed([2; 32]).till_id(),
            &"B".parse().expect("name"),
            Role::Till,
        )
        .expect("certify");
        s
    }

    /// The input's layout: a byte giving the length of the document id, the
    /// id, the proofs as [`Proof::encode_list`] writes them after a 4-byte
    /// little-endian length, the number of changes (one byte), then each
    /// change as a 4-byte little-endian length and its bytes.
    /// A split input: document id, encoded proofs, changes.
    type Parts<'a> = (&'a str, &'a [u8], Vec<Vec<u8>>);

    fn split(data: &[u8]) -> Option<Parts<'_>> {
        let (&id_len, rest) = data.split_first()?;
        let (doc, rest) = rest.split_at_checked(usize::from(id_len))?;
        let doc = std::str::from_utf8(doc).ok()?;
        let (len, rest) = rest.split_at_checked(4)?;
        let len = u32::from_le_bytes(len.try_into().ok()?) as usize;
        let (proofs, rest) = rest.split_at_checked(len)?;
        Some((doc, proofs, super::read_changes(rest)?))
    }

    fn join(doc: &DocId, proofs: &[u8], changes: &[Vec<u8>]) -> Vec<u8> {
        let doc = doc.to_string();
        let mut out = vec![doc.len() as u8];
        out.extend_from_slice(doc.as_bytes());
        out.extend_from_slice(&(proofs.len() as u32).to_le_bytes());
        out.extend_from_slice(proofs);
        super::write_changes(&mut out, changes);
        out
    }

    /// Signed changes from another till: the proofs are decoded
    /// ([`Proof::decode_list`]) and the batch merged through
    /// [`Store::apply_changes`], with the proofs checked as on any till (no
    /// legacy door). A refused batch keeps nothing.
    pub fn signed_changes(data: &[u8]) -> bool {
        let Some((doc, proofs, changes)) = split(data) else {
            return false;
        };
        let Ok(doc) = doc.parse::<DocId>() else {
            return false;
        };
        let Ok(proofs) = Proof::decode_list(proofs) else {
            return false;
        };
        let mut store = receiver();
        let before = store.changes_since(&doc, &[]).expect("read before");
        match store.apply_changes(&doc, &changes, &proofs) {
            Ok(r) => r.new_changes > 0,
            Err(_) => {
                let after = store.changes_since(&doc, &[]).expect("read after");
                assert_eq!(before, after, "a refused batch keeps nothing");
                false
            }
        }
    }

    /// Member B's sales of a day with its proofs; the same signed by a till
    /// that is no member, with a damaged signature, and without proofs.
    pub fn signed_changes_seeds() -> Vec<(String, Vec<u8>)> {
        let mut admin_till = receiver();
        let key = TillKey::from_seed([2; 32]);
        let mut b = new_store(&key, "B", false);
        for d in [DocId::Membership, DocId::Catalog] {
            let changes = admin_till.changes_since(&d, &[]).expect("changes");
            let proofs = admin_till.proofs(&d).expect("proofs");
            b.apply_changes(&d, &changes, &proofs).expect("deliver");
        }
        b.add_product(crate::test_utils::product("MILK1L", 119))
            .expect_err("a till may not edit the catalog");
        admin_till
            .add_product(crate::test_utils::product("MILK1L", 119))
            .expect("product");
        let changes = admin_till
            .changes_since(&DocId::Catalog, &[])
            .expect("changes");
        let proofs = admin_till.proofs(&DocId::Catalog).expect("proofs");
        b.apply_changes(&DocId::Catalog, &changes, &proofs)
            .expect("catalog");
        b.record_sale(crate::test_utils::sale("MILK1L", 2, crate::Tender::Card))
            .expect("sale");
        let sales = b
            .doc_ids()
            .expect("docs")
            .into_iter()
            .find(|d| d.kind() == "sales")
            .expect("a sales document");
        let sold = b.changes_since(&sales, &[]).expect("changes");
        let proofs = b.proofs(&sales).expect("proofs");
        let heads: Vec<_> = proofs.iter().flat_map(|p| p.heads.clone()).collect();
        let stranger = Proof::sign(
            &TillKey::from_seed([3; 32]),
            &StoreId::from_bytes(STORE),
            &sales,
            1,
            heads,
        );
        let mut damaged = Proof::encode_list(&proofs);
        let last = damaged.len() - 1;
        damaged[last] ^= 1;
        vec![
            (
                "valid-member-sales".into(),
                join(&sales, &Proof::encode_list(&proofs), &sold),
            ),
            (
                "broken-signed-by-a-stranger".into(),
                join(&sales, &Proof::encode_list(&[stranger]), &sold),
            ),
            (
                "broken-damaged-signature".into(),
                join(&sales, &damaged, &sold),
            ),
            (
                "broken-no-proofs".into(),
                join(&sales, &Proof::encode_list(&[]), &sold),
            ),
        ]
    }
}

#[cfg(any(test, feature = "test-utils"))]
mod changes {
    use crate::{DocId, NewStore, Role, Store, StoreId, StoreOptions, TillKey};

    /// Whether the batch is a whole saved document rather than raw changes.
    const SAVED: u8 = 1;

    /// A fresh in-memory till of a fixed store, as a receiver of the input.
    fn till(seed: u8) -> Store {
        Store::create_in_memory(
            TillKey::from_seed([seed; 32]),
            NewStore {
                store_id: StoreId::from_bytes([7; 16]),
                store_name: "Fuzz Shop".into(),
                till_name: format!("T{seed}").parse().expect("till name"),
                role: Role::BackOffice,
                founder: true,
            },
            StoreOptions::default(),
        )
        .expect("in-memory store")
    }

    /// The input's layout: a flags byte ([`SAVED`]), a byte giving the length
    /// of the document id, the id, the number of changes (one byte), then each
    /// change as a 4-byte little-endian length and its bytes. `None` when the
    /// layout itself does not hold (an input cut short never does).
    fn split(data: &[u8]) -> Option<(u8, &str, Vec<Vec<u8>>)> {
        let (&flags, rest) = data.split_first()?;
        let (&id_len, rest) = rest.split_first()?;
        let (doc, rest) = rest.split_at_checked(usize::from(id_len))?;
        let doc = std::str::from_utf8(doc).ok()?;
        Some((flags, doc, super::read_changes(rest)?))
    }

    /// The inverse of [`split`].
    fn join(flags: u8, doc: &DocId, changes: &[Vec<u8>]) -> Vec<u8> {
        let doc = doc.to_string();
        let mut out = vec![flags, doc.len() as u8];
        out.extend_from_slice(doc.as_bytes());
        super::write_changes(&mut out, changes);
        out
    }

    /// A batch of changes (or a saved document) from another till, merged into
    /// a fresh in-memory till through [`Store::apply_changes`] (or
    /// [`Store::apply_saved`]). A refused batch leaves the document as it was;
    /// an accepted one, delivered again, brings nothing new.
    pub fn store_changes(data: &[u8]) -> bool {
        let Some((flags, doc, changes)) = split(data) else {
            return false;
        };
        let Ok(doc) = doc.parse::<DocId>() else {
            return false;
        };
        let mut store = till(1);
        // Proofs of authorship are checked by the authorship tests; here the
        // decoding and merging of untrusted bytes is what is fuzzed, so the
        // till takes the batch as history from before signed changes.
        store.accept_legacy_history(true).expect("legacy history");
        let before = store.changes_since(&doc, &[]).expect("read before");
        let apply = |store: &mut Store| {
            if flags & SAVED != 0 {
                let saved = changes.concat();
                store.apply_saved(&doc, &saved, &[])
            } else {
                store.apply_changes(&doc, &changes, &[])
            }
        };
        match apply(&mut store) {
            Ok(_) => {
                let again = apply(&mut store).expect("the same batch again");
                assert_eq!(again.new_changes, 0, "a batch delivered twice adds nothing");
                true
            }
            Err(_) => {
                let after = store.changes_since(&doc, &[]).expect("read after");
                assert_eq!(before, after, "a refused batch keeps nothing");
                false
            }
        }
    }

    /// Changes and saved documents made by another till of the same store: its
    /// catalog after adding a product, its sales of a day, and damaged copies.
    pub fn store_changes_seeds() -> Vec<(String, Vec<u8>)> {
        let mut other = till(2);
        other
            .add_product(crate::test_utils::product("MILK1L", 119))
            .expect("product");
        other
            .record_sale(crate::test_utils::sale("MILK1L", 2, crate::Tender::Card))
            .expect("sale");
        let sales = other
            .doc_ids()
            .expect("docs")
            .into_iter()
            .find(|d| d.kind() == "sales")
            .expect("a sales document");
        let catalog = other.changes_since(&DocId::Catalog, &[]).expect("changes");
        let sold = other.changes_since(&sales, &[]).expect("changes");
        let (saved, _) = other.save_doc(&DocId::Catalog).expect("save");
        let mut flipped = sold.clone();
        if let Some(b) = flipped[0].get_mut(20) {
            *b ^= 0x40;
        }
        vec![
            (
                "valid-catalog-changes".into(),
                join(0, &DocId::Catalog, &catalog),
            ),
            ("valid-sales-changes".into(), join(0, &sales, &sold)),
            (
                "valid-catalog-saved".into(),
                join(SAVED, &DocId::Catalog, &[saved]),
            ),
            // Till 2's sales, handed over as the receiving till's own.
            (
                "broken-sales-of-another-till".into(),
                join(0, &other_till_sales(&sales, &till(1)), &sold),
            ),
            ("broken-flipped-byte".into(), join(0, &sales, &flipped)),
            ("broken-unknown-doc".into(), {
                let mut b = join(0, &DocId::Catalog, &catalog);
                b[2] = b'K';
                b
            }),
        ]
    }

    /// `sales`, but of `till`'s own sales.
    fn other_till_sales(sales: &DocId, till: &Store) -> DocId {
        match sales {
            DocId::Sales(_, day) => DocId::Sales(till.till_id(), *day),
            other => *other,
        }
    }
}

/// Run every target's seeds, and every file in `fuzz/corpus/<target>/` and
/// `fuzz/crashers/<target>/` under `fuzz_dir`, through its body: nothing may
/// panic, a `valid-*` input must be accepted and refused when cut short, a
/// `broken-*` one refused. With `TILLMESH_FUZZ_SEEDS=write` the seeds are first
/// written into the corpus (to refresh it after a format change).
#[cfg(any(test, feature = "test-utils"))]
pub fn check_corpus(fuzz_dir: &std::path::Path, targets: &[Target]) {
    let write = std::env::var("TILLMESH_FUZZ_SEEDS").as_deref() == Ok("write");
    for t in targets {
        assert!(
            fuzz_dir
                .join(format!("fuzz_targets/{}.rs", t.name))
                .exists(),
            "target {} has no fuzz/fuzz_targets/{}.rs",
            t.name,
            t.name
        );
        let corpus = fuzz_dir.join("corpus").join(t.name);
        let mut inputs = Vec::new();
        for (name, bytes) in (t.seeds)() {
            if write {
                std::fs::create_dir_all(&corpus).expect("corpus folder");
                std::fs::write(corpus.join(&name), &bytes).expect("write seed");
            }
            inputs.push((format!("seed {name}"), name, bytes));
        }
        let mut files = 0;
        for dir in [corpus.clone(), fuzz_dir.join("crashers").join(t.name)] {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries {
                let path = entry.expect("corpus entry").path();
                let bytes = std::fs::read(&path).expect("corpus file");
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                inputs.push((path.display().to_string(), name, bytes));
                files += 1;
            }
        }
        assert!(files > 0, "{} is empty", corpus.display());
        for (what, name, bytes) in &inputs {
            let run = |input: &[u8]| {
                std::panic::catch_unwind(|| (t.run)(input))
                    .unwrap_or_else(|_| panic!("target {} panicked on {what}", t.name))
            };
            let accepted = run(bytes);
            if name.starts_with("valid-") {
                assert!(accepted, "target {} refused {what}", t.name);
                let mut cuts = vec![0, 1, bytes.len() / 2, bytes.len().saturating_sub(1)];
                cuts.retain(|c| *c < bytes.len());
                cuts.dedup();
                for cut in cuts {
                    assert!(
                        !run(&bytes[..cut]),
                        "target {} accepted {what} cut to {cut} bytes",
                        t.name
                    );
                }
            } else if name.starts_with("broken-") {
                assert!(!accepted, "target {} accepted {what}", t.name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    /// Every committed input of this crate's targets (the other crates' run in
    /// their own tests).
    #[test]
    fn the_corpus_runs_clean() {
        let fuzz = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
        super::check_corpus(&fuzz, super::TARGETS);
    }
}
