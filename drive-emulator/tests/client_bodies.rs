//! Requests as Google's own client libraries write them, byte for byte, and
//! what the emulator makes of them (drive-emulator/google-client/check.py
//! runs the libraries themselves).

use std::io::{Read, Write};

use serde_json::Value;
use tillmesh_drive_emulator::{Emulator, Options};

const FILE_SCOPE: &str = "https://www.googleapis.com/auth/drive.file";

fn emulator() -> Emulator {
    Emulator::start(
        "127.0.0.1:0".parse().expect("addr"),
        Options {
            auto_approve: true,
            ..Options::default()
        },
    )
    .expect("emulator")
}

/// One HTTP/1.1 exchange with the emulator, the bytes exactly as given:
/// the status and the body.
fn http(
    e: &Emulator,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<u8>) {
    let host = e.url().trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(host).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .expect("timeout");
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).expect("send");
    s.write_all(body).expect("send");
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).expect("read");
    let split = reply
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head");
    let head = String::from_utf8_lossy(&reply[..split]).to_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    let mut rest = reply[split + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        let mut body = Vec::new();
        loop {
            let eol = rest.windows(2).position(|w| w == b"\r\n").expect("size");
            let n =
                usize::from_str_radix(std::str::from_utf8(&rest[..eol]).expect("hex").trim(), 16)
                    .expect("size");
            if n == 0 {
                break;
            }
            body.extend_from_slice(&rest[eol + 2..eol + 2 + n]);
            rest.drain(..eol + 2 + n + 2);
        }
        rest = body;
    }
    (status, rest)
}

fn json(body: &[u8]) -> Value {
    serde_json::from_slice(body).expect("json")
}

/// An access token from the device flow (approved at once).
fn token(e: &Emulator) -> String {
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let ask =
        serde_urlencoded::to_string([("client_id", "c"), ("scope", FILE_SCOPE)]).expect("form");
    let (_, code) = http(e, "POST", "/device/code", &form, ask.as_bytes());
    let code = json(&code);
    let device = code["device_code"].as_str().expect("device_code");
    let poll = serde_urlencoded::to_string([
        ("client_id", "c"),
        ("client_secret", "s"),
        ("device_code", device),
        ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
    ])
    .expect("form");
    let (_, tok) = http(e, "POST", "/token", &form, poll.as_bytes());
    let tok = json(&tok);
    format!(
        "Bearer {}",
        tok["access_token"].as_str().expect("access_token")
    )
}

/// POST a multipart upload; the answer's status and JSON.
fn multipart(e: &Emulator, bearer: &str, boundary: &str, body: &[u8]) -> (u16, Value) {
    let ctype = format!("multipart/related; boundary=\"{boundary}\"");
    let (status, answer) = http(
        e,
        "POST",
        "/upload/drive/v3/files?fields=id%2Cname%2Csize%2CmimeType&alt=json&uploadType=multipart",
        &[("Authorization", bearer), ("Content-Type", &ctype)],
        body,
    );
    (status, json(&answer))
}

fn content(e: &Emulator, bearer: &str, id: &str) -> Vec<u8> {
    let (status, body) = http(
        e,
        "GET",
        &format!("/drive/v3/files/{id}?alt=media"),
        &[("Authorization", bearer)],
        b"",
    );
    assert_eq!(status, 200);
    body
}

#[test]
fn multipart_bodies_with_bare_lf_line_breaks_as_the_python_client_writes_them() {
    let e = emulator();
    let bearer = token(&e);
    // google-api-python-client 2.202.0 (email.generator, LF line breaks):
    // the media ends in a line break of its own, and the LF before each
    // delimiter belongs to the delimiter.
    let b = "===============6120002665329356438==";
    let body = format!(
        "--{b}\nContent-Type: application/json\nMIME-Version: 1.0\n\n{{\"name\": \"a.txt\"}}\n\
         --{b}\nContent-Type: text/plain\nMIME-Version: 1.0\nContent-Transfer-Encoding: binary\n\n\
         hello\r\nworld\n\n--{b}--\n"
    );
    let (status, f) = multipart(&e, &bearer, b, body.as_bytes());
    assert_eq!(status, 200, "{f}");
    assert_eq!(f["name"], "a.txt");
    assert_eq!(f["mimeType"], "text/plain");
    assert_eq!(f["size"], "13");
    let id = f["id"].as_str().expect("id");
    assert_eq!(content(&e, &bearer, id), b"hello\r\nworld\n");

    // An empty media part.
    let body = format!(
        "--{b}\nContent-Type: application/json\nMIME-Version: 1.0\n\n{{\"name\": \"empty\"}}\n\
         --{b}\nContent-Type: text/plain\nMIME-Version: 1.0\nContent-Transfer-Encoding: binary\n\n\
         \n--{b}--\n"
    );
    let (status, f) = multipart(&e, &bearer, b, body.as_bytes());
    assert_eq!(status, 200, "{f}");
    assert_eq!(f["size"], "0");
}

#[test]
fn multipart_bodies_with_crlf_line_breaks_keep_their_bytes() {
    let e = emulator();
    let bearer = token(&e);
    let b = "foo_bar_baz";
    let mut body = format!(
        "--{b}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{{\"name\": \"b.bin\"}}\r\n\
         --{b}\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    // Binary media that begins and ends with line breaks.
    let media: Vec<u8> = b"\r\n\n--other\0\xff\r\n".to_vec();
    body.extend_from_slice(&media);
    body.extend_from_slice(format!("\r\n--{b}--").as_bytes());
    let (status, f) = multipart(&e, &bearer, b, &body);
    assert_eq!(status, 200, "{f}");
    let id = f["id"].as_str().expect("id");
    assert_eq!(content(&e, &bearer, id), media);

    // Without the closing delimiter the body is refused.
    let cut = &body[..body.len() - 2];
    let (status, f) = multipart(&e, &bearer, b, cut);
    assert_eq!(status, 400, "{f}");
    assert_eq!(f["error"]["errors"][0]["reason"], "badRequest");
}

#[test]
fn a_file_created_trashed_is_in_the_trash() {
    let e = emulator();
    let bearer = token(&e);
    let (status, f) = http(
        &e,
        "POST",
        "/drive/v3/files?fields=id%2Ctrashed",
        &[
            ("Authorization", &bearer),
            ("Content-Type", "application/json"),
        ],
        br#"{"name": "old", "trashed": true}"#,
    );
    assert_eq!(status, 200);
    assert_eq!(json(&f)["trashed"], true);
    let (_, listed) = http(
        &e,
        "GET",
        "/drive/v3/files?q=trashed%20%3D%20false",
        &[("Authorization", &bearer)],
        b"",
    );
    assert_eq!(json(&listed)["files"], serde_json::json!([]));
}

/// A file made through the JSON API: its id.
fn make(e: &Emulator, bearer: &str, name: &str) -> String {
    let (status, f) = http(
        e,
        "POST",
        "/drive/v3/files",
        &[
            ("Authorization", bearer),
            ("Content-Type", "application/json"),
        ],
        format!("{{\"name\": \"{name}\"}}").as_bytes(),
    );
    assert_eq!(status, 200);
    json(&f)["id"].as_str().expect("id").to_string()
}

/// The parts of a `multipart/mixed` batch answer: each part's Content-ID,
/// the inner status and the inner body.
fn batch_parts(content_type: &str, body: &[u8]) -> Vec<(String, u16, String)> {
    let boundary = content_type
        .split("boundary=")
        .nth(1)
        .expect("boundary")
        .trim_matches('"');
    let text = String::from_utf8_lossy(body).to_string();
    text.split(&format!("--{boundary}"))
        .skip(1)
        .filter(|p| !p.starts_with("--"))
        .map(|p| {
            let (head, inner) = p.split_once("\r\n\r\n").expect("part head");
            let id = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-ID: "))
                .unwrap_or_default()
                .to_string();
            let status = inner
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .expect("inner status");
            let (_, inner_body) = inner.split_once("\r\n\r\n").expect("inner head");
            (id, status, inner_body.trim_end().to_string())
        })
        .collect()
}

#[test]
fn a_batch_runs_each_call_and_answers_in_order() {
    let e = emulator();
    let bearer = token(&e);
    let a = make(&e, &bearer, "a");
    let b = make(&e, &bearer, "b");
    // As google-api-python-client 2.202.0 writes a batch (LF line breaks);
    // the second call has no Authorization of its own and takes the outer one.
    let k = "===============6097222791140814682==";
    let body = format!(
        "--{k}\nContent-Type: application/http\nMIME-Version: 1.0\nContent-Transfer-Encoding: binary\n\
         Content-ID: <8b5d77f9 + 1>\n\n\
         GET /drive/v3/files/{a}?fields=id%2Cname&alt=json HTTP/1.1\nContent-Type: application/json\n\
         MIME-Version: 1.0\naccept: application/json\nauthorization: {bearer}\nHost: x\n\n\n\
         --{k}\nContent-Type: application/http\nMIME-Version: 1.0\nContent-Transfer-Encoding: binary\n\
         Content-ID: <8b5d77f9 + 2>\n\n\
         PATCH /drive/v3/files/{b}?alt=json HTTP/1.1\nContent-Type: application/json\nMIME-Version: 1.0\n\
         Host: x\ncontent-length: 13\n\n{{\"name\": \"c\"}}\n\
         --{k}\nContent-Type: application/http\nContent-ID: <8b5d77f9 + 3>\n\n\
         DELETE /drive/v3/files/{a} HTTP/1.1\nauthorization: {bearer}\n\n\n\
         --{k}\nContent-Type: application/http\nContent-ID: <8b5d77f9 + 4>\n\n\
         GET /drive/v3/files/{a}?alt=json HTTP/1.1\nauthorization: {bearer}\n\n\n\
         --{k}--\n"
    );
    let ctype = format!("multipart/mixed; boundary=\"{k}\"");
    let host = e.url().trim_start_matches("http://").to_string();
    let mut s = std::net::TcpStream::connect(&host).expect("connect");
    write!(
        s,
        "POST /batch/drive/v3 HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\
         Authorization: {bearer}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).expect("read");
    let text = String::from_utf8_lossy(&reply).to_string();
    let (head, answer) = text.split_once("\r\n\r\n").expect("head");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let answer_type = head
        .lines()
        .find_map(|l| l.strip_prefix("content-type: "))
        .expect("content-type");
    assert!(answer_type.starts_with("multipart/mixed; boundary="));
    let parts = batch_parts(answer_type, answer.as_bytes());
    let ids: Vec<&str> = parts.iter().map(|p| p.0.as_str()).collect();
    assert_eq!(
        ids,
        [
            "<response-8b5d77f9 + 1>",
            "<response-8b5d77f9 + 2>",
            "<response-8b5d77f9 + 3>",
            "<response-8b5d77f9 + 4>"
        ]
    );
    let statuses: Vec<u16> = parts.iter().map(|p| p.1).collect();
    assert_eq!(statuses, [200, 200, 204, 404]);
    assert_eq!(json(parts[0].2.as_bytes())["name"], "a");
    assert_eq!(json(parts[1].2.as_bytes())["name"], "c");
    assert_eq!(parts[2].2, "");
    assert_eq!(
        json(parts[3].2.as_bytes())["error"]["errors"][0]["reason"],
        "notFound"
    );
}

#[test]
fn a_batch_of_more_than_100_calls_is_refused() {
    let e = emulator();
    let bearer = token(&e);
    let k = "b";
    let mut body = String::new();
    for i in 0..101 {
        body.push_str(&format!(
            "--{k}\r\nContent-Type: application/http\r\nContent-ID: <{i}>\r\n\r\n\
             GET /drive/v3/about?fields=user HTTP/1.1\r\n\r\n\r\n"
        ));
    }
    body.push_str(&format!("--{k}--\r\n"));
    let (status, answer) = http(
        &e,
        "POST",
        "/batch/drive/v3",
        &[
            ("Authorization", &bearer),
            ("Content-Type", "multipart/mixed; boundary=b"),
        ],
        body.as_bytes(),
    );
    assert_eq!(status, 400);
    assert_eq!(json(&answer)["error"]["errors"][0]["reason"], "badRequest");
}
