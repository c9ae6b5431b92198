//! The command line's contract with scripts: usage errors, missing stores and
//! rejected input each exit with their documented code and a readable message.

use std::process::Command;

fn tillmesh(home: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tillmesh"))
        .args(args)
        .env("TILLMESH_HOME", home)
        .output()
        .expect("run tillmesh")
}

#[test]
fn exit_codes_and_messages() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("till");

    // No store yet: not found (4), and the message says what to do.
    let out = tillmesh(&home, &["sales"]);
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("tillmesh init"));

    // Usage error from the parser: 2.
    let out = tillmesh(&home, &["sale", "--tender", "cash"]);
    assert_eq!(out.status.code(), Some(2));

    let out = tillmesh(&home, &["init", "--store", "Shop", "--till", "T 1"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "a till name with a space is rejected"
    );
    assert!(
        !home.join("store.redb").exists(),
        "nothing is created on rejection"
    );

    let out = tillmesh(&home, &["init", "--store", "Shop", "--till", "T1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = tillmesh(&home, &["init", "--store", "Shop", "--till", "T1"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "init refuses to overwrite a till"
    );

    let out = tillmesh(
        &home,
        &["product", "add", "A", "--name", "A", "--price", "-1.00"],
    );
    assert_eq!(out.status.code(), Some(3));
    let out = tillmesh(&home, &["product", "set-price", "NOPE", "1.00"]);
    assert_eq!(out.status.code(), Some(4));

    // Garbage tickets are refused with a clear message, and nothing is created.
    let joiner = dir.path().join("joiner");
    for ticket in ["hello", "tillmesh1zz", "tillmesh10102"] {
        let out = tillmesh(&joiner, &["join", ticket, "--till", "T2"]);
        assert_eq!(out.status.code(), Some(3), "ticket {ticket:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("not a tillmesh ticket"));
        assert!(!joiner.exists(), "nothing created for ticket {ticket:?}");
    }
    // No daemon runs: stop says so, invite explains what it needs.
    let out = tillmesh(&home, &["stop"]);
    assert_eq!(out.status.code(), Some(4));
    let out = tillmesh(&home, &["invite"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("tillmesh run"));
}
