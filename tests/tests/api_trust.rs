//! The local API trusts only its own daemon, and the daemon only its own callers:
//! after a `kill -9`, another program on the daemon's old port gets neither the
//! token nor a sale's arguments, and the command runs without the daemon; the TCP
//! listener refuses a request with a foreign `Host` or a wrong token on its
//! headers alone, before the body is read.

use crate::common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Till;

fn api(till: &Till) -> (u16, String) {
    let text = std::fs::read_to_string(till.home.join("api.json")).expect("api.json");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(v["version"], 1);
    (
        u16::try_from(v["port"].as_u64().expect("port")).expect("port"),
        v["token"].as_str().expect("token").to_string(),
    )
}

fn shop(root: &std::path::Path) -> Till {
    let till = Till::new(root, "till-1");
    till.ok(&["init", "--store", "Trust Shop", "--till", "T1"]);
    till.ok(&["product", "add", "TEA", "--name", "Tea", "--price", "2.00"]);
    till
}

#[test]
fn a_program_on_a_dead_daemons_port_gets_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let till = shop(dir.path());
    let mut daemon = till.start(&[]);
    let (port, token) = api(&till);
    assert!(till.home.join("api.sock").exists(), "the daemon's socket");
    daemon.child.kill().expect("kill -9");
    daemon.child.wait().expect("wait");
    daemon.home = None;
    assert!(
        till.home.join("api.json").exists(),
        "a daemon killed with -9 leaves its api.json behind"
    );

    // Someone else takes the old port and answers like a daemon would.
    let fake = TcpListener::bind(("127.0.0.1", port)).expect("the dead daemon's port is free");
    fake.set_nonblocking(true).expect("nonblocking");
    let heard = Arc::new(Mutex::new(Vec::new()));
    let done = Arc::new(AtomicBool::new(false));
    let server = {
        let (heard, done) = (heard.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                match fake.accept() {
                    Ok((mut s, _)) => {
                        s.set_nonblocking(false).expect("blocking");
                        s.set_read_timeout(Some(Duration::from_secs(2)))
                            .expect("timeout");
                        let mut buf = [0u8; 4096];
                        if let Ok(n) = s.read(&mut buf) {
                            heard.lock().expect("lock").extend_from_slice(&buf[..n]);
                        }
                        let body = r#"{"code":0,"stdout":"Sale FAKE-1\n","stderr":""}"#;
                        let _ = write!(
                            s,
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        );
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        })
    };

    let out = till.run(&["sale", "--line", "TEA", "--tender", "cash"]);
    done.store(true, Ordering::SeqCst);
    server.join().expect("fake server");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        !stdout.contains("FAKE"),
        "the fake's answer was taken: {stdout}"
    );
    let heard = heard.lock().expect("lock");
    assert!(
        heard.is_empty(),
        "the fake on the old port heard: {}",
        String::from_utf8_lossy(&heard)
    );
    assert!(!String::from_utf8_lossy(&heard).contains(&token));

    // The command ran without a daemon: the sale is in the store.
    let sales = till.json(&["sales"]);
    assert_eq!(sales.as_array().expect("array").len(), 1, "{sales}");
    assert!(
        !till.home.join("api.json").exists(),
        "the stale file is gone"
    );

    // A new daemon replaces the dead one's socket and serves commands on it;
    // a clean stop removes both files.
    let daemon = till.start(&[]);
    let sale = till.json(&["sale", "--line", "TEA", "--tender", "cash"]);
    assert_eq!(sale["receipt"], "T1-2");
    daemon.stop();
    assert!(!till.home.join("api.sock").exists());
    assert!(!till.home.join("api.json").exists());
}

/// Send the head of a request that announces a body, and no body: the status
/// the daemon answers with, which it can only give without waiting for the body.
fn status_without_body(port: u16, host: &str, token: &str) -> u16 {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    // A daemon that waited for the body would never answer: fail, not hang.
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    write!(
        s,
        "POST /v1/exec HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
    )
    .expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("no answer before the body ({e}): the daemon read the body first"),
        }
    }
    let head = String::from_utf8_lossy(&got);
    head.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {head}"))
}

#[test]
fn a_foreign_host_or_wrong_token_is_refused_before_the_body() {
    let dir = tempfile::tempdir().expect("tempdir");
    let till = shop(dir.path());
    let daemon = till.start(&[]);
    let (port, token) = api(&till);
    let wrong = "0".repeat(token.len());

    // DNS rebinding: a web page's request names its own host.
    assert_eq!(
        status_without_body(port, &format!("evil.example:{port}"), &token),
        421
    );
    assert_eq!(status_without_body(port, "127.0.0.1:1", &token), 421);
    assert_eq!(
        status_without_body(port, &format!("127.0.0.1:{port}"), &wrong),
        401
    );
    assert_eq!(
        status_without_body(port, &format!("localhost:{port}"), "x"),
        401
    );

    // The TCP listener still serves other local programs that hold the token.
    for host in [format!("127.0.0.1:{port}"), format!("[::1]:{port}")] {
        let body = r#"{"args":["product","list","--json"]}"#;
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        write!(
            s,
            "POST /v1/exec HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .expect("write");
        let mut reply = String::new();
        s.read_to_string(&mut reply).expect("read");
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        assert!(reply.contains("TEA"), "{reply}");
    }
    daemon.stop();
}
