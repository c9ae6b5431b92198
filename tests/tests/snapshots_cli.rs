//! What the command line prints, pinned: a session of a new store's first
//! commands and the error messages of common mistakes, each compared with its
//! snapshot in `tests/tests/snapshots/` (exit code, standard output, standard
//! error). What changes from run to run (ids, the home, times) is replaced by
//! placeholders first. After a deliberate change of wording, write the new
//! snapshots with `TILLMESH_UPDATE_SNAPSHOTS=1 cargo test -p tillmesh-e2e
//! --test e2e snapshots_cli` and review the diff.

use std::path::PathBuf;

use crate::common::Till;

fn snapshot_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots")
}

/// `text` with what differs between runs replaced: each of `known` (value,
/// placeholder), then every `YYYY-MM-DD HH:MM:SS` and `YYYY-MM-DD`.
fn redact(text: &str, known: &[(String, &str)]) -> String {
    let mut out = text.to_string();
    for (value, placeholder) in known {
        if !value.is_empty() {
            out = out.replace(value.as_str(), placeholder);
        }
    }
    let chars: Vec<char> = out.chars().collect();
    let mut redacted = String::with_capacity(out.len());
    let mut i = 0;
    let digits = |from: usize, n: usize| {
        (from..from + n).all(|j| chars.get(j).is_some_and(char::is_ascii_digit))
    };
    while i < chars.len() {
        let date = digits(i, 4)
            && chars.get(i + 4) == Some(&'-')
            && digits(i + 5, 2)
            && chars.get(i + 7) == Some(&'-')
            && digits(i + 8, 2);
        if date {
            let time = matches!(chars.get(i + 10), Some(' ' | 'T'))
                && digits(i + 11, 2)
                && chars.get(i + 13) == Some(&':')
                && digits(i + 14, 2)
                && chars.get(i + 16) == Some(&':')
                && digits(i + 17, 2);
            if time {
                redacted.push_str("[TIME]");
                i += 19;
            } else {
                redacted.push_str("[DAY]");
                i += 10;
            }
            continue;
        }
        redacted.push(chars[i]);
        i += 1;
    }
    redacted
}

/// Compare `text` with snapshot `name` (or write it, when asked to).
fn check(name: &str, text: &str) {
    let path = snapshot_dir().join(format!("{name}.txt"));
    if std::env::var_os("TILLMESH_UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(snapshot_dir()).expect("snapshot dir");
        std::fs::write(&path, text).expect("write snapshot");
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "no snapshot {}: write it with TILLMESH_UPDATE_SNAPSHOTS=1\n{text}",
            path.display()
        )
    });
    assert!(
        want == text,
        "the output of {name} changed (TILLMESH_UPDATE_SNAPSHOTS=1 writes the new one):\n--- snapshot\n{want}\n--- now\n{text}"
    );
}

/// Run `args` on `t`; the exit code and both streams, redacted.
fn shown(t: &Till, args: &[&str], known: &[(String, &str)]) -> String {
    let out = t.cmd(args).env("NO_COLOR", "1").output().expect("run");
    redact(
        &format!(
            "$ tillmesh {}\nexit {}\n--- stdout\n{}--- stderr\n{}",
            args.join(" "),
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        known,
    )
}

#[test]
fn a_new_stores_first_commands_print_what_they_did() {
    let dir = tempfile::tempdir().expect("dir");
    let t = Till::new(dir.path(), "t");
    let init = t.ok(&["init", "--store", "Snap Shop", "--till", "T1"]);
    let info = t.json(&["info"]);
    let store = info["store"].as_str().expect("store").to_string();
    let till = info["till_id"].as_str().expect("till").to_string();
    let known = vec![
        (dir.path().display().to_string(), "[DIR]"),
        (store.clone(), "[STORE]"),
        (store[..8].to_string(), "[STORE8]"),
        (till.clone(), "[TILL]"),
        (till[..10].to_string(), "[TILL10]"),
    ];
    let mut session = redact(&format!("$ tillmesh init ...\n{init}"), &known);
    for args in [
        &[
            "product",
            "add",
            "MILK1L",
            "--name",
            "Milk 1 l",
            "--price",
            "1.19",
            "--barcode",
            "4006381333931",
            "--tax-class",
            "reduced",
        ][..],
        &[
            "product", "add", "APPLES", "--name", "Apples", "--price", "2.40", "--unit", "kg",
        ],
        &["product", "list"],
        &["stock", "receive", "MILK1L", "48"],
        &["stock", "count", "APPLES", "20000g"],
        &[
            "sale",
            "--line",
            "4006381333931:2:-0.20",
            "--line",
            "APPLES:750g",
            "--tender",
            "card",
        ],
        &["void", "T1-1"],
        &["sales"],
        &["stock"],
        &["conflicts"],
        &["alerts", "threshold"],
        &["config", "set", "sync/interval_s", "2m"],
        &["config", "show"],
    ] {
        session.push_str(&shown(&t, args, &known));
    }
    check("first_commands", &session);
}

#[test]
fn mistakes_get_clear_errors() {
    let dir = tempfile::tempdir().expect("dir");
    let t = Till::new(dir.path(), "t");
    let known = vec![(dir.path().display().to_string(), "[DIR]")];
    // Before there is a store.
    let mut session = shown(&t, &["sales"], &known);
    t.ok(&["init", "--store", "Snap Shop", "--till", "T1"]);
    t.ok(&[
        "product", "add", "MILK1L", "--name", "Milk", "--price", "1.19",
    ]);
    for args in [
        &["init", "--store", "Again", "--till", "T9"][..],
        &[
            "product", "add", "MILK1L", "--name", "Milk", "--price", "1.19",
        ],
        &[
            "product",
            "add",
            "BAD",
            "--name",
            "Bad",
            "--price",
            "1.00",
            "--barcode",
            "4006381333932",
        ],
        &["product", "add", "NEG", "--name", "Neg", "--price", "-1"],
        &["sale", "--line", "NOPE", "--tender", "cash"],
        &["config", "set", "sync/batch", "0"],
        &["config", "set", "sync/speed", "9"],
        &["run", "--metrics-bind", "0.0.0.0:9470", "--check"],
        &["sale", "--line", "MILK1L:2", "--tender", "bitcoin"],
        &["sale", "--line", "MILK1L:750g", "--tender", "cash"],
        &["void", "T1-99"],
        &["sales", "--day", "2026-13-01"],
        &["revoke", "T7"],
        &["conflicts", "resolve", "0123456789abcdef", "--pick", "1"],
        &["join", "not-a-ticket", "--till", "T2"],
        &["stop"],
        &["dashboard"],
        &["alerts", "threshold", "coffee_min", "3"],
        &[
            "restore",
            "--from",
            "/nonexistent/stick",
            "--home",
            "/nonexistent/new",
        ],
    ] {
        session.push_str(&shown(&t, args, &known));
    }
    check("mistakes", &session);
}
