//! Alerts kept and pushed: a webhook receiver on loopback that fails the
//! first delivery gets it again, signed; `tillmesh alerts` shows each alert
//! raised, cleared and delivered, with the daemon and without it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::common::{Till, wait_for};

/// A POST the receiver took: its headers (lower-case names), its body, and
/// the status it answered.
#[derive(Debug, Clone)]
struct Post {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    answered: u16,
}

impl Post {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// An HTTP receiver on loopback answering 500 to its first POST and 200 to
/// the others; its URL and what it took.
fn receiver() -> (String, Arc<Mutex<Vec<Post>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let posts: Arc<Mutex<Vec<Post>>> = Arc::default();
    let taken = posts.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut headers = Vec::new();
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                    break;
                }
                if let Some((n, v)) = line.trim_end().split_once(':') {
                    headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
                }
            }
            let len = headers
                .iter()
                .find(|(n, _)| n == "content-length")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0; len];
            let _ = reader.read_exact(&mut body);
            let mut list = taken.lock().expect("lock");
            let answered = if list.is_empty() { 500 } else { 200 };
            list.push(Post {
                headers,
                body,
                answered,
            });
            drop(list);
            let reply = format!(
                "HTTP/1.1 {answered} {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                if answered == 200 { "OK" } else { "Oops" }
            );
            let _ = stream.write_all(reply.as_bytes());
        }
    });
    (url, posts)
}

fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The record of alert `kind` in `alerts --json [--all]`.
fn record(t: &Till, all: bool, kind: &str) -> Option<serde_json::Value> {
    let args: &[&str] = if all {
        &["alerts", "--all"]
    } else {
        &["alerts"]
    };
    t.json(args)
        .as_array()
        .expect("records")
        .iter()
        .find(|r| r["kind"] == kind)
        .cloned()
}

fn delivered(r: &serde_json::Value) -> bool {
    r["notices"]
        .as_array()
        .is_some_and(|n| !n.is_empty() && n.iter().all(|n| !n["delivered_ms"].is_null()))
}

#[test]
fn alerts_are_kept_and_pushed_to_a_webhook_until_it_takes_them() {
    let dir = tempfile::tempdir().expect("dir");
    let a = Till::new(dir.path(), "a");
    a.ok(&["init", "--store", "Alerting", "--till", "A"]);
    let (url, posts) = receiver();
    let secret = "0123456789abcdef-shared";
    // A secret too short is refused; a URL that is not one too.
    assert!(
        !a.run(&["alerts", "webhook", "add", &url, "--secret", "short"])
            .status
            .success()
    );
    assert!(
        !a.run(&["alerts", "webhook", "add", "not a url"])
            .status
            .success()
    );
    a.ok(&["alerts", "webhook", "add", &url, "--secret", secret]);
    // The rules' thresholds: defaults, set for the store, unknown refused.
    let minutes = |name: &str| {
        a.json(&["alerts", "threshold", name])[0]["minutes"]
            .as_u64()
            .expect("minutes")
    };
    assert_eq!(
        a.json(&["alerts", "threshold"]).as_array().map(Vec::len),
        Some(4)
    );
    assert_eq!(minutes("till_offline_min"), 5);
    a.ok(&["alerts", "threshold", "till_offline_min", "12"]);
    assert_eq!(minutes("till_offline_min"), 12);
    assert_eq!(minutes("unreplicated_min"), 15);
    let unknown = a.run(&["alerts", "threshold", "coffee_min", "3"]);
    assert_eq!(unknown.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("till_offline_min"));
    assert_eq!(a.json(&["alerts", "webhook", "list"])[0], url.as_str());

    let d = a.start(&[]);
    // The recovery key damaged: a critical alert, pushed.
    let key = a.home.join("recovery.key");
    let good = std::fs::read(&key).expect("the admin till's recovery key");
    std::fs::write(&key, b"{not a key").expect("damage");
    wait_for("the raise to be delivered", || {
        record(&a, false, "recovery_key").is_some_and(|r| delivered(&r))
    });
    let raises: Vec<Post> = posts
        .lock()
        .expect("lock")
        .iter()
        .filter(|p| p.json()["alert"]["kind"] == "recovery_key")
        .cloned()
        .collect();
    assert!(raises.len() >= 2, "refused once, then taken: {raises:?}");
    assert_eq!(raises[0].answered, 500);
    assert_eq!(raises.last().expect("last").answered, 200);
    for p in &raises {
        assert_eq!(
            p.header("x-tillmesh-signature"),
            Some(signature(secret, &p.body).as_str()),
            "signed with the shared secret"
        );
        let body = p.json();
        assert_eq!(body["event"], "alert.raised");
        assert_eq!(body["alert"]["severity"], "critical");
        assert_eq!(body["till"], "A");
        assert!(
            body["text"]
                .as_str()
                .is_some_and(|t| t.contains("recovery.key"))
        );
    }
    // The retry is the same delivery, not a second alert.
    assert_eq!(raises[0].json()["delivery"], raises[1].json()["delivery"]);
    let shown = a.ok(&["alerts"]);
    assert!(
        shown.contains("recovery_key") && shown.contains("delivered"),
        "{shown}"
    );

    // Mended: cleared once, and that is pushed too.
    std::fs::write(&key, &good).expect("mend");
    wait_for("the clear to be delivered", || {
        record(&a, true, "recovery_key")
            .is_some_and(|r| !r["cleared_ms"].is_null() && delivered(&r))
    });
    assert!(
        record(&a, false, "recovery_key").is_none(),
        "no longer active"
    );
    let clears = posts
        .lock()
        .expect("lock")
        .iter()
        .filter(|p| {
            p.json()["event"] == "alert.cleared" && p.json()["alert"]["kind"] == "recovery_key"
        })
        .count();
    assert_eq!(clears, 1);

    // A restart raises nothing again that was already pushed.
    let before = posts.lock().expect("lock").len();
    d.stop();
    let stopped = a.ok(&["alerts"]);
    assert!(stopped.contains("none is pushed"), "{stopped}");
    let d = a.start(&[]);
    std::thread::sleep(std::time::Duration::from_secs(7));
    let again: Vec<serde_json::Value> = posts.lock().expect("lock")[before..]
        .iter()
        .map(Post::json)
        .collect();
    assert!(
        again.iter().all(|b| b["alert"]["kind"] != "recovery_key"),
        "{again:?}"
    );
    a.ok(&["alerts", "webhook", "remove", &url]);
    assert_eq!(
        a.run(&["alerts", "webhook", "remove", &url]).status.code(),
        Some(4)
    );
    d.stop();
}

/// A revoked till that tries to connect is alerted on the till that refused
/// it, naming it, and cleared once it has not tried within `refusals_min`.
#[test]
fn a_revoked_till_still_trying_is_alerted_and_cleared() {
    let dir = tempfile::tempdir().expect("dir");
    let a = Till::new(dir.path(), "a");
    a.ok(&["init", "--store", "Revoking", "--till", "A"]);
    let da = a.start(&[]);
    let b = Till::new(dir.path(), "b");
    b.join(&a, "B");
    // B is off when it is revoked, so it does not know, and tries again when
    // it starts.
    a.ok(&["revoke", "B"]);
    assert!(record(&a, false, "revoked_till_trying").is_none());
    a.ok(&["alerts", "threshold", "refusals_min", "1"]);
    let db = b.start(&[]);
    wait_for("A to alert that revoked B tried to connect", || {
        record(&a, false, "revoked_till_trying").is_some()
    });
    let r = record(&a, false, "revoked_till_trying").expect("record");
    assert_eq!(r["subject"], "B", "{r}");
    wait_for("B to learn it was revoked", || {
        !b.json(&["status"])["self"]["revoked"].is_null()
    });
    db.stop();
    // A minute after its last try, the alert clears (and stays in the history).
    let start = std::time::Instant::now();
    while record(&a, false, "revoked_till_trying").is_some() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(120),
            "the alert did not clear"
        );
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
    let kept = record(&a, true, "revoked_till_trying").expect("in the history");
    assert!(!kept["cleared_ms"].is_null(), "{kept}");
    da.stop();
}
