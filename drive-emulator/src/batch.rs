//! Batch requests (`POST /batch/drive/v3`, the discovery document's
//! `batchPath`): a `multipart/mixed` body whose parts are `application/http`
//! requests, answered by a `multipart/mixed` body of their responses in the
//! same order, each part's `Content-ID` echoed as `<response-ID>`.
//!
//! As on Drive, the outer request's headers (other than `Content-*`) apply to
//! every call unless the call sets the same header, a batch holds at most 100
//! calls, and media uploads and downloads are not taken.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State as Ext};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::drive::{boundary_of, part_head, split_parts};
use crate::state::{RequestRecord, google_error_at, random_id};
use crate::{Shared, drive, lock};

/// The most calls one batch may hold.
const MAX_CALLS: usize = 100;

fn bad_request(message: &str) -> Response {
    google_error_at(400, "badRequest", message, None)
}

/// `POST /batch/drive/v3`.
pub async fn batch(Ext(s): Ext<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !ct.starts_with("multipart/mixed") {
        return bad_request("A batch request needs Content-Type multipart/mixed.");
    }
    let Some(boundary) = boundary_of(ct) else {
        return bad_request("The batch body has no boundary.");
    };
    let parts = split_parts(&body, format!("--{boundary}").as_bytes());
    if parts.is_empty() {
        return bad_request("The batch body has no parts.");
    }
    if parts.len() > MAX_CALLS {
        return bad_request(&format!("A batch request holds at most {MAX_CALLS} calls."));
    }
    let out = format!("batch_{}", random_id(24));
    let mut answer = Vec::new();
    for part in parts {
        let Some((head, call)) = part_head(part) else {
            return bad_request("A batch part has no headers.");
        };
        let head = String::from_utf8_lossy(head);
        let content_id = head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-id")
                .then(|| v.trim().to_string())
        });
        let response = match parse_call(call, &headers) {
            Ok(c) => dispatch(&s, c).await,
            Err(e) => bad_request(&e),
        };
        answer
            .extend_from_slice(format!("--{out}\r\nContent-Type: application/http\r\n").as_bytes());
        if let Some(id) = content_id {
            let inner = id.trim_start_matches('<').trim_end_matches('>');
            answer.extend_from_slice(format!("Content-ID: <response-{inner}>\r\n").as_bytes());
        }
        answer.extend_from_slice(b"\r\n");
        answer.extend_from_slice(&serialize(response).await);
        answer.extend_from_slice(b"\r\n");
    }
    answer.extend_from_slice(format!("--{out}--\r\n").as_bytes());
    let mut r = (StatusCode::OK, answer).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("multipart/mixed; boundary={out}")) {
        r.headers_mut().insert("content-type", v);
    }
    r
}

/// One call of a batch.
struct Call {
    method: String,
    path: String,
    query: String,
    headers: HeaderMap,
    body: Bytes,
}

/// An `application/http` request: request line, headers, empty line, body.
/// The outer request's headers fill in those the call does not set.
fn parse_call(raw: &[u8], outer: &HeaderMap) -> Result<Call, String> {
    let eol = raw
        .iter()
        .position(|&b| b == b'\n')
        .ok_or("A batch part holds no request.")?;
    let line = String::from_utf8_lossy(&raw[..eol]);
    let mut words = line.split_whitespace();
    let (Some(method), Some(target)) = (words.next(), words.next()) else {
        return Err(format!("Invalid request line {:?}.", line.trim()));
    };
    let (head, body) = part_head(&raw[eol + 1..]).unwrap_or((&raw[eol + 1..], &[]));
    let mut headers = HeaderMap::new();
    for l in String::from_utf8_lossy(head).lines() {
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.trim().as_bytes()),
            HeaderValue::from_str(v.trim()),
        ) {
            headers.append(k, v);
        }
    }
    for (k, v) in outer {
        if !k.as_str().starts_with("content-") && !headers.contains_key(k) {
            headers.insert(k.clone(), v.clone());
        }
    }
    let mut body = body;
    if let Some(n) = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
    {
        body = &body[..n.min(body.len())];
    }
    // The target is a path, or a whole URL whose path is taken.
    let target = match target.split_once("://") {
        Some((_, rest)) => &rest[rest.find('/').unwrap_or(rest.len())..],
        None => target,
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Ok(Call {
        method: method.to_ascii_uppercase(),
        path: path.to_string(),
        query: query.to_string(),
        headers,
        body: Bytes::copy_from_slice(body),
    })
}

/// Run a call through the Drive method it names.
async fn dispatch(s: &Shared, c: Call) -> Response {
    let params: HashMap<String, String> = serde_urlencoded::from_str(&c.query).unwrap_or_default();
    lock(s).log.push(RequestRecord {
        method: c.method.clone(),
        path: c.path.clone(),
        query: serde_urlencoded::from_str(&c.query).unwrap_or_default(),
    });
    if params.get("alt").map(String::as_str) == Some("media") || c.path.starts_with("/upload/") {
        return bad_request("Media uploads and downloads are not supported in batch requests.");
    }
    let id = c
        .path
        .strip_prefix("/drive/v3/files/")
        .filter(|rest| !rest.is_empty() && !rest.contains('/'))
        .map(str::to_string);
    let st = Ext(s.clone());
    let (h, q) = (c.headers, Query(params));
    match (c.method.as_str(), c.path.as_str(), id) {
        ("GET", "/drive/v3/about", None) => drive::about(st, h, q).await,
        ("GET", "/drive/v3/files", None) => drive::list(st, h, q).await,
        ("POST", "/drive/v3/files", None) => drive::create(st, h, q, c.body).await,
        ("GET", _, Some(id)) => drive::get(st, h, Path(id), q).await,
        ("PATCH", _, Some(id)) => drive::update(st, h, Path(id), q, c.body).await,
        ("DELETE", _, Some(id)) => drive::delete(st, h, Path(id), q).await,
        _ => google_error_at(
            404,
            "notFound",
            &format!("No Drive method at {} {}.", c.method, c.path),
            None,
        ),
    }
}

/// A response as `application/http`: status line, headers, empty line, body.
async fn serialize(r: Response) -> Vec<u8> {
    let status = r.status();
    let headers = r.headers().clone();
    let body = axum::body::to_bytes(r.into_body(), crate::MAX_BODY)
        .await
        .unwrap_or_default();
    let mut out = format!(
        "HTTP/1.1 {} {}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    )
    .into_bytes();
    for (k, v) in &headers {
        if k != "content-length" {
            out.extend_from_slice(k.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(&body);
    out
}
