//! The Drive v3 discovery document (revision 20261106, as Google's Python
//! client ships it), and checks of requests and resources against it: what a
//! client sends and what the emulator answers are held to Google's own
//! description, not only to each other.

use serde_json::Value;

use crate::RequestRecord;

/// The document.
pub const DOCUMENT: &str = include_str!("../specs/drive-v3-discovery.json");

fn doc() -> Value {
    serde_json::from_str(DOCUMENT).unwrap_or(Value::Null)
}

/// The method a request calls (`files.list`, ...), with its description, or
/// `None` for a request outside the Drive API (OAuth, an upload session).
fn method_of<'a>(d: &'a Value, r: &RequestRecord) -> Option<(&'static str, &'a Value)> {
    let path = r.path.as_str();
    let id_path = |prefix: &str| {
        path.strip_prefix(prefix)
            .is_some_and(|rest| !rest.is_empty() && !rest.contains('/'))
    };
    let name = match (r.method.as_str(), path) {
        ("GET", "/drive/v3/files") => "files.list",
        ("POST", "/drive/v3/files" | "/upload/drive/v3/files") => "files.create",
        ("GET", "/drive/v3/about") => "about.get",
        ("GET", _) if id_path("/drive/v3/files/") => "files.get",
        ("PATCH", _) if id_path("/drive/v3/files/") || id_path("/upload/drive/v3/files/") => {
            "files.update"
        }
        ("DELETE", _) if id_path("/drive/v3/files/") => "files.delete",
        _ => return None,
    };
    let (resource, method) = name.split_once('.')?;
    Some((name, &d["resources"][resource]["methods"][method]))
}

/// What is wrong with `requests` by the document: a Drive request whose
/// method, path or query parameter the document does not have. Upload
/// session `PUT`s take `uploadType`, `upload_id` and `fields`; OAuth requests
/// are not Drive's and are skipped. Empty when all is well.
pub fn check_requests(requests: &[RequestRecord]) -> Vec<String> {
    let d = doc();
    let global = &d["parameters"];
    let mut problems = Vec::new();
    for r in requests {
        let drive = r.path.starts_with("/drive/") || r.path.starts_with("/upload/drive/");
        if !drive {
            continue;
        }
        if r.method == "PUT" && r.path == "/upload/drive/v3/files" {
            for (k, _) in &r.query {
                if !matches!(k.as_str(), "uploadType" | "upload_id" | "fields") {
                    problems.push(format!(
                        "PUT {}: parameter {k} is not part of an upload session",
                        r.path
                    ));
                }
            }
            continue;
        }
        let Some((name, m)) = method_of(&d, r) else {
            problems.push(format!("{} {}: no such Drive method", r.method, r.path));
            continue;
        };
        if m["httpMethod"].as_str() != Some(r.method.as_str()) {
            problems.push(format!(
                "{} {}: {name} is {}",
                r.method, r.path, m["httpMethod"]
            ));
        }
        if r.path.starts_with("/upload/") && m["mediaUpload"].is_null() {
            problems.push(format!("{} {}: {name} takes no upload", r.method, r.path));
        }
        for (k, v) in &r.query {
            let p = if m["parameters"][k].is_object() {
                &m["parameters"][k]
            } else {
                &global[k]
            };
            if !p.is_object() {
                problems.push(format!("{name}: unknown parameter {k}"));
                continue;
            }
            if let Some(choices) = p["enum"].as_array()
                && !choices.iter().any(|c| c.as_str() == Some(v.as_str()))
            {
                problems.push(format!("{name}: {k}={v} is not one of {choices:?}"));
            }
            if p["type"] == "integer" && v.parse::<i64>().is_err() {
                problems.push(format!("{name}: {k}={v} is not an integer"));
            }
        }
        for (k, p) in m["parameters"].as_object().into_iter().flatten() {
            if p["required"] == true
                && p["location"] == "query"
                && !r.query.iter().any(|(q, _)| q == k)
            {
                problems.push(format!("{name}: required parameter {k} missing"));
            }
        }
    }
    problems
}

/// What is wrong with `value`, a resource of schema `schema` (`File`,
/// `FileList`, `About`): fields the schema does not have, or of another type
/// (int64 fields must be strings). Empty when all is well.
pub fn check_resource(schema: &str, value: &Value) -> Vec<String> {
    let d = doc();
    let mut problems = Vec::new();
    check_against(&d, &d["schemas"][schema], value, schema, &mut problems);
    problems
}

fn check_against(d: &Value, schema: &Value, v: &Value, at: &str, problems: &mut Vec<String>) {
    let schema = match schema["$ref"].as_str() {
        Some(r) => &d["schemas"][r],
        None => schema,
    };
    let ty = schema["type"].as_str().unwrap_or("");
    let ok = match (ty, v) {
        ("string", Value::String(_)) | ("boolean", Value::Bool(_)) => true,
        ("integer", Value::Number(_)) => schema["format"] != "int64",
        ("array", Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                check_against(d, &schema["items"], item, &format!("{at}[{i}]"), problems);
            }
            true
        }
        ("object", Value::Object(o)) => {
            for (k, x) in o {
                let field = if schema["properties"][k].is_object() {
                    &schema["properties"][k]
                } else if schema["additionalProperties"].is_object() {
                    &schema["additionalProperties"]
                } else {
                    problems.push(format!("{at}.{k}: not in the schema"));
                    continue;
                };
                check_against(d, field, x, &format!("{at}.{k}"), problems);
            }
            true
        }
        ("any", _) => true,
        _ => false,
    };
    if !ok {
        problems.push(format!(
            "{at}: {v} is not of type {ty} ({})",
            schema["format"]
        ));
    }
}
