//! `tillmesh report`: what the daemon's journal kept of sync sessions,
//! sales arriving from other tills, backups and alerts, with a verdict.

use crate::common::{Till, wait_for};

#[test]
fn the_report_counts_sessions_arrivals_and_backups_and_says_what_failed() {
    let dir = tempfile::tempdir().expect("dir");
    let a = Till::new(dir.path(), "a");
    a.ok(&["init", "--store", "Reported", "--till", "A"]);
    a.ok(&["product", "add", "TEA", "--name", "Tea", "--price", "2.00"]);
    let da = a.start(&[]);
    let b = Till::new(dir.path(), "b");
    b.join(&a, "B");
    let db = b.start(&[]);
    for _ in 0..3 {
        b.ok(&["sale", "--line", "TEA", "--tender", "cash"]);
    }
    let nas = dir.path().join("nas");
    std::fs::create_dir(&nas).expect("nas");
    a.ok(&["sink", "add", "nas", "folder", nas.to_str().expect("path")]);
    a.ok(&["backup", "--to", "nas"]);
    wait_for("A's report to show B's sales and a session with B", || {
        let r = a.json(&["report"]);
        r["arrivals"]["sales"].as_u64() >= Some(3)
            && r["sync"].as_array().is_some_and(|s| {
                s.iter()
                    .any(|x| x["peer"] == "B" && x["ok"].as_u64() > Some(0))
            })
    });
    let r = a.json(&["report", "--since", "1h"]);
    let nas_row = r["backups"]
        .as_array()
        .and_then(|b| b.iter().find(|x| x["sink"] == "nas"))
        .unwrap_or_else(|| panic!("no nas backups in {r}"));
    assert!(nas_row["ok"].as_u64() >= Some(1), "{r}");
    assert!(nas_row["bytes"].as_u64() > Some(0), "{r}");
    assert!(r["arrivals"]["p50_ms"].as_u64().is_some(), "{r}");
    assert!(
        r["bytes_by_path"]["direct"]["received"].as_u64() > Some(0),
        "{r}"
    );
    let verdict = r["verdict"].as_str().expect("verdict");
    assert!(verdict.starts_with("OK: "), "{verdict}");
    let text = a.ok(&["report"]);
    assert!(
        text.starts_with(verdict) && text.contains("Sync sessions"),
        "{text}"
    );

    // A sink whose folder is gone: the backup fails, and the report says so.
    let gone = dir.path().join("gone");
    std::fs::create_dir(&gone).expect("gone");
    a.ok(&[
        "sink",
        "add",
        "stick",
        "folder",
        gone.to_str().expect("path"),
    ]);
    std::fs::remove_dir(&gone).expect("remove");
    assert!(!a.run(&["backup", "--to", "stick"]).status.success());
    wait_for("the failed backup in the report", || {
        a.json(&["report"])["backups"]
            .as_array()
            .is_some_and(|b| b.iter().any(|x| x["sink"] == "stick" && x["failed"] == 1))
    });
    let r = a.json(&["report"]);
    let verdict = r["verdict"].as_str().expect("verdict");
    assert!(
        verdict.starts_with("CHECK: ") && verdict.contains("2 backups failed"),
        "{verdict}"
    );

    // Nothing in the journal before the window.
    let r = a.json(&["report", "--since", "1s"]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let later = a.json(&["report", "--since", "1s"]);
    assert!(
        later["backups"].as_array().is_some_and(|b| b.is_empty()),
        "{later} (before: {r})"
    );
    // Unreadable input is refused plainly.
    let out = a.run(&["report", "--since", "a while"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot read the duration"),
        "{out:?}"
    );
    db.stop();
    da.stop();
}
