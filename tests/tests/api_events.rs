//! The local API's event stream: a local sale, a sale from another till, a
//! backup and an alert each arrive as their event; a client that drops and
//! reconnects with `Last-Event-ID` misses nothing; `tillmesh events` prints it.

use crate::common;

use common::Till;
use common::http::Api;
use serde_json::json;

fn bread() -> serde_json::Value {
    json!({"lines": [{"sku": "BREAD", "qty": 1}], "tender": "cash"})
}

#[test]
fn events_arrive_and_a_reconnecting_client_misses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = Till::new(dir.path(), "till-1");
    a.ok(&["init", "--store", "Event Shop", "--till", "T1"]);
    a.ok(&[
        "product", "add", "BREAD", "--name", "Bread", "--price", "2.50",
    ]);
    let mut da = a.start(&[]);
    let b = Till::new(dir.path(), "till-2");
    b.join(&a, "T2");
    let _db = b.start(&[]);
    let api = Api::of(&a);
    let mut stream = api.events(None);

    // A sale here.
    let mine = api.sale("e-1", &bread()).json();
    let seen = stream.until("sale.recorded", |d| d["data"]["receipt"] == mine["receipt"]);
    let mut history: Vec<String> = seen.iter().map(|e| e.kind.clone()).collect();
    let last_id = seen.last().and_then(|e| e.id).expect("events have ids");

    // A sale on T2 arrives.
    let theirs = b.json(&["sale", "--line", "BREAD", "--tender", "card"]);
    let arrived = stream.until("sale.arrived", |d| {
        d["data"]["receipt"] == theirs["receipt"]
    });
    history.extend(arrived.iter().map(|e| e.kind.clone()));

    // A sync session, asked for now: it starts and finishes, with its path and
    // the bytes it moved.
    a.ok(&["sale", "--line", "BREAD", "--tender", "cash"]);
    let synced = stream.until("sync.finished", |d| {
        d["data"]["bytes_sent"].as_u64().unwrap_or(0) > 0
    });
    let finished = &synced.last().expect("finished").data["data"];
    assert!(
        finished["bytes_received"].as_u64().expect("bytes") > 0,
        "{finished}"
    );
    assert!(
        ["direct", "relay"].contains(&finished["path"].as_str().expect("path")),
        "{finished}"
    );
    assert!(finished["error"].is_null(), "{finished}");
    // (It may have started before the sale above was seen.)
    history.extend(synced.iter().map(|e| e.kind.clone()));
    assert!(
        history.iter().any(|k| k == "sync.started"),
        "a session that finished had started"
    );

    // A backup.
    let sink = dir.path().join("sink");
    std::fs::create_dir_all(&sink).expect("sink");
    let made = api.post("/v1/backups", &json!({"to": sink.to_str().expect("utf-8")}));
    assert_eq!(made.status, 200, "{}", String::from_utf8_lossy(&made.body));
    let backup = stream.until("backup.finished", |_| true);
    assert!(backup.iter().any(|e| e.kind == "backup.started"));
    // Its progress: documents read of the store's, the last step whole.
    let progress: Vec<_> = backup
        .iter()
        .filter(|e| e.kind == "backup.progress")
        .collect();
    let last = progress.last().expect("progress events");
    let d = &last.data["data"];
    assert!(d["total"].as_u64().expect("total") > 0, "{d}");
    assert_eq!(d["done"], d["total"], "{d}");
    // A backup asked for by a command through the daemon is a job too.
    let by_command = a.ok(&["backup", "--to", sink.to_str().expect("utf-8"), "--bundle"]);
    assert!(
        by_command.contains("bundle") || by_command.contains("Nothing new"),
        "{by_command}"
    );
    let job = stream.until("backup.finished", |_| true);
    let ended = job.last().expect("finished");
    let id = ended.data["data"]["job"].as_u64().expect("job id");
    let job = api.get(&format!("/v1/jobs/{id}")).json();
    assert_eq!(job["started_by"], "command", "{job}");
    assert_eq!(job["state"], "finished", "{job}");

    // An alert: the recovery key file damaged, then mended.
    let key = a.home.join("recovery.key");
    let good = std::fs::read(&key).expect("the admin till's recovery key");
    std::fs::write(&key, b"{not a key").expect("damage");
    let raised = stream.until("alert.raised", |d| {
        d["data"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("recovery.key"))
    });
    let raised = &raised.last().expect("raised").data["data"];
    assert_eq!(raised["kind"], "recovery_key");
    assert_eq!(raised["severity"], "critical");
    assert!(raised["since"].as_u64().is_some());
    // Raised once while it lasts.
    std::thread::sleep(std::time::Duration::from_secs(6));
    std::fs::write(&key, &good).expect("mend");
    let cleared = stream.until("alert.cleared", |d| d["data"]["id"] == raised["id"]);
    assert!(
        !cleared
            .iter()
            .any(|e| e.kind == "alert.raised" && e.data["data"]["id"] == raised["id"]),
        "raised again before it cleared"
    );

    // Drop the stream after the first sale's event; what came after it comes
    // again on reconnecting, in order, and then what is new.
    drop(stream);
    let later = api.sale("e-2", &bread()).json();
    let mut again = api.events(Some(last_id));
    let replay = again.until("sale.recorded", |d| {
        d["data"]["receipt"] == later["receipt"]
    });
    let kinds: Vec<&str> = replay.iter().map(|e| e.kind.as_str()).collect();
    for want in [
        "sale.arrived",
        "backup.started",
        "backup.finished",
        "alert.raised",
        "alert.cleared",
    ] {
        assert!(
            kinds.contains(&want),
            "{want} missing from the replay: {kinds:?}"
        );
    }
    assert!(
        !replay
            .iter()
            .any(|e| e.kind == "sale.recorded" && e.data["data"]["receipt"] == mine["receipt"]),
        "nothing before Last-Event-ID comes again"
    );
    let ids: Vec<u64> = replay.iter().filter_map(|e| e.id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids in order: {ids:?}");
    assert!(ids[0] > last_id);

    // An id this run never gave (an earlier run's): told to re-read.
    let mut stale = api.events(Some(1));
    assert_eq!(stale.next().kind, "reset");
    // And so does one it cannot have given yet.
    let mut future = api.events(Some(u64::MAX));
    assert_eq!(future.next().kind, "reset");

    // `tillmesh events` follows the same stream (from the first sale on, so
    // a sale made before it connected comes too).
    let sold = api.sale("e-3", &bread()).json();
    let mut follow = a
        .cmd(&["events", "--json", "--after", &last_id.to_string()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("tillmesh events");
    let out = follow.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in std::io::BufRead::lines(std::io::BufReader::new(out)) {
            let Ok(l) = l else { return };
            if tx.send(l).is_err() {
                return;
            }
        }
    });
    let mut found = false;
    while let Ok(l) = rx.recv_timeout(std::time::Duration::from_secs(60)) {
        let v: serde_json::Value = serde_json::from_str(&l).expect("a JSON line per event");
        assert!(v["id"].as_u64().is_some_and(|id| id > last_id), "{v}");
        if v["kind"] == "sale.recorded" && v["data"]["receipt"] == sold["receipt"] {
            found = true;
            break;
        }
    }
    let _ = follow.kill();
    let _ = follow.wait();
    assert!(found, "tillmesh events printed the sale");

    // A daemon with a client still following its events stops all the same.
    let mut open = api.events(None);
    a.ok(&["stop"]);
    common::wait_for("the daemon to stop with a stream open", || {
        da.child.try_wait().ok().flatten().is_some()
    });
    da.home = None;
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| open.next()));
}
