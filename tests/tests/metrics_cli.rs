//! `GET /metrics` on the local API, read by a Prometheus text-format parser,
//! with the values checked after known events on a two-till mesh.

use prometheus_parse::{Scrape, Value};

use crate::common::http::Api;
use crate::common::{Till, wait_for};

/// The page of `till`'s daemon, parsed.
fn scrape(till: &Till) -> Scrape {
    let reply = Api::of(till).get("/metrics");
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .content_type
            .starts_with("application/openmetrics-text"),
        "{}",
        reply.content_type
    );
    let text = String::from_utf8(reply.body).expect("utf-8");
    assert!(
        text.trim_end().ends_with("# EOF"),
        "an OpenMetrics page ends so"
    );
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("a Prometheus text page")
}

/// The value of the sample `name` whose labels include `labels`.
fn value(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    s.samples
        .iter()
        .find(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match x.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}

/// The sum of the samples `name` whose labels include `labels`.
fn sum(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    s.samples
        .iter()
        .filter(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match x.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

#[test]
fn metrics_count_what_happened() {
    let dir = tempfile::tempdir().expect("dir");
    let a = Till::new(dir.path(), "a");
    a.ok(&["init", "--store", "Metered", "--till", "A"]);
    a.ok(&["product", "add", "TEA", "--name", "Tea", "--price", "2.00"]);
    let da = a.start(&[]);
    let b = Till::new(dir.path(), "b");
    b.join(&a, "B");
    let db = b.start(&[]);
    let stick = dir.path().join("stick");
    std::fs::create_dir(&stick).expect("stick");
    a.ok(&[
        "sink",
        "add",
        "usb",
        "folder",
        stick.to_str().expect("utf8"),
    ]);

    let receipts: Vec<String> = (0..3)
        .map(|_| {
            a.json(&["sale", "--line", "TEA", "--tender", "cash"])["receipt"]
                .as_str()
                .expect("receipt")
                .to_string()
        })
        .collect();
    wait_for("A's sales on B", || {
        let held = b.receipts();
        receipts.iter().all(|r| held.contains(r))
    });
    wait_for("A to see B online", || {
        value(&scrape(&a), "tillmesh_till_online", &[("till", "B")]) == Some(1.0)
    });

    let sa = scrape(&a);
    assert_eq!(value(&sa, "tillmesh_sales_recorded_total", &[]), Some(3.0));
    assert_eq!(value(&sa, "tillmesh_tills", &[]), Some(2.0));
    assert_eq!(value(&sa, "tillmesh_tills_online", &[]), Some(2.0));
    assert_eq!(
        value(&sa, "tillmesh_backup_age_seconds", &[("sink", "usb")]),
        Some(-1.0),
        "no scheduled backup to the stick yet"
    );
    assert!(value(&sa, "tillmesh_store_bytes", &[]).is_some_and(|b| b > 0.0));
    assert!(
        sa.samples.iter().any(|x| x.metric.starts_with("iroh_")),
        "iroh's own counters are on the page"
    );

    let sb = scrape(&b);
    assert_eq!(value(&sb, "tillmesh_sales_recorded_total", &[]), Some(0.0));
    assert!(
        value(&sb, "tillmesh_sales_arrived_total", &[]).is_some_and(|n| n >= 3.0),
        "A's sales arrived on B"
    );
    let by_mesh = sum(&sb, "tillmesh_changes_received_total", &[]);
    let gossiped = value(&sb, "tillmesh_gossip_deliveries_total", &[]).unwrap_or(0.0);
    assert!(
        by_mesh + gossiped >= 3.0,
        "B counted the changes it received: {by_mesh} by sessions, {gossiped} by gossip"
    );
    assert!(
        sum(&sb, "tillmesh_sync_sessions_total", &[("outcome", "ok")]) >= 1.0,
        "B's sync sessions are counted"
    );

    // An alert: counted while it lasts.
    assert_eq!(
        value(&sa, "tillmesh_alerts_active", &[("severity", "critical")]),
        Some(0.0)
    );
    let key = a.home.join("recovery.key");
    let good = std::fs::read(&key).expect("recovery key");
    std::fs::write(&key, b"{damaged").expect("damage");
    assert_eq!(
        value(
            &scrape(&a),
            "tillmesh_alerts_active",
            &[("severity", "critical")]
        ),
        Some(1.0)
    );
    std::fs::write(&key, &good).expect("mend");

    // Without the token, nothing.
    let api = Api::of(&a);
    let anonymous = Api {
        token: "wrong".into(),
        ..api
    };
    assert_eq!(anonymous.get("/metrics").status, 401);
    db.stop();
    da.stop();
}
