//! Drive v3: files (create, list, get, update, delete), uploads (media,
//! multipart, resumable) and about. Batches of these are in `batch.rs`.

use std::collections::{BTreeMap, HashMap};

use axum::body::Bytes;
use axum::extract::{Path, Query, State as Ext};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};

use crate::fields::{FILE_FIELDS, default_file, file_json, parse_mask};
use crate::state::{
    APP_DATA, FOLDER_MIME, FaultAction, File, Route, SCOPE_APPDATA, SCOPE_DRIVE, SCOPE_FILE,
    Session, State, google_error, google_error_at, now_ms, random_id,
};
use crate::{Shared, lock};

type Params = HashMap<String, String>;

/// Who is calling, from the access token.
#[derive(Debug, Clone)]
struct Caller {
    client: String,
    scopes: Vec<String>,
}

impl Caller {
    fn has(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
    fn may_see(&self, f: &File) -> bool {
        self.has(SCOPE_DRIVE)
            || (f.app_data && self.has(SCOPE_APPDATA))
            || (!f.app_data && self.has(SCOPE_FILE) && f.client == self.client)
    }
}

/// The caller behind the request's bearer token, or the 401 Drive gives.
fn caller(st: &State, headers: &HeaderMap, p: &Params) -> Result<Caller, Response> {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::to_string)
        .or_else(|| p.get("access_token").cloned());
    let Some(token) = token else {
        return Err(google_error_at(
            401,
            "required",
            "Login Required.",
            Some(("Authorization", "header")),
        ));
    };
    let invalid = || {
        google_error_at(
            401,
            "authError",
            "Invalid Credentials",
            Some(("Authorization", "header")),
        )
    };
    let access = st.access.get(&token).ok_or_else(invalid)?;
    if access.expires_ms <= now_ms() {
        return Err(invalid());
    }
    let grant = st.grants.get(&access.grant).ok_or_else(invalid)?;
    if grant.revoked {
        return Err(invalid());
    }
    Ok(Caller {
        client: grant.client.clone(),
        scopes: grant.scopes.clone(),
    })
}

/// The caller, after any injected fault for `route`.
fn enter(s: &Shared, headers: &HeaderMap, p: &Params, route: Route) -> Result<Caller, Response> {
    let mut st = lock(s);
    if let Some(r) = st.status_fault(route) {
        return Err(r);
    }
    caller(&st, headers, p)
}

fn not_found(id: &str) -> Response {
    google_error_at(
        404,
        "notFound",
        &format!("File not found: {id}."),
        Some(("fileId", "parameter")),
    )
}

fn bad_request(message: &str, location: &str) -> Response {
    google_error_at(400, "badRequest", message, Some((location, "parameter")))
}

/// A file as the request's `fields` asks for it.
fn shaped(f: &File, fields: Option<&String>) -> Result<Value, Response> {
    let v = file_json(f);
    match fields {
        None => Ok(default_file(&v)),
        Some(m) => {
            let mask = parse_mask(m).map_err(|e| bad_request(&e, "fields"))?;
            mask.check(FILE_FIELDS, None)
                .map_err(|e| bad_request(&e, "fields"))?;
            Ok(mask.apply(&v))
        }
    }
}

/// `GET /drive/v3/about`.
pub async fn about(Ext(s): Ext<Shared>, headers: HeaderMap, Query(p): Query<Params>) -> Response {
    if let Err(r) = enter(&s, &headers, &p, Route::About) {
        return r;
    }
    let Some(fields) = p.get("fields") else {
        return google_error_at(
            400,
            "required",
            "The 'fields' parameter is required for this method.",
            Some(("fields", "parameter")),
        );
    };
    let st = lock(&s);
    let mut quota = json!({
        "usage": st.usage().to_string(),
        "usageInDrive": st.usage().to_string(),
        "usageInDriveTrash": st.trash_usage().to_string(),
    });
    if let Some(limit) = st.options.quota {
        quota["limit"] = json!(limit.to_string());
    }
    let v = json!({
        "kind": "drive#about",
        "user": {"kind": "drive#user", "displayName": "Store account", "emailAddress": st.options.email,
                 "me": true, "permissionId": "00000000000000000001"},
        "storageQuota": quota,
        "maxUploadSize": "5242880000000",
        "appInstalled": true,
    });
    match parse_mask(fields) {
        Ok(m) => axum::Json(m.apply(&v)).into_response(),
        Err(e) => bad_request(&e, "fields"),
    }
}

/// `GET /drive/v3/files`.
pub async fn list(Ext(s): Ext<Shared>, headers: HeaderMap, Query(p): Query<Params>) -> Response {
    let who = match enter(&s, &headers, &p, Route::List) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let spaces: Vec<&str> = p
        .get("spaces")
        .map(|x| x.split(',').map(str::trim).collect())
        .unwrap_or_else(|| vec!["drive"]);
    for sp in &spaces {
        if !matches!(*sp, "drive" | "appDataFolder" | "photos") {
            return bad_request(&format!("Invalid Value: {sp}"), "spaces");
        }
    }
    if spaces.contains(&"appDataFolder") && !who.has(SCOPE_APPDATA) {
        return google_error(
            403,
            "insufficientScopes",
            "The granted scopes do not allow use of the Application Data folder.",
        );
    }
    let query = match p.get("q").map(|q| crate::query::parse(q)) {
        Some(Err(e)) => {
            return google_error_at(
                400,
                "invalid",
                &format!("Invalid Value: {e}"),
                Some(("q", "parameter")),
            );
        }
        Some(Ok(q)) => Some(q),
        None => None,
    };
    let page_size = match p.get("pageSize").map(|n| n.parse::<usize>()) {
        None => 100,
        Some(Ok(n)) if n >= 1 => n.min(1000),
        _ => return bad_request("Invalid value for pageSize", "pageSize"),
    };
    let offset = match p.get("pageToken") {
        None => 0,
        Some(t) => match base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(t)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| {
                s.strip_prefix("page:")
                    .and_then(|n| n.parse::<usize>().ok())
            }) {
            Some(n) => n,
            None => return bad_request("Invalid page token.", "pageToken"),
        },
    };
    let mask = match p.get("fields").map(|f| parse_mask(f)) {
        None => None,
        Some(Err(e)) => return bad_request(&e, "fields"),
        Some(Ok(m)) => match m.check(
            &["kind", "nextPageToken", "incompleteSearch"],
            Some(("files", FILE_FIELDS)),
        ) {
            Ok(()) => Some(m),
            Err(e) => return bad_request(&e, "fields"),
        },
    };
    let st = lock(&s);
    let mut hits: Vec<&File> = st
        .files
        .values()
        .filter(|f| who.may_see(f))
        .filter(|f| spaces.contains(&if f.app_data { "appDataFolder" } else { "drive" }))
        .filter(|f| query.as_ref().is_none_or(|q| q.matches(f)))
        .collect();
    if let Err(r) = order(&mut hits, p.get("orderBy")) {
        return r;
    }
    let page: Vec<Value> = hits
        .iter()
        .skip(offset)
        .take(page_size)
        .map(|f| file_json(f))
        .collect();
    let mut v = json!({"kind": "drive#fileList", "incompleteSearch": false});
    if offset + page_size < hits.len() {
        v["nextPageToken"] = json!(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(format!("page:{}", offset + page_size))
        );
    }
    v["files"] = match &mask {
        Some(_) => Value::Array(page),
        None => Value::Array(page.iter().map(default_file).collect()),
    };
    match mask {
        Some(m) => axum::Json(m.apply(&v)).into_response(),
        None => axum::Json(v).into_response(),
    }
}

fn order(hits: &mut [&File], order_by: Option<&String>) -> Result<(), Response> {
    let keys: Vec<(String, bool)> = match order_by {
        None => vec![("name".into(), false)],
        Some(o) => o
            .split(',')
            .map(|k| {
                let mut it = k.split_whitespace();
                let key = it.next().unwrap_or_default().to_string();
                let desc = it.next() == Some("desc");
                (key, desc)
            })
            .collect(),
    };
    for (k, _) in &keys {
        if !matches!(
            k.as_str(),
            "name" | "modifiedTime" | "createdTime" | "folder" | "name_natural"
        ) {
            return Err(bad_request(&format!("Invalid sort key {k}"), "orderBy"));
        }
    }
    hits.sort_by(|a, b| {
        for (k, desc) in &keys {
            let o = match k.as_str() {
                "modifiedTime" => a.modified_ms.cmp(&b.modified_ms),
                "createdTime" => a.created_ms.cmp(&b.created_ms),
                "folder" => (b.mime == FOLDER_MIME).cmp(&(a.mime == FOLDER_MIME)),
                _ => a.name.cmp(&b.name),
            };
            let o = if *desc { o.reverse() } else { o };
            if o.is_ne() {
                return o;
            }
        }
        a.id.cmp(&b.id)
    });
    Ok(())
}

/// Metadata a client may set on create or update.
const WRITABLE: &[&str] = &[
    "name",
    "mimeType",
    "parents",
    "appProperties",
    "properties",
    "description",
    "modifiedTime",
    "createdTime",
    "starred",
    "trashed",
    "originalFilename",
];

/// Where new metadata puts a file: its parents and whether it is app data.
fn placement(st: &State, who: &Caller, meta: &Value) -> Result<(Vec<String>, bool), Response> {
    let parents: Vec<String> = match meta.get("parents") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        Some(_) => return Err(bad_request("parents must be a list", "parents")),
    };
    if parents.len() > 1 {
        return Err(google_error(
            403,
            "cannotAddParent",
            "Increasing the number of parents is not allowed.",
        ));
    }
    match parents.first().map(String::as_str) {
        None => {
            if !who.has(SCOPE_FILE) && !who.has(SCOPE_DRIVE) {
                return Err(google_error(
                    403,
                    "insufficientScopes",
                    "Insufficient Permission",
                ));
            }
            Ok((Vec::new(), false))
        }
        Some(APP_DATA) => {
            if !who.has(SCOPE_APPDATA) {
                return Err(google_error(
                    403,
                    "insufficientScopes",
                    "The granted scopes do not allow use of the Application Data folder.",
                ));
            }
            Ok((Vec::new(), true))
        }
        Some(id) => match st.files.get(id) {
            Some(f) if who.may_see(f) && f.mime == FOLDER_MIME => Ok((parents.clone(), f.app_data)),
            Some(f) if who.may_see(f) => Err(bad_request("The parent is not a folder.", "parents")),
            _ => Err(not_found(id)),
        },
    }
}

fn check_meta(meta: &Value) -> Result<(), Response> {
    match meta {
        Value::Object(o) => {
            for k in o.keys() {
                if !WRITABLE.contains(&k.as_str()) {
                    return Err(google_error(
                        400,
                        "fieldNotWritable",
                        &format!(
                            "The resource body includes fields which are not directly writable: {k}"
                        ),
                    ));
                }
            }
            Ok(())
        }
        Value::Null => Ok(()),
        _ => Err(bad_request("The metadata must be a JSON object.", "body")),
    }
}

fn str_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// Make a new file from metadata and content.
fn new_file(
    st: &mut State,
    who: &Caller,
    meta: &Value,
    mime: Option<&str>,
    content: Vec<u8>,
) -> Result<File, Response> {
    check_meta(meta)?;
    let (parents, app_data) = placement(st, who, meta)?;
    check_quota(st, content.len() as u64, 0)?;
    let now = st.tick();
    let f = File {
        id: random_id(33),
        name: meta
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("Untitled")
            .to_string(),
        mime: meta
            .get("mimeType")
            .and_then(Value::as_str)
            .or(mime)
            .unwrap_or("application/octet-stream")
            .to_string(),
        parents,
        app_data,
        content,
        created_ms: now,
        modified_ms: now,
        version: 1,
        app_properties: str_map(meta.get("appProperties")),
        trashed: meta
            .get("trashed")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        client: who.client.clone(),
    };
    st.files.insert(f.id.clone(), f.clone());
    Ok(f)
}

fn check_quota(st: &State, adding: u64, freeing: u64) -> Result<(), Response> {
    if let Some(limit) = st.options.quota
        && st.usage().saturating_sub(freeing) + adding > limit
    {
        return Err(google_error(
            403,
            "storageQuotaExceeded",
            "The user's Drive storage quota has been exceeded.",
        ));
    }
    Ok(())
}

/// Apply metadata and optionally new content to an existing file.
fn change_file(
    st: &mut State,
    who: &Caller,
    id: &str,
    meta: &Value,
    p: &Params,
    content: Option<Vec<u8>>,
) -> Result<File, Response> {
    check_meta(meta)?;
    if meta.get("parents").is_some() {
        return Err(google_error(
            403,
            "fieldNotWritable",
            "The parents field is not directly writable in update requests. Use the addParents and removeParents parameters instead.",
        ));
    }
    let Some(old) = st.files.get(id).filter(|f| who.may_see(f)).cloned() else {
        return Err(not_found(id));
    };
    if let Some(c) = &content {
        check_quota(st, c.len() as u64, old.content.len() as u64)?;
    }
    let mut f = old;
    if let Some(add) = p.get("addParents") {
        for a in add.split(',') {
            match st.files.get(a) {
                Some(folder) if who.may_see(folder) && folder.mime == FOLDER_MIME => {}
                _ => return Err(not_found(a)),
            }
            if !f.parents.iter().any(|x| x == a) {
                f.parents.push(a.to_string());
            }
        }
    }
    if let Some(remove) = p.get("removeParents") {
        f.parents.retain(|x| !remove.split(',').any(|r| r == x));
    }
    if let Some(n) = meta.get("name").and_then(Value::as_str) {
        f.name = n.to_string();
    }
    if let Some(m) = meta.get("mimeType").and_then(Value::as_str) {
        f.mime = m.to_string();
    }
    if let Some(t) = meta.get("trashed").and_then(Value::as_bool) {
        f.trashed = t;
    }
    if let Some(Value::Object(props)) = meta.get("appProperties") {
        for (k, v) in props {
            match v.as_str() {
                Some(s) => {
                    f.app_properties.insert(k.clone(), s.to_string());
                }
                None => {
                    f.app_properties.remove(k);
                }
            }
        }
    }
    if let Some(c) = content {
        f.content = c;
    }
    f.modified_ms = st.tick();
    f.version += 1;
    st.files.insert(f.id.clone(), f.clone());
    Ok(f)
}

fn json_body(body: &[u8]) -> Result<Value, Response> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(body).map_err(|e| {
        google_error(
            400,
            "parseError",
            &format!("Invalid JSON payload received. {e}"),
        )
    })
}

/// `POST /drive/v3/files`: metadata only (a folder, say).
pub async fn create(
    Ext(s): Ext<Shared>,
    headers: HeaderMap,
    Query(p): Query<Params>,
    body: Bytes,
) -> Response {
    let who = match enter(&s, &headers, &p, Route::AnyDrive) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let meta = match json_body(&body) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let mut st = lock(&s);
    match new_file(&mut st, &who, &meta, None, Vec::new()) {
        Ok(f) => respond_file(&f, p.get("fields")),
        Err(r) => r,
    }
}

fn respond_file(f: &File, fields: Option<&String>) -> Response {
    match shaped(f, fields) {
        Ok(v) => axum::Json(v).into_response(),
        Err(r) => r,
    }
}

/// `GET /drive/v3/files/{id}`, metadata or (`alt=media`) content.
pub async fn get(
    Ext(s): Ext<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(p): Query<Params>,
) -> Response {
    let who = match enter(&s, &headers, &p, Route::Get) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let st = lock(&s);
    let f = if id == APP_DATA && who.has(SCOPE_APPDATA) {
        None
    } else {
        match st.files.get(&id).filter(|f| who.may_see(f)) {
            Some(f) => Some(f),
            None => return not_found(&id),
        }
    };
    let Some(f) = f else {
        // The app data folder itself.
        return axum::Json(json!({"kind": "drive#file", "id": "appDataFolderId", "name": "Application Data", "mimeType": FOLDER_MIME})).into_response();
    };
    if p.get("alt").map(String::as_str) != Some("media") {
        return respond_file(f, p.get("fields"));
    }
    if f.mime == FOLDER_MIME {
        return google_error(
            403,
            "fileNotDownloadable",
            "Only files with binary content can be downloaded.",
        );
    }
    download(&f.content, headers.get("range"))
}

fn download(content: &[u8], range: Option<&HeaderValue>) -> Response {
    let len = content.len() as u64;
    let Some(range) = range.and_then(|r| r.to_str().ok()) else {
        return (
            [("content-type", "application/octet-stream")],
            content.to_vec(),
        )
            .into_response();
    };
    let spec = range.strip_prefix("bytes=").unwrap_or("");
    let (a, b) = spec.split_once('-').unwrap_or(("", ""));
    let (start, end) = match (a.parse::<u64>().ok(), b.parse::<u64>().ok()) {
        (Some(a), Some(b)) => (a, b.min(len.saturating_sub(1))),
        (Some(a), None) if b.is_empty() => (a, len.saturating_sub(1)),
        (None, Some(n)) if a.is_empty() => (len.saturating_sub(n), len.saturating_sub(1)),
        _ => (1, 0),
    };
    if start >= len || start > end {
        let mut r = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
        if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
            r.headers_mut().insert("content-range", v);
        }
        return r;
    }
    let body = content[start as usize..=end as usize].to_vec();
    (
        StatusCode::PARTIAL_CONTENT,
        [
            ("content-type", "application/octet-stream".to_string()),
            ("content-range", format!("bytes {start}-{end}/{len}")),
        ],
        body,
    )
        .into_response()
}

/// `PATCH /drive/v3/files/{id}`: metadata.
pub async fn update(
    Ext(s): Ext<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(p): Query<Params>,
    body: Bytes,
) -> Response {
    let who = match enter(&s, &headers, &p, Route::AnyDrive) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let meta = match json_body(&body) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let mut st = lock(&s);
    match change_file(&mut st, &who, &id, &meta, &p, None) {
        Ok(f) => respond_file(&f, p.get("fields")),
        Err(r) => r,
    }
}

/// `DELETE /drive/v3/files/{id}`: gone at once, with what is inside.
pub async fn delete(
    Ext(s): Ext<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(p): Query<Params>,
) -> Response {
    let who = match enter(&s, &headers, &p, Route::Delete) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let mut st = lock(&s);
    if !st.files.get(&id).is_some_and(|f| who.may_see(f)) {
        return not_found(&id);
    }
    st.delete_tree(&id);
    StatusCode::NO_CONTENT.into_response()
}

/// The two parts of a `multipart/related` body: metadata and media.
fn multipart(headers: &HeaderMap, body: &[u8]) -> Result<(Value, String, Vec<u8>), Response> {
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !ct.starts_with("multipart/related") {
        return Err(bad_request(
            "Multipart uploads need Content-Type multipart/related.",
            "Content-Type",
        ));
    }
    let Some(boundary) = boundary_of(ct) else {
        return Err(bad_request(
            "The multipart body has no boundary.",
            "Content-Type",
        ));
    };
    let delim = format!("--{boundary}");
    let parts = split_parts(body, delim.as_bytes());
    if parts.len() != 2 {
        return Err(bad_request(
            "A multipart upload has exactly two parts.",
            "body",
        ));
    }
    let part = |raw: &[u8]| -> Result<(String, Vec<u8>), Response> {
        let (head, content) =
            part_head(raw).ok_or_else(|| bad_request("A part has no headers.", "body"))?;
        let head = String::from_utf8_lossy(head).to_lowercase();
        let ctype = head
            .lines()
            .find_map(|l| l.strip_prefix("content-type:"))
            .map(|v| v.trim().to_string())
            .unwrap_or_default();
        Ok((ctype, content.to_vec()))
    };
    let (meta_type, meta) = part(parts[0])?;
    if !meta_type.starts_with("application/json") {
        return Err(bad_request(
            "The first part must be the JSON metadata.",
            "body",
        ));
    }
    let (media_type, media) = part(parts[1])?;
    Ok((json_body(&meta)?, media_type, media))
}

/// The `boundary` parameter of a multipart `Content-Type`.
pub(crate) fn boundary_of(content_type: &str) -> Option<String> {
    content_type
        .split(';')
        .filter_map(|p| p.trim().strip_prefix("boundary="))
        .next()
        .map(|b| b.trim_matches('"').to_string())
}

/// A part's header lines and its content, split at the first empty line.
/// Lines end in CRLF or in a bare LF: Google's Python client writes its
/// multipart bodies with LF alone, and Drive takes both.
pub(crate) fn part_head(raw: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut at = 0;
    loop {
        let end = at + raw[at..].iter().position(|&b| b == b'\n')?;
        let line = &raw[at..end];
        if line.strip_suffix(b"\r").unwrap_or(line).is_empty() {
            return Some((&raw[..at], &raw[end + 1..]));
        }
        at = end + 1;
    }
}

/// The parts between `--boundary` lines (RFC 2046): a delimiter is a line of
/// its own (`--boundary`, optional white space, or `--boundary--` to close),
/// and the line break before it (CRLF or LF) belongs to it, not to the part.
pub(crate) fn split_parts<'a>(body: &'a [u8], delim: &[u8]) -> Vec<&'a [u8]> {
    // Where each delimiter starts, and where the part after it starts.
    let mut marks: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while i + delim.len() <= body.len() {
        let rest = &body[i + delim.len()..];
        let line_start = i == 0 || body[i - 1] == b'\n';
        if line_start && body[i..].starts_with(delim) {
            if rest.starts_with(b"--") {
                marks.push((i, body.len()));
                break;
            }
            let pad = rest
                .iter()
                .take_while(|&&c| c == b' ' || c == b'\t' || c == b'\r')
                .count();
            if rest.get(pad) == Some(&b'\n') {
                marks.push((i, i + delim.len() + pad + 1));
                i += delim.len() + pad + 1;
                continue;
            }
        }
        i += 1;
    }
    let mut parts = Vec::new();
    for w in marks.windows(2) {
        let part = &body[w[0].1..w[1].0];
        let part = part
            .strip_suffix(b"\r\n")
            .or_else(|| part.strip_suffix(b"\n"))
            .unwrap_or(part);
        parts.push(part);
    }
    // The last delimiter must close the body (`--boundary--`).
    match marks.last() {
        Some(&(_, end)) if end == body.len() => parts,
        _ => Vec::new(),
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `POST /upload/drive/v3/files?uploadType=media|multipart|resumable`.
pub async fn upload(
    Ext(s): Ext<Shared>,
    headers: HeaderMap,
    Query(p): Query<Params>,
    body: Bytes,
) -> Response {
    start_upload(s, headers, p, body, None)
}

/// `PATCH /upload/drive/v3/files/{id}?uploadType=...`: new content.
pub async fn upload_update(
    Ext(s): Ext<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(p): Query<Params>,
    body: Bytes,
) -> Response {
    start_upload(s, headers, p, body, Some(id))
}

fn start_upload(
    s: Shared,
    headers: HeaderMap,
    p: Params,
    body: Bytes,
    id: Option<String>,
) -> Response {
    let who = match enter(&s, &headers, &p, Route::Upload) {
        Ok(c) => c,
        Err(r) => return r,
    };
    lock(&s).stats.upload_bytes += body.len() as u64;
    let fields = p.get("fields");
    match p.get("uploadType").map(String::as_str) {
        Some("media") => {
            let mime = header(&headers, "content-type").map(str::to_string);
            let mut st = lock(&s);
            let made = match &id {
                Some(id) => change_file(&mut st, &who, id, &Value::Null, &p, Some(body.to_vec())),
                None => new_file(&mut st, &who, &Value::Null, mime.as_deref(), body.to_vec()),
            };
            st.stats.uploads += u64::from(made.is_ok());
            match made {
                Ok(f) => respond_file(&f, fields),
                Err(r) => r,
            }
        }
        Some("multipart") => {
            let (meta, mime, media) = match multipart(&headers, &body) {
                Ok(x) => x,
                Err(r) => return r,
            };
            let mut st = lock(&s);
            let made = match &id {
                Some(id) => change_file(&mut st, &who, id, &meta, &p, Some(media)),
                None => new_file(&mut st, &who, &meta, Some(&mime), media),
            };
            st.stats.uploads += u64::from(made.is_ok());
            match made {
                Ok(f) => respond_file(&f, fields),
                Err(r) => r,
            }
        }
        Some("resumable") => {
            let meta = match json_body(&body) {
                Ok(m) => m,
                Err(r) => return r,
            };
            if let Err(r) = check_meta(&meta) {
                return r;
            }
            let total = match header(&headers, "x-upload-content-length").map(str::parse::<u64>) {
                None => None,
                Some(Ok(n)) => Some(n),
                Some(Err(_)) => {
                    return bad_request(
                        "Invalid X-Upload-Content-Length.",
                        "X-Upload-Content-Length",
                    );
                }
            };
            let mut st = lock(&s);
            let app_data = match &id {
                Some(id) => match st.files.get(id).filter(|f| who.may_see(f)) {
                    Some(f) => f.app_data,
                    None => return not_found(id),
                },
                None => match placement(&st, &who, &meta) {
                    Ok((_, a)) => a,
                    Err(r) => return r,
                },
            };
            let upload_id = random_id(60);
            let mime = header(&headers, "x-upload-content-type")
                .or_else(|| meta.get("mimeType").and_then(Value::as_str))
                .unwrap_or("application/octet-stream")
                .to_string();
            st.sessions.insert(
                upload_id.clone(),
                Session {
                    file_id: id,
                    meta,
                    mime,
                    total,
                    received: Vec::new(),
                    fields: fields.cloned(),
                    client: who.client.clone(),
                    app_data,
                },
            );
            let mut location = format!(
                "{}/upload/drive/v3/files?uploadType=resumable&upload_id={upload_id}",
                st.url
            );
            if let Some(f) = fields {
                location.push_str("&fields=");
                location.push_str(&serde_urlencoded::to_string([("", f)]).unwrap_or_default()[1..]);
            }
            let mut r = StatusCode::OK.into_response();
            if let Ok(v) = HeaderValue::from_str(&location) {
                r.headers_mut().insert("location", v);
            }
            r
        }
        _ => bad_request("Invalid uploadType", "uploadType"),
    }
}

/// 256 KiB: every chunk but the last is a multiple of it.
const CHUNK_UNIT: u64 = 256 * 1024;

/// `PUT {session URI}`: a chunk, or (with no body) a status query.
pub async fn upload_chunk(
    Ext(s): Ext<Shared>,
    headers: HeaderMap,
    Query(p): Query<Params>,
    body: Bytes,
) -> Response {
    let Some(upload_id) = p.get("upload_id").cloned() else {
        return bad_request("Missing upload_id", "upload_id");
    };
    let mut st = lock(&s);
    // Byte faults wait for a request that carries bytes.
    let fault = st.take_fault_where(Route::UploadChunk, |a| {
        !body.is_empty() || matches!(a, FaultAction::Status(..))
    });
    if let Some(FaultAction::Status(code, reason)) = &fault {
        return crate::state::fault_response(*code, reason);
    }
    st.stats.upload_bytes += body.len() as u64;
    let Some(mut session) = st.sessions.get(&upload_id).cloned() else {
        return google_error(
            404,
            "notFound",
            "The upload session was not found or has expired.",
        );
    };
    // The session's token is its credential (as on Drive), but the grant
    // behind it must still stand.
    let range = header(&headers, "content-range").map(str::to_string);
    let (span, total) = match range.as_deref().map(parse_content_range) {
        None if body.is_empty() => (None, Some(0)),
        None => (Some((0, body.len() as u64 - 1)), Some(body.len() as u64)),
        Some(Ok(x)) => x,
        Some(Err(e)) => return bad_request(&e, "Content-Range"),
    };
    if let Some((a, b)) = span
        && b - a + 1 != body.len() as u64
    {
        return bad_request(
            "The body's length does not match Content-Range.",
            "Content-Range",
        );
    }
    let first = span.map(|(a, _)| a);
    if let Some(t) = total {
        if session.total.is_some_and(|known| known != t) {
            return bad_request(
                "The total size does not match the one given before.",
                "Content-Range",
            );
        }
        session.total = Some(t);
    }
    if let Some(first) = first {
        let have = session.received.len() as u64;
        if first > have {
            return bad_request(
                &format!("Expected a chunk from byte {have}."),
                "Content-Range",
            );
        }
        let last_chunk = session.total == Some(first + body.len() as u64);
        if !last_chunk && !(body.len() as u64).is_multiple_of(CHUNK_UNIT) {
            return bad_request("Chunk size must be a multiple of 256 KiB.", "Content-Range");
        }
        // Bytes already held are skipped.
        let skip = (have - first) as usize;
        let mut new = body.get(skip..).unwrap_or_default().to_vec();
        match fault {
            Some(FaultAction::DropAfter(n)) => {
                new.truncate(n.saturating_sub(skip));
                session.received.extend_from_slice(&new);
                st.sessions.insert(upload_id, session);
                drop(st);
                // The connection goes without an answer.
                std::panic::resume_unwind(Box::new("the emulator dropped the connection"));
            }
            Some(FaultAction::PersistOnly(n)) => new.truncate(n.saturating_sub(skip)),
            _ => {}
        }
        session.received.extend_from_slice(&new);
    }
    if session.total == Some(session.received.len() as u64) {
        return finish(&mut st, upload_id, session);
    }
    st.sessions.insert(upload_id, session.clone());
    let mut r = if header(&headers, "x-guploader-no-308") == Some("yes") {
        let mut r = StatusCode::OK.into_response();
        r.headers_mut().insert(
            "x-http-status-code-override",
            HeaderValue::from_static("308"),
        );
        r
    } else {
        StatusCode::PERMANENT_REDIRECT.into_response()
    };
    if !session.received.is_empty()
        && let Ok(v) = HeaderValue::from_str(&format!("bytes=0-{}", session.received.len() - 1))
    {
        r.headers_mut().insert("range", v);
    }
    r
}

/// The file of a complete session.
fn finish(st: &mut State, upload_id: String, session: Session) -> Response {
    st.sessions.remove(&upload_id);
    let who = Caller {
        client: session.client.clone(),
        scopes: vec![SCOPE_DRIVE.to_string()],
    };
    let made = match &session.file_id {
        Some(id) => change_file(
            st,
            &who,
            id,
            &session.meta,
            &Params::new(),
            Some(session.received),
        ),
        None => new_file(
            st,
            &who,
            &session.meta,
            Some(&session.mime),
            session.received,
        )
        .map(|mut f| {
            // Placed when the session began.
            f.app_data = session.app_data;
            if let Some(stored) = st.files.get_mut(&f.id) {
                stored.app_data = session.app_data;
            }
            f
        }),
    };
    st.stats.uploads += u64::from(made.is_ok());
    match made {
        Ok(f) => respond_file(&f, session.fields.as_ref()),
        Err(r) => r,
    }
}

/// The span of a chunk (first and last byte, if it carries bytes) and the
/// file's total size (if known).
type ChunkRange = (Option<(u64, u64)>, Option<u64>);

/// `bytes a-b/total`, `bytes a-b/*`, `bytes */total`, `bytes */*`.
fn parse_content_range(v: &str) -> Result<ChunkRange, String> {
    let bad = || format!("Invalid Content-Range {v:?}");
    let spec = v.strip_prefix("bytes ").ok_or_else(bad)?;
    let (span, total) = spec.split_once('/').ok_or_else(bad)?;
    let total = match total {
        "*" => None,
        t => Some(t.parse::<u64>().map_err(|_| bad())?),
    };
    let first = match span {
        "*" => None,
        s => {
            let (a, b) = s.split_once('-').ok_or_else(bad)?;
            let a = a.parse::<u64>().map_err(|_| bad())?;
            let b = b.parse::<u64>().map_err(|_| bad())?;
            if b < a || total.is_some_and(|t| b >= t) {
                return Err(bad());
            }
            Some((a, b))
        }
    };
    Ok((first, total))
}
