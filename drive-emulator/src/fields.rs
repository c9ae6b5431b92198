//! Resources as JSON (int64 fields as strings, as the discovery document
//! types them) and the `fields` partial-response masks.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::state::{APP_DATA, FOLDER_MIME, File};

/// `ms` since the epoch as RFC 3339 in UTC with milliseconds, as Drive writes times.
pub fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// Every field of `f` the emulator knows.
pub fn file_json(f: &File) -> Value {
    use md5::Digest as _;
    let mut v = json!({
        "kind": "drive#file",
        "id": f.id,
        "name": f.name,
        "mimeType": f.mime,
        "parents": if f.parents.is_empty() && f.app_data { vec![APP_DATA.to_string()] } else { f.parents.clone() },
        "spaces": [if f.app_data { "appDataFolder" } else { "drive" }],
        "createdTime": rfc3339(f.created_ms),
        "modifiedTime": rfc3339(f.modified_ms),
        "version": f.version.to_string(),
        "trashed": f.trashed,
        "explicitlyTrashed": f.trashed,
        "appProperties": f.app_properties,
        "capabilities": {"canDownload": true, "canDelete": true, "canTrash": true, "canEdit": true},
    });
    if f.mime != FOLDER_MIME {
        v["size"] = json!(f.content.len().to_string());
        v["quotaBytesUsed"] = json!(f.content.len().to_string());
        v["md5Checksum"] = json!(hex::encode(md5::Md5::digest(&f.content)));
        v["sha256Checksum"] = json!(hex::encode(sha2::Sha256::digest(&f.content)));
        v["headRevisionId"] = json!(format!("rev{}", f.version));
        if let Some((_, ext)) = f.name.rsplit_once('.') {
            v["fileExtension"] = json!(ext);
            v["fullFileExtension"] = json!(ext);
        }
        v["originalFilename"] = json!(f.name);
    } else {
        v["quotaBytesUsed"] = json!("0");
    }
    v
}

/// Fields of a File the emulator writes (the rest of the discovery
/// document's File is accepted in masks and simply absent).
pub const FILE_FIELDS: &[&str] = &[
    "kind",
    "id",
    "name",
    "mimeType",
    "description",
    "starred",
    "trashed",
    "explicitlyTrashed",
    "parents",
    "properties",
    "appProperties",
    "spaces",
    "version",
    "webContentLink",
    "webViewLink",
    "iconLink",
    "thumbnailLink",
    "viewedByMe",
    "createdTime",
    "modifiedTime",
    "modifiedByMeTime",
    "owners",
    "lastModifyingUser",
    "shared",
    "ownedByMe",
    "capabilities",
    "originalFilename",
    "fullFileExtension",
    "fileExtension",
    "md5Checksum",
    "sha1Checksum",
    "sha256Checksum",
    "size",
    "quotaBytesUsed",
    "headRevisionId",
    "driveId",
    "resourceKey",
];

/// A parsed `fields` mask: each name, with the mask of what is inside it
/// (`None`: all of it).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Mask(BTreeMap<String, Option<Mask>>);

/// Parse `a,b(c,d),e/f`.
pub fn parse_mask(s: &str) -> Result<Mask, String> {
    let chars: Vec<char> = s.chars().filter(|c| !c.is_whitespace()).collect();
    let mut at = 0;
    let m = mask_at(&chars, &mut at)?;
    if at != chars.len() {
        return Err(format!("unexpected ')' at {at}"));
    }
    Ok(m)
}

fn mask_at(chars: &[char], at: &mut usize) -> Result<Mask, String> {
    let mut m = Mask::default();
    loop {
        let start = *at;
        while *at < chars.len() && !matches!(chars[*at], ',' | '(' | ')') {
            *at += 1;
        }
        let name: String = chars[start..*at].iter().collect();
        if name.is_empty() {
            return Err("an empty field name".into());
        }
        let sub = if *at < chars.len() && chars[*at] == '(' {
            *at += 1;
            let inner = mask_at(chars, at)?;
            if *at >= chars.len() || chars[*at] != ')' {
                return Err("a '(' is not closed".into());
            }
            *at += 1;
            Some(inner)
        } else {
            None
        };
        // `a/b` is `a(b)`.
        let mut parts = name.split('/').rev();
        let last = parts.next().unwrap_or_default().to_string();
        let mut entry = (last, sub);
        for outer in parts {
            let mut inner = Mask::default();
            inner.0.insert(entry.0, entry.1);
            entry = (outer.to_string(), Some(inner));
        }
        m.0.insert(entry.0, entry.1);
        if *at < chars.len() && chars[*at] == ',' {
            *at += 1;
            continue;
        }
        return Ok(m);
    }
}

impl Mask {
    /// Check every name against the resource's fields (`list` names the
    /// fields of a list and of the items in its `files`/`changes`).
    pub fn check(&self, known: &[&str], items: Option<(&str, &[&str])>) -> Result<(), String> {
        for (name, sub) in &self.0 {
            if name == "*" {
                continue;
            }
            if let Some((list, item_fields)) = items
                && name == list
            {
                if let Some(sub) = sub {
                    sub.check(item_fields, None)?;
                }
                continue;
            }
            if !known.contains(&name.as_str()) {
                return Err(format!("Invalid field selection {name}"));
            }
        }
        Ok(())
    }

    /// `v` cut to the mask.
    pub fn apply(&self, v: &Value) -> Value {
        match v {
            Value::Array(items) => Value::Array(items.iter().map(|i| self.apply(i)).collect()),
            Value::Object(o) => {
                if self.0.contains_key("*") {
                    return v.clone();
                }
                let mut out = Map::new();
                for (name, sub) in &self.0 {
                    if let Some(x) = o.get(name) {
                        out.insert(
                            name.clone(),
                            match sub {
                                Some(sub) => sub.apply(x),
                                None => x.clone(),
                            },
                        );
                    }
                }
                Value::Object(out)
            }
            other => other.clone(),
        }
    }
}

/// A File's default fields when no mask is given.
pub fn default_file(v: &Value) -> Value {
    let m = parse_mask("kind,id,name,mimeType").unwrap_or_default();
    m.apply(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_in_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_764_288_000_123), "2025-11-28T00:00:00.123Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn masks_cut_nested_fields() {
        let v = json!({"nextPageToken": "t", "kind": "drive#fileList",
            "files": [{"id": "1", "name": "a", "size": "3"}, {"id": "2", "name": "b"}]});
        let m = parse_mask("nextPageToken,files(id,size)").expect("mask");
        assert_eq!(
            m.apply(&v),
            json!({"nextPageToken": "t", "files": [{"id": "1", "size": "3"}, {"id": "2"}]})
        );
        let m = parse_mask("storageQuota/limit,user(emailAddress)").expect("mask");
        assert_eq!(
            m.apply(&json!({"storageQuota": {"limit": "1", "usage": "0"}, "user": {"emailAddress": "e", "me": true}})),
            json!({"storageQuota": {"limit": "1"}, "user": {"emailAddress": "e"}})
        );
        assert!(parse_mask("files(id").is_err());
        assert!(parse_mask("a,,b").is_err());
        let m = parse_mask("files(id,bogus)").expect("mask");
        assert!(
            m.check(&["nextPageToken", "kind"], Some(("files", FILE_FIELDS)))
                .is_err()
        );
    }
}
