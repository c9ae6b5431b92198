//! `tillmesh sales export` and `tillmesh stock export`: files for accounting,
//! with and without the daemon, never overwriting a file.

use crate::common;

use common::Till;

fn shop(root: &std::path::Path) -> Till {
    let till = Till::new(root, "till-1");
    till.ok(&["init", "--store", "Export Shop", "--till", "T1"]);
    till.ok(&[
        "product",
        "add",
        "BREAD",
        "--name",
        "Bread, white",
        "--price",
        "2.50",
    ]);
    till.ok(&[
        "product", "add", "APPLES", "--name", "Apples", "--price", "3.20", "--unit", "kg",
    ]);
    till
}

#[test]
fn sales_and_stock_export_as_csv_and_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let till = shop(dir.path());
    for _ in 0..3 {
        till.ok(&[
            "sale",
            "--line",
            "BREAD:2",
            "--line",
            "APPLES:500g",
            "--tender",
            "card",
        ]);
    }
    let void = till.json(&["sale", "--line", "BREAD", "--tender", "cash"]);
    till.ok(&["void", void["receipt"].as_str().expect("receipt")]);

    // Pages of two through the command line.
    let seen: Vec<String> = pages(&till, &["sales"])
        .iter()
        .map(|s| s["receipt"].as_str().expect("r").to_string())
        .collect();
    assert_eq!(seen.len(), 5);
    assert_eq!(seen, till.receipts(), "the same entries in the same order");
    let table = till.ok(&["sales", "--limit", "2"]);
    assert!(table.contains("More: tillmesh sales --after "), "{table}");
    assert_eq!(
        till.run(&["sales", "--after", "nonsense"]).status.code(),
        Some(3)
    );

    let csv = dir.path().join("sales.csv");
    let said = till.ok(&[
        "sales",
        "export",
        csv.to_str().expect("utf-8"),
        "--from",
        "today",
        "--to",
        "today",
    ]);
    assert!(said.contains("Exported 5 entries"), "{said}");
    let text = std::fs::read_to_string(&csv).expect("csv");
    let mut lines = text.lines();
    assert!(
        lines
            .next()
            .expect("header")
            .starts_with("receipt,kind,refers_to,till")
    );
    let rows: Vec<&str> = lines.collect();
    // Three sales of two lines, a sale and its void of one line each.
    assert_eq!(rows.len(), 3 * 2 + 2, "{text}");
    assert_eq!(rows.iter().filter(|r| r.contains(",void,")).count(), 1);

    // Never over an existing file.
    let again = till.run(&["sales", "export", csv.to_str().expect("utf-8")]);
    assert_eq!(again.status.code(), Some(3));
    assert_eq!(
        std::fs::read_to_string(&csv).expect("csv"),
        text,
        "left as it was"
    );

    // A day with no sales: just the header.
    let empty = dir.path().join("empty.csv");
    till.ok(&[
        "sales",
        "export",
        empty.to_str().expect("utf-8"),
        "--from",
        "2001-01-01",
        "--to",
        "2001-01-02",
    ]);
    assert_eq!(
        std::fs::read_to_string(&empty)
            .expect("csv")
            .lines()
            .count(),
        1
    );

    // With the daemon running, through it, to a path relative to the caller.
    let daemon = till.start(&[]);
    till.ok(&["sale", "--line", "BREAD", "--tender", "cash"]);
    let out = till
        .cmd(&["sales", "export", "month.json"])
        .current_dir(dir.path())
        .output()
        .expect("export");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("month.json")).expect("json"),
    )
    .expect("valid JSON");
    let entries = json.as_array().expect("array");
    assert_eq!(entries.len(), 6);
    assert!(
        entries
            .iter()
            .all(|e| e["receipt"].is_string() && e["lines"].is_array())
    );
    let stdout = till.ok(&["sales", "export", "-", "--format", "csv"]);
    assert_eq!(stdout.lines().count(), 1 + 3 * 2 + 2 + 1);
    let stock = till.ok(&["stock", "export", "-", "--format", "json"]);
    let stock: serde_json::Value = serde_json::from_str(&stock).expect("stock JSON");
    let bread = stock
        .as_array()
        .expect("array")
        .iter()
        .find(|p| p["sku"] == "BREAD")
        .expect("bread");
    // 3×2 + 1 + 1 sold, 1 voided.
    assert_eq!(bread["on_hand"], -7);
    daemon.stop();
    let csv_stock = dir.path().join("stock.csv");
    till.ok(&["stock", "export", csv_stock.to_str().expect("utf-8")]);
    let text = std::fs::read_to_string(&csv_stock).expect("stock csv");
    assert!(text.contains("BREAD,\"Bread, white\",each,-7,"), "{text}");
}

/// Every page of `args` with `--limit 2`, following `next`: the items in order.
fn pages(till: &Till, args: &[&str]) -> Vec<serde_json::Value> {
    common::all_pages(2, |after| {
        let mut a: Vec<&str> = args.to_vec();
        a.extend(["--limit", "2"]);
        if let Some(c) = after {
            a.extend(["--after", c]);
        }
        till.json(&a)
    })
}

#[test]
fn product_and_audit_listings_page_through_everything_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let till = shop(dir.path());
    till.ok(&[
        "product", "add", "CAKE", "--name", "Cake", "--price", "4.00",
    ]);
    till.ok(&[
        "product", "add", "DATES", "--name", "Dates", "--price", "5.00",
    ]);
    let whole = till.json(&["product", "list"]);
    let paged = pages(&till, &["product", "list"]);
    assert_eq!(paged.len(), 4);
    assert_eq!(
        serde_json::Value::Array(paged),
        whole,
        "the same products in the same order"
    );
    let table = till.ok(&["product", "list", "--limit", "3"]);
    assert!(
        table.contains("More: tillmesh product list --after CAKE"),
        "{table}"
    );

    let whole = till.json(&["audit"]);
    let paged = pages(&till, &["audit"]);
    let seqs: Vec<_> = paged.iter().map(|e| e["seq"].clone()).collect();
    let want: Vec<_> = whole
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["seq"].clone())
        .collect();
    assert_eq!(seqs, want, "every entry once, in order");
    assert_eq!(
        till.run(&["audit", "--after", "nonsense"]).status.code(),
        Some(3)
    );
    assert_eq!(
        till.run(&["product", "list", "--limit", "0"]).status.code(),
        Some(3)
    );
}
