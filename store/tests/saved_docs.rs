//! Whole saved documents (what snapshots carry) merge through the same checks
//! as changes: another till's sales under a wrong owner are refused whole, and
//! a document new to the till is taken in as it came, with views derived from
//! all of it and this till's later edits written under this till's own actor.

use automerge::Change;
use tillmesh_store::test_utils::{members_pair, product, sale};
use tillmesh_store::{ApplyError, DocId, Role, Tender};

#[test]
fn saved_documents_are_checked_and_adopted_as_this_tills() {
    let (mut a, mut b) = members_pair(Role::BackOffice, Role::Manager);
    a.add_product(product("TEA", 250)).expect("product");
    for _ in 0..3 {
        a.record_sale(sale("TEA", 2, Tender::Cash)).expect("sale");
    }
    let sales = a
        .doc_ids()
        .expect("ids")
        .into_iter()
        .find(|d| matches!(d, DocId::Sales(..)))
        .expect("a sales document");
    let DocId::Sales(_, day) = sales else {
        unreachable!()
    };
    let (saved_sales, _) = a.save_doc(&sales).expect("save");
    let (saved_catalog, _) = a.save_doc(&DocId::Catalog).expect("save");
    let sales_proofs = a.proofs(&sales).expect("proofs");
    let catalog_proofs = a.proofs(&DocId::Catalog).expect("proofs");

    // A's sales offered as B's own day: refused whole, nothing kept.
    let forged = DocId::Sales(b.till_id(), day);
    let err = b
        .apply_saved_many(&[
            (
                DocId::Catalog,
                saved_catalog.as_slice(),
                catalog_proofs.clone(),
            ),
            (forged, saved_sales.as_slice(), sales_proofs.clone()),
        ])
        .expect_err("refused");
    assert!(matches!(err, ApplyError::NotOwner { .. }), "{err}");
    assert!(
        b.product(&"TEA".parse().expect("sku"))
            .expect("q")
            .is_none()
    );
    assert!(b.sales(None, None).expect("sales").is_empty());

    let r = b
        .apply_saved_many(&[
            (
                DocId::Catalog,
                saved_catalog.as_slice(),
                catalog_proofs.clone(),
            ),
            (sales, saved_sales.as_slice(), sales_proofs.clone()),
        ])
        .expect("adopt");
    assert!(r.new_changes >= 4, "{r:?}");
    assert_eq!(b.sales(None, None).expect("sales").len(), 3);
    assert_eq!(
        b.stock(&"TEA".parse().expect("sku")).expect("stock"),
        a.stock(&"TEA".parse().expect("sku")).expect("stock")
    );
    assert_eq!(
        b.day_totals(day).expect("totals"),
        a.day_totals(day).expect("totals")
    );
    // Merging the same documents again adds nothing.
    let again = b
        .apply_saved_many(&[(sales, saved_sales.as_slice(), sales_proofs.clone())])
        .expect("again");
    assert_eq!(again.new_changes, 0);

    // B's own edit to the adopted catalog carries B's actor, not the loader's.
    let before = b.heads(&DocId::Catalog).expect("heads");
    b.set_price(&"TEA".parse().expect("sku"), 275)
        .expect("price");
    let mine = b.changes_since(&DocId::Catalog, &before).expect("changes");
    assert_eq!(mine.len(), 1);
    let change = Change::from_bytes(mine[0].clone()).expect("change");
    assert!(
        change
            .actor_id()
            .to_bytes()
            .starts_with(b.till_id().as_bytes()),
        "written under B's till id"
    );
}
