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

/// `--metrics-bind`: `/metrics` alone on another address for a store's
/// Prometheus, with a token of its own from a file, under any `Host`.
#[test]
fn metrics_are_served_on_the_lan_address_with_their_own_token_only() {
    let dir = tempfile::tempdir().expect("dir");
    let a = Till::new(dir.path(), "a");
    a.ok(&["init", "--store", "Scraped", "--till", "A"]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let bind = format!("127.0.0.1:{port}");
    let file = dir.path().join("metrics.token");
    std::fs::write(&file, "short\n").expect("token");
    let out = a.run(&[
        "run",
        "--no-mdns",
        "--metrics-bind",
        &bind,
        "--metrics-token-file",
        file.to_str().expect("path"),
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("at least 16 characters"),
        "{out:?}"
    );
    let token = "7f3a9c0e5b1d2f4a6c8e0b2d4f6a8c0e";
    std::fs::write(&file, format!("{token}\n")).expect("token");
    let da = a.start(&[
        "--metrics-bind",
        &bind,
        "--metrics-token-file",
        file.to_str().expect("path"),
    ]);
    // The LAN listener answers any Host (it is meant to be reached by name
    // or address from another machine), and only with its own token.
    let raw = {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: till-01.shop.lan:{port}\r\n\
             Authorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        )
        .expect("send");
        let mut raw = String::new();
        s.read_to_string(&mut raw).expect("read");
        raw
    };
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    assert!(raw.contains("tillmesh_tills 1"), "{raw}");
    let lan = Api {
        port,
        token: token.into(),
    };
    let api = Api::of(&a);
    let wrong = Api {
        port,
        token: api.token.clone(),
    };
    assert_eq!(
        wrong.get("/metrics").status,
        401,
        "the API's token is not the metrics token"
    );
    assert_eq!(
        lan.get("/v1/status").status,
        404,
        "nothing but /metrics there"
    );
    da.stop();
}
