//! One till driven through the real binary: the catalog, sales by SKU and barcode,
//! voids, refunds and stock, with the JSON field names scripts rely on, and bad
//! input refused with its exit code while the till's data stays as it was; a
//! catalog file imported all or nothing, by the command and through the daemon.

use crate::common;

use common::Till;

fn setup(root: &std::path::Path) -> Till {
    let till = Till::new(root, "till-1");
    till.ok(&["init", "--store", "Test Shop", "--till", "T1"]);
    till.ok(&[
        "product",
        "add",
        "MILK1L",
        "--name",
        "Milk 1 l",
        "--price",
        "1.19",
        "--barcode",
        "4006381333931",
        "--tax-class",
        "reduced",
    ]);
    till.ok(&[
        "product", "add", "APPLES", "--name", "Apples", "--price", "2.40", "--unit", "kg",
    ]);
    till
}

#[test]
fn sales_stock_and_json_fields() {
    let dir = tempfile::tempdir().expect("tempdir");
    let till = setup(dir.path());
    till.ok(&["stock", "receive", "MILK1L", "24"]);
    till.ok(&["stock", "count", "APPLES", "10000g"]);

    let sale = till.json(&[
        "sale",
        "--line",
        "4006381333931:3",
        "--line",
        "APPLES:500g:-0.10",
        "--tender",
        "card",
    ]);
    assert_eq!(sale["receipt"], "T1-1");
    assert_eq!(sale["till"], "T1");
    assert_eq!(sale["tender"], "card");
    assert!(sale["hlc"].as_u64().is_some_and(|h| h > 0));
    // 3 x 1.19 + (0.5 kg x 2.40 - 0.10)
    assert_eq!(sale["total_cents"], 357 + 110);
    let lines = sale["lines"].as_array().expect("lines");
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["sku"], "MILK1L");
    assert_eq!(lines[1]["grams"], 500);

    let listed = till.json(&["sales"]);
    let listed = listed.as_array().expect("array");
    assert_eq!(listed.len(), 1);
    for field in ["receipt", "till", "lines", "total_cents", "tender", "hlc"] {
        assert_eq!(listed[0][field], sale[field], "field {field}");
    }

    let refund = till.json(&["refund", "T1-1", "--line", "MILK1L:1"]);
    assert_eq!(refund["receipt"], "T1-2");
    assert_eq!(refund["refers_to"], "T1-1");
    assert_eq!(refund["total_cents"], 119);
    // Refunding more than is left is refused.
    let out = till.run(&["refund", "T1-1", "--line", "MILK1L:3"]);
    assert_eq!(out.status.code(), Some(3));
    // A sale with refunds cannot be voided.
    assert_eq!(till.run(&["void", "T1-1"]).status.code(), Some(3));

    let s2 = till.json(&["sale", "--line", "MILK1L", "--tender", "cash"]);
    assert_eq!(s2["receipt"], "T1-3");
    let void = till.json(&["void", "T1-3"]);
    assert_eq!(void["kind"], "void");
    assert_eq!(
        till.run(&["void", "T1-3"]).status.code(),
        Some(3),
        "no double void"
    );

    let stock = till.json(&["stock"]);
    let by_sku = |sku: &str| {
        stock
            .as_array()
            .expect("array")
            .iter()
            .find(|s| s["sku"] == sku)
            .expect("sku listed")["on_hand"]
            .as_i64()
            .expect("on_hand")
    };
    // 24 received, 3 sold, 1 refunded, 1 sold and voided.
    assert_eq!(by_sku("MILK1L"), 22);
    assert_eq!(by_sku("APPLES"), 9500);
    let one = till.json(&["stock", "MILK1L"]);
    assert_eq!(one[0]["on_hand"], 22);

    // Filters.
    assert_eq!(
        till.json(&["sales", "--till", "T1"])
            .as_array()
            .map(Vec::len),
        Some(4)
    );
    assert_eq!(
        till.json(&["sales", "--day", "1999-01-01"])
            .as_array()
            .map(Vec::len),
        Some(0)
    );
    assert_eq!(till.run(&["sales", "--till", "T9"]).status.code(), Some(3));

    // The audit trail holds the refund, the void and the count, and verifies.
    let audit = till.json(&["audit"]);
    let kinds: Vec<&str> = audit
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    for k in ["refund", "void", "stock-count", "product-add"] {
        assert!(kinds.contains(&k), "audit has {k}: {kinds:?}");
    }
    till.ok(&["audit", "verify"]);
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let till = setup(dir.path());
    till.ok(&["sale", "--line", "MILK1L", "--tender", "cash"]);
    let before = (
        till.ok(&["sales", "--json"]),
        till.ok(&["stock", "--json"]),
        till.ok(&["product", "list", "--json"]),
    );

    let cases: &[(&[&str], i32, &str)] = &[
        (
            &["sale", "--line", "4006381333932", "--tender", "cash"],
            3,
            "check digit",
        ),
        (
            &["sale", "--line", "NOSUCH", "--tender", "cash"],
            4,
            "no product",
        ),
        (
            &["sale", "--line", "APPLES", "--tender", "cash"],
            3,
            "by weight",
        ),
        (
            &["sale", "--line", "MILK1L:2:-5.00", "--tender", "cash"],
            3,
            "discount",
        ),
        (
            &["sale", "--line", "MILK1L", "--tender", "cheque"],
            3,
            "tender",
        ),
        (
            &["product", "add", "X1", "--name", "X", "--price", "-0.50"],
            3,
            "negative",
        ),
        (
            &[
                "product",
                "add",
                "X1",
                "--name",
                "X",
                "--price",
                "1",
                "--barcode",
                "123",
            ],
            3,
            "barcode",
        ),
        (
            &[
                "product",
                "add",
                "X1",
                "--name",
                "X",
                "--price",
                "1",
                "--barcode",
                "4006381333931",
            ],
            3,
            "already belongs",
        ),
        (
            &[
                "product",
                "add",
                "X1",
                "--name",
                "X",
                "--price",
                "1",
                "--tax-class",
                "luxury",
            ],
            3,
            "tax class",
        ),
        (
            &["product", "add", "MILK1L", "--name", "X", "--price", "1"],
            3,
            "already exists",
        ),
        (
            &["product", "set-price", "NOSUCH", "1.00"],
            4,
            "unknown product",
        ),
        (
            &["stock", "adjust", "MILK1L", "-2", "--reason", " "],
            3,
            "reason",
        ),
        (&["stock", "receive", "NOSUCH", "5"], 4, "unknown product"),
        (&["stock", "receive", "APPLES", "5"], 3, "grams"),
        (&["void", "T1-99"], 4, "no sale"),
        (&["void", "garbage"], 3, "receipt"),
        (
            &["conflicts", "resolve", "nope", "--pick", "1"],
            4,
            "no conflict",
        ),
    ];
    for (args, code, needle) in cases {
        let out = till.run(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(*code), "tillmesh {args:?}: {err}");
        assert!(
            err.contains(needle),
            "tillmesh {args:?}: message {err:?} should mention {needle:?}"
        );
    }
    let after = (
        till.ok(&["sales", "--json"]),
        till.ok(&["stock", "--json"]),
        till.ok(&["product", "list", "--json"]),
    );
    assert_eq!(before, after, "rejected commands changed nothing");
    // The next sale still gets the next receipt number: no gap from the rejections.
    let next = till.json(&["sale", "--line", "MILK1L", "--tender", "cash"]);
    assert_eq!(next["receipt"], "T1-2");
}

#[test]
fn damaged_store_file_gets_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let till = setup(dir.path());
    till.ok(&["sale", "--line", "MILK1L", "--tender", "cash"]);
    let path = till.home.join("store.redb");
    let mut bytes = std::fs::read(&path).expect("read store");
    // Overwrite the file header: redb can no longer recognise the file.
    for b in bytes.iter_mut().take(64) {
        *b ^= 0x5a;
    }
    std::fs::write(&path, &bytes).expect("write store");
    let out = till.run(&["sales"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{err}");
    assert!(err.contains("damaged") && err.contains("restore"), "{err}");
}

const CATALOG_HEADER: &str = "sku,name,price,unit,tax_class,category,barcodes,active\n";

#[test]
fn product_import_is_all_or_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let till = setup(dir.path());
    let before = till.ok(&["product", "list", "--json"]);

    // A bad row refuses the file: every bad row is named, nothing is imported.
    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        format!(
            "{CATALOG_HEADER}TEA,Tea,2.50,each,standard,drinks,,true\n\
             BREAD,\"Bread, white\",1.80,each,reduced,bakery,4006381333932,true\n\
             CAKE,Cake,3.00,each,luxury,bakery,,true\n"
        ),
    )
    .expect("write");
    let out = till.run(&["product", "import", bad.to_str().expect("utf-8 path")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    for needle in [
        "2 rows of the file cannot be imported; nothing was imported",
        "line 3 (SKU BREAD): invalid barcode \"4006381333932\": wrong check digit",
        "line 4 (SKU CAKE): unknown tax class \"luxury\"",
    ] {
        assert!(err.contains(needle), "{err:?} should say {needle:?}");
    }
    assert_eq!(till.run(&["product", "show", "TEA"]).status.code(), Some(4));
    assert_eq!(till.ok(&["product", "list", "--json"]), before);

    // A name that says no format needs --format.
    let txt = dir.path().join("catalog.txt");
    std::fs::write(&txt, "[]").expect("write");
    let out = till.run(&["product", "import", txt.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--format"));

    // Through the daemon, with a path relative to the caller's directory.
    let work = dir.path().join("work");
    std::fs::create_dir(&work).expect("mkdir");
    std::fs::write(
        work.join("catalog.csv"),
        format!(
            "{CATALOG_HEADER}TEA,Tea,2.50,each,standard,drinks,,true\n\
             BREAD,\"Bread, white\",1.80,each,reduced,bakery,5901234123457,true\n\
             MILK1L,Milk 1 l,1.25,each,reduced,dairy,4006381333931,true\n"
        ),
    )
    .expect("write");
    let daemon = till.start(&[]);
    let out = till
        .cmd(&["product", "import", "catalog.csv"])
        .current_dir(&work)
        .output()
        .expect("run tillmesh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Imported 3 products (2 added, 1 updated, 0 unchanged) in one write\n"
    );
    let bread = till.json(&["product", "show", "BREAD"]);
    assert_eq!(bread["name"], "Bread, white");
    assert_eq!(bread["price_cents"], 180);
    assert_eq!(bread["barcodes"], serde_json::json!(["5901234123457"]));
    assert_eq!(till.price_cents("MILK1L"), 125);
    assert_eq!(till.json(&["product", "show", "TEA"])["category"], "drinks");

    // JSON with --format for a name that does not say it, and a JSON report.
    std::fs::write(
        work.join("more.txt"),
        r#"[{"sku": "JAM", "name": "Jam", "price_cents": 320, "unit": "each", "tax_class": "reduced"}]"#,
    )
    .expect("write");
    let report = till.json(&[
        "product",
        "import",
        &work.join("more.txt").display().to_string(),
        "--format",
        "json",
    ]);
    assert_eq!(
        report,
        serde_json::json!({"added": 1, "updated": 0, "unchanged": 0})
    );
    assert_eq!(till.price_cents("JAM"), 320);

    // From standard input: the daemon cannot read the caller's stdin, so the
    // command sends what it read with the request.
    let piped = |csv: &str| {
        use std::io::Write;
        let mut child = till
            .cmd(&["product", "import", "-", "--format", "csv"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run tillmesh");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(csv.as_bytes())
            .expect("write stdin");
        child.wait_with_output().expect("wait")
    };
    let out = piped(&format!(
        "{CATALOG_HEADER}SOAP,Soap,0.99,each,standard,household,,true\n"
    ));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(till.price_cents("SOAP"), 99);
    daemon.stop();
    // And with no daemon, the command reads it itself.
    let out = piped(&format!(
        "{CATALOG_HEADER}SOAP,Soap,1.09,each,standard,household,,true\n"
    ));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(till.price_cents("SOAP"), 109);
}

#[test]
fn stop_without_a_daemon_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let till = Till::new(dir.path(), "till-1");
    till.ok(&["init", "--store", "Quiet Shop", "--till", "T1"]);
    let out = till.run(&["stop"]);
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: no daemon is running for this till\n"
    );
}
