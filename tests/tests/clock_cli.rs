//! A till whose clock runs ten years ahead edits a price; the change reaches the
//! honest admin till on a USB stick. The admin till merges it, keeps filing its
//! own sales under today (`sales --day today`), and `status` names the till and
//! how far ahead its clock is.

use crate::common;

use common::Till;

const TEN_YEARS_MS: i64 = 10 * 365 * 86_400_000;

#[test]
fn a_till_ten_years_ahead_does_not_move_the_admin_tills_days() {
    let dir = tempfile::tempdir().expect("dir");
    let a = Till::new(dir.path(), "a");
    a.ok(&["init", "--store", "Corner Shop", "--till", "A"]);
    a.ok(&["product", "add", "TEA", "--name", "Tea", "--price", "2.50"]);
    let da = a.start(&[]);
    let b = Till::new(dir.path(), "b");
    b.join_as(&a, "B", "manager");
    da.stop();

    // B's clock is ten years ahead from here on.
    let offset = TEN_YEARS_MS.to_string();
    let b_ok = |args: &[&str]| {
        let out = b
            .cmd(args)
            .env("TILLMESH_CLOCK_OFFSET_MS", &offset)
            .output()
            .expect("run");
        assert!(
            out.status.success(),
            "tillmesh {args:?} on B failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    b_ok(&["product", "set-price", "TEA", "3.10"]);
    let stick = dir.path().join("stick");
    std::fs::create_dir(&stick).expect("stick");
    let s = stick.to_str().expect("path");
    b_ok(&["usb", "sync", s]);
    let imported = a.json(&["usb", "sync", s]);
    assert!(
        imported["imported_changes"].as_u64().expect("n") > 0,
        "{imported}"
    );
    let tea = a.json(&["product", "show", "TEA"]);
    assert_eq!(tea["price_cents"], 310, "B's price is merged: {tea}");

    // A's next sale is today's, also after the commands above reopened its store.
    a.ok(&["sale", "--line", "TEA", "--tender", "cash"]);
    let today = a.json(&["sales", "--day", "today"]);
    let today = today.as_array().expect("array");
    assert_eq!(today.len(), 1, "{today:?}");
    a.ok(&["sale", "--line", "TEA", "--tender", "card"]);
    assert_eq!(
        a.json(&["sales", "--day", "today"])
            .as_array()
            .expect("array")
            .len(),
        2
    );

    // The skew is shown, naming B.
    let status = a.json(&["status"]);
    let skew = &status["clock_skew"];
    assert_eq!(skew["name"], "B", "{status}");
    let ahead = skew["ahead_ms"].as_u64().expect("ahead_ms");
    assert!(ahead >= (TEN_YEARS_MS - 86_400_000) as u64, "{status}");
    let alerts = status["alerts"].as_array().expect("alerts");
    assert!(
        alerts
            .iter()
            .any(|x| x.as_str().is_some_and(|x| x.contains("till B's clock"))),
        "{status}"
    );
    let text = a.ok(&["status"]);
    // A few seconds passed between B's edit and A's import: 3649.99… days.
    assert!(
        text.contains("till B's clock was 3649 days ahead"),
        "{text}"
    );
}

#[test]
fn the_clock_bound_is_set_by_the_back_office_and_refused_to_a_till() {
    let dir = tempfile::tempdir().expect("dir");
    let a = Till::new(dir.path(), "a");
    a.ok(&["init", "--store", "Clock Shop", "--till", "A"]);
    assert_eq!(a.json(&["clock"])["max_skew_s"], 300);
    a.ok(&["clock", "--max-skew", "90s"]);
    assert_eq!(a.json(&["clock"])["max_skew_s"], 90);
    for bad in ["2d", "soon", "0s"] {
        let out = a.run(&["clock", "--max-skew", bad]);
        assert_eq!(out.status.code(), Some(3), "{bad}");
    }
    assert_eq!(a.json(&["clock"])["max_skew_s"], 90);
    // A plain till reads the bound it received, and may not change it.
    let da = a.start(&[]);
    let b = Till::new(dir.path(), "b");
    b.join(&a, "B");
    da.stop();
    assert_eq!(b.json(&["clock"])["max_skew_s"], 90);
    let out = b.run(&["clock", "--max-skew", "1h"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("back-office"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
