//! `tillmesh sale` whose reply is lost after the daemon recorded the sale (the
//! daemon took the request, then its answer never came): the command asks
//! again under the same idempotency key and the sale is recorded once.

use crate::common;

use std::io::Read;
use std::os::unix::net::UnixListener;

use common::Till;
use common::http::Api;

#[test]
fn a_sale_whose_reply_is_lost_is_recorded_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let till = Till::new(dir.path(), "till-1");
    till.ok(&["init", "--store", "Lost Reply Shop", "--till", "T1"]);
    till.ok(&["product", "add", "TEA", "--name", "Tea", "--price", "2.00"]);
    let _daemon = till.start(&[]);
    let api = Api::of(&till);
    // Between the command and the daemon: a socket that hands the request on
    // to the daemon, lets it record the sale, and hangs up without answering;
    // then puts the daemon's own socket back.
    let sock = till.home.join("api.sock");
    let real = till.home.join("api.sock.real");
    std::fs::rename(&sock, &real).expect("move the daemon's socket aside");
    let fake = UnixListener::bind(&sock).expect("bind");
    let relay = {
        let (sock, real) = (sock.clone(), real.clone());
        let api = api.clone();
        std::thread::spawn(move || {
            let (mut conn, _) = fake.accept().expect("the command connects");
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            // The whole request: head, then Content-Length bytes.
            loop {
                let n = conn.read(&mut buf).expect("read");
                req.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&req).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("Content-Length: ")?.parse().ok())
                        .expect("length");
                    if body.len() >= len {
                        break;
                    }
                }
            }
            let text = String::from_utf8(req).expect("utf-8");
            let (head, body) = text.split_once("\r\n\r\n").expect("head");
            let key = head
                .lines()
                .find_map(|l| l.strip_prefix("Idempotency-Key: "))
                .expect("the command sends an idempotency key")
                .to_string();
            assert!(head.starts_with("POST /v1/sales "), "{head}");
            let recorded = api.sale(&key, &serde_json::from_str(body).expect("JSON"));
            assert_eq!(recorded.status, 201, "the daemon recorded it");
            // The answer is lost.
            drop(conn);
            drop(fake);
            std::fs::remove_file(&sock).expect("remove the relay's socket");
            std::fs::rename(&real, &sock).expect("the daemon's socket back");
            recorded.json()
        })
    };
    let out = till.json(&["sale", "--line", "TEA:2", "--tender", "cash"]);
    let first = relay.join().expect("relay");
    assert_eq!(
        out["receipt"], first["receipt"],
        "the retry got the same sale"
    );
    assert_eq!(
        till.receipts(),
        vec![first["receipt"].as_str().expect("receipt")]
    );
}
