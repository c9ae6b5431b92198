//! Plain HTTP/1.1 to a daemon's local API over TCP, and a check of replies
//! against the schemas of its OpenAPI document (the subset of JSON Schema
//! the document uses).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;

use super::Till;

/// Where a daemon's API listens, and its token.
#[derive(Debug, Clone)]
pub struct Api {
    pub port: u16,
    pub token: String,
}

/// A reply.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "reply {} is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

impl Api {
    /// The API of `till`'s running daemon.
    pub fn of(till: &Till) -> Self {
        let text = std::fs::read_to_string(till.home.join("api.json")).expect("api.json");
        let v: Value = serde_json::from_str(&text).expect("json");
        Self {
            port: u16::try_from(v["port"].as_u64().expect("port")).expect("port"),
            token: v["token"].as_str().expect("token").to_string(),
        }
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to the API");
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        s
    }

    /// The request's bytes.
    pub fn request_bytes(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Vec<u8> {
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: Bearer {}\r\nConnection: close\r\n",
            self.port, self.token
        );
        if !body.is_empty() || method != "GET" {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            && !body.is_empty()
        {
            head.push_str("Content-Type: application/json\r\n");
        }
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(body);
        out
    }

    /// Send a request and read the whole reply.
    pub fn send(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        let mut s = self.connect();
        s.write_all(&self.request_bytes(method, path, headers, body))
            .expect("send");
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).expect("read the reply");
        parse(&raw)
    }

    pub fn get(&self, path: &str) -> Reply {
        self.send("GET", path, &[], b"")
    }

    pub fn post(&self, path: &str, body: &Value) -> Reply {
        self.send("POST", path, &[], body.to_string().as_bytes())
    }

    /// Ring up a sale with an idempotency key.
    pub fn sale(&self, key: &str, body: &Value) -> Reply {
        self.send(
            "POST",
            "/v1/sales",
            &[("Idempotency-Key", key)],
            body.to_string().as_bytes(),
        )
    }

    /// Send a request and hang up without reading the reply.
    pub fn send_and_drop(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) {
        let mut s = self.connect();
        s.write_all(&self.request_bytes(method, path, headers, body))
            .expect("send");
        s.shutdown(std::net::Shutdown::Both).expect("hang up");
    }

    /// Follow the event stream from after `last`.
    pub fn events(&self, last: Option<u64>) -> Events {
        let mut s = self.connect();
        let last = last.map(|l| l.to_string());
        let headers: Vec<(&str, &str)> = last
            .as_deref()
            .map(|l| vec![("Last-Event-ID", l)])
            .unwrap_or_default();
        s.write_all(&self.request_bytes("GET", "/v1/events", &headers, b""))
            .expect("send");
        let mut r = BufReader::new(s);
        let mut status = String::new();
        r.read_line(&mut status).expect("status line");
        assert!(status.contains(" 200 "), "{status}");
        loop {
            let mut line = String::new();
            r.read_line(&mut line).expect("header");
            if line.trim().is_empty() {
                break;
            }
        }
        Events { r }
    }
}

/// An SSE event.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: Option<u64>,
    pub kind: String,
    pub data: Value,
}

/// A followed event stream (chunked transfer, read line by line).
pub struct Events {
    r: BufReader<TcpStream>,
}

impl Events {
    /// The next event (keep-alive comments skipped).
    pub fn next(&mut self) -> Event {
        self.next_within(Duration::from_secs(60))
    }

    /// The next event; panics when none comes within `wait` (keep-alive
    /// comments come every 15 s, so the wait is checked at least that often).
    pub fn next_within(&mut self, wait: Duration) -> Event {
        let start = std::time::Instant::now();
        let (mut id, mut kind, mut data) = (None, String::from("message"), String::new());
        loop {
            assert!(start.elapsed() < wait, "no event came within {wait:?}");
            let mut line = String::new();
            let n = self.r.read_line(&mut line).expect("read the stream");
            assert!(n > 0, "the event stream ended");
            let line = line.trim_end_matches(['\r', '\n']);
            // Chunk sizes of the chunked encoding are lines of hex digits.
            if !line.is_empty()
                && line.chars().all(|c| c.is_ascii_hexdigit())
                && !line.contains(':')
            {
                continue;
            }
            if let Some(v) = line.strip_prefix("id:") {
                id = v.trim().parse().ok();
            } else if let Some(v) = line.strip_prefix("event:") {
                kind = v.trim().to_string();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.trim());
            } else if line.is_empty() && !data.is_empty() {
                return Event {
                    id,
                    kind,
                    data: serde_json::from_str(&data).expect("event data is JSON"),
                };
            }
        }
    }

    /// Events until one of `kind` for which `pick` holds; gives it and those before.
    /// Panics after 60 s (a hang, not a timing test).
    pub fn until(&mut self, kind: &str, pick: impl Fn(&Value) -> bool) -> Vec<Event> {
        let start = std::time::Instant::now();
        let mut seen = Vec::new();
        loop {
            let left = Duration::from_secs(60).saturating_sub(start.elapsed());
            let e =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.next_within(left)))
                    .unwrap_or_else(|_| {
                        panic!(
                            "no {kind} event came; saw {:?}",
                            seen.iter()
                                .map(|e: &Event| (&e.kind, &e.data))
                                .collect::<Vec<_>>()
                        )
                    });
            let done = e.kind == kind && pick(&e.data);
            seen.push(e);
            if done {
                return seen;
            }
        }
    }
}

fn parse(raw: &[u8]) -> Reply {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let header = |name: &str| {
        head.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_string())
            })
            .unwrap_or_default()
    };
    let mut body = raw[split + 4..].to_vec();
    if header("transfer-encoding").eq_ignore_ascii_case("chunked") {
        body = dechunk(&body);
    }
    Reply {
        status,
        content_type: header("content-type"),
        body,
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[eol + 2 + size + 2..];
    }
}

/// The OpenAPI document a daemon serves.
pub fn openapi(api: &Api) -> Value {
    let r = api.get("/v1/openapi.json");
    assert_eq!(r.status, 200);
    r.json()
}

/// Every (method, path) the document names.
pub fn operations(doc: &Value) -> Vec<(String, String)> {
    doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(p, ops)| {
            ops.as_object()
                .expect("operations")
                .keys()
                .map(move |m| (m.clone(), p.clone()))
        })
        .collect()
}

/// Resolve a `$ref`.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r.rsplit('/').next().expect("ref name");
            &doc["components"]["schemas"][name]
        }
        None => schema,
    }
}

/// Check `v` against `schema` (of document `doc`); gives what does not fit.
pub fn check(doc: &Value, schema: &Value, v: &Value, at: &str) -> Vec<String> {
    let schema = resolve(doc, schema);
    let mut errs = Vec::new();
    if let Some(t) = schema.get("type") {
        let types: Vec<&str> = match t {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let fits = types.iter().any(|t| match *t {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "integer" => v.is_i64() || v.is_u64(),
            "number" => v.is_number(),
            "boolean" => v.is_boolean(),
            "null" => v.is_null(),
            _ => false,
        });
        if !fits {
            errs.push(format!("{at}: {v} is not {types:?}"));
            return errs;
        }
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array)
        && !e.contains(v)
    {
        errs.push(format!("{at}: {v} is not one of {e:?}"));
    }
    if let Some(n) = v.as_i64() {
        if schema
            .get("minimum")
            .and_then(Value::as_i64)
            .is_some_and(|m| n < m)
        {
            errs.push(format!("{at}: {n} is below the minimum"));
        }
        if schema
            .get("maximum")
            .and_then(Value::as_i64)
            .is_some_and(|m| n > m)
        {
            errs.push(format!("{at}: {n} is above the maximum"));
        }
    }
    if let Some(o) = v.as_object() {
        let props = schema.get("properties").and_then(Value::as_object);
        for r in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let r = r.as_str().expect("required names");
            if !o.contains_key(r) {
                errs.push(format!("{at}: missing {r}"));
            }
        }
        for (k, val) in o {
            match props.and_then(|p| p.get(k)) {
                Some(s) => errs.extend(check(doc, s, val, &format!("{at}.{k}"))),
                None => match schema.get("additionalProperties") {
                    Some(Value::Bool(false)) => errs.push(format!("{at}: unexpected field {k}")),
                    Some(s @ Value::Object(_)) => {
                        errs.extend(check(doc, s, val, &format!("{at}.{k}")))
                    }
                    _ => {}
                },
            }
        }
    }
    if let (Some(a), Some(items)) = (v.as_array(), schema.get("items")) {
        for (i, item) in a.iter().enumerate() {
            errs.extend(check(doc, items, item, &format!("{at}[{i}]")));
        }
    }
    errs
}

/// The documented schema of the reply to `method` on the route `route` with
/// `status`; panics when the document does not name that reply.
pub fn reply_schema<'a>(doc: &'a Value, method: &str, route: &str, reply: &Reply) -> &'a Value {
    let op = &doc["paths"][route][method];
    let r = &op["responses"][reply.status.to_string()];
    assert!(
        !r.is_null(),
        "{method} {route} answered {} which the document does not name: {}",
        reply.status,
        String::from_utf8_lossy(&reply.body)
    );
    let media = reply
        .content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    let schema = &r["content"][media.as_str()]["schema"];
    assert!(
        !schema.is_null(),
        "{method} {route} {} came as {media}, which the document does not name",
        reply.status
    );
    schema
}

/// Assert that `reply` to `method route` is documented and fits its schema.
pub fn assert_documented(doc: &Value, method: &str, route: &str, reply: &Reply) {
    if reply.status == 204 && reply.body.is_empty() {
        let r = &doc["paths"][route][method]["responses"]["204"];
        assert!(
            !r.is_null(),
            "{method} {route} answered 204, which the document does not name"
        );
        return;
    }
    let schema = reply_schema(doc, method, route, reply);
    // Only JSON replies have a schema to check against (not the event
    // stream, the metrics page, the dashboard's files).
    let json = ["application/json", "application/problem+json"]
        .iter()
        .any(|t| reply.content_type.starts_with(t));
    if !json {
        return;
    }
    let errs = check(doc, schema, &reply.json(), "reply");
    assert!(
        errs.is_empty(),
        "{method} {route} {}: {errs:#?}\n{}",
        reply.status,
        String::from_utf8_lossy(&reply.body)
    );
}
