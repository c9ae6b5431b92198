//! Lengths and secrets from outside, through the real binary: a ticket read from
//! standard input or a file instead of the command line, the store file kept
//! private, and a huge file on a USB stick refused by name (its size and header
//! checked before it is read) while the rest of the stick is synced, with and
//! without the daemon.

use crate::common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::Till;

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

#[cfg(unix)]
#[test]
fn the_store_file_is_private_even_when_it_was_not() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let till = Till::new(dir.path(), "till-1");
    till.ok(&["init", "--store", "Private Shop", "--till", "T1"]);
    let store = till.home.join("store.redb");
    assert_eq!(mode(&store), 0o600);
    // A store made before: opened, it is made private.
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    till.ok(&["product", "list"]);
    assert_eq!(mode(&store), 0o600);
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn sales(t: &Till) -> usize {
    t.json(&["sales"]).as_array().expect("array").len()
}

/// `usb sync --json` output `r` refused the planted file alone, by name, and
/// took changes from the rest; gives why it refused it.
fn refused_only_the_huge_file(r: &serde_json::Value) -> String {
    let refused = r["refused"].as_array().expect("refused");
    assert_eq!(refused.len(), 1, "{r}");
    assert!(
        refused[0][0].as_str().expect("name").ends_with("huge.tmb"),
        "{r}"
    );
    assert!(r["imported_changes"].as_u64().expect("n") > 0, "{r}");
    refused[0][1].as_str().expect("why").to_string()
}

/// A file beside `bundle` with its header (naming the same store and till) but
/// announcing a 4 GiB body, and that long: sparse, nothing of it is written.
fn plant_huge(bundle: &Path) -> PathBuf {
    const BODY: u64 = 4 << 30;
    let bytes = std::fs::read(bundle).expect("bundle");
    let mut header = bytes[..84].to_vec();
    header[76..84].copy_from_slice(&BODY.to_le_bytes());
    let huge = bundle.with_file_name("huge.tmb");
    let mut f = std::fs::File::create(&huge).expect("create");
    f.write_all(&header).expect("header");
    f.set_len(84 + BODY + 64).expect("sparse");
    huge
}

#[test]
fn tickets_from_stdin_or_a_file_and_a_huge_file_on_the_stick_refused_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = Till::new(dir.path(), "a");
    a.ok(&["init", "--store", "Bounds Shop", "--till", "A"]);
    a.ok(&["product", "add", "TEA", "--name", "Tea", "--price", "2.00"]);
    let da = a.start(&[]);

    // B joins with the ticket on standard input, C with it in a file.
    let ticket = a.ok(&["invite"]);
    let b = Till::new(dir.path(), "b");
    let mut child = b
        .cmd(&["join", "-", "--till", "B", "--bind", "127.0.0.1:0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(ticket.as_bytes())
        .expect("ticket");
    let out = child.wait_with_output().expect("join");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Joined"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let c = Till::new(dir.path(), "c");
    let file = dir.path().join("ticket.txt");
    std::fs::write(&file, a.ok(&["invite"])).expect("ticket file");
    let arg = format!("@{}", file.display());
    let joined = c.ok(&["join", &arg, "--till", "C", "--bind", "127.0.0.1:0"]);
    assert!(joined.contains("Joined"), "{joined}");
    // No ticket where one is expected: a clear refusal.
    let d = Till::new(dir.path(), "d");
    let missing = d.run(&["join", "@/nonexistent/ticket", "--till", "D"]);
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("cannot read the ticket file"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
    let empty = d
        .cmd(&["join", "-", "--till", "D"])
        .stdin(Stdio::null())
        .output()
        .expect("join");
    assert!(!empty.status.success());
    assert!(
        String::from_utf8_lossy(&empty.stderr).contains("no ticket in standard input"),
        "{}",
        String::from_utf8_lossy(&empty.stderr)
    );
    // From here on the tills meet only through the stick.
    da.stop();

    // A sells and carries a stick; someone puts a 4 GiB file on it beside
    // A's bundle.
    for _ in 0..2 {
        a.ok(&["sale", "--line", "TEA", "--tender", "cash"]);
    }
    let stick = dir.path().join("stick");
    std::fs::create_dir(&stick).expect("stick");
    let s = stick.to_str().expect("path");
    a.ok(&["usb", "sync", s]);
    let bundle = files(&stick)
        .into_iter()
        .find(|p| p.to_string_lossy().contains("/bundles/"))
        .expect("A's bundle on the stick");
    plant_huge(&bundle);

    // B, without a daemon: the huge file is refused by name, A's bundle taken.
    let before = sales(&b);
    let r = b.json(&["usb", "sync", s]);
    let why = refused_only_the_huge_file(&r);
    assert!(why.contains("over the 1073741824-byte limit"), "{r}");
    assert_eq!(sales(&b), before + 2);
    let text = b.ok(&["usb", "sync", s]);
    assert!(text.contains("REFUSED  huge.tmb"), "{text}");

    // The same through B's daemon, with a new bundle of A's beside it.
    a.ok(&["sale", "--line", "TEA", "--tender", "cash"]);
    a.ok(&["usb", "sync", s]);
    let db = b.start(&[]);
    let r = b.json(&["usb", "sync", s]);
    refused_only_the_huge_file(&r);
    assert_eq!(sales(&b), before + 3);
    db.stop();
}
