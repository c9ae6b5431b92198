//! The README's "run it" command works: `tillmesh demo` tours the whole
//! product (relay, Drive emulator, USB stick, webhook, split and conflict,
//! Drive and stick carry, a till restored), checks every claim it makes, and
//! stops everything cleanly; `--tills N` shows a larger store.

use crate::common;

fn demo(args: &[&str]) -> String {
    let out = std::process::Command::new(common::bin())
        .arg("demo")
        .args(args)
        .env_remove("TILLMESH_HOME")
        .output()
        .expect("run the demo");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "demo failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!stdout.contains("CLAIM FAILED"), "{stdout}");
    // Every claim it checked is reported as holding, and the tally says so.
    let held = stdout.matches("  ✓ holds: ").count();
    assert!(
        stdout.contains(&format!("All {held} claims held")),
        "{held} claims shown:\n{stdout}"
    );
    stdout
}

#[test]
fn the_demo_tours_the_product_checking_every_claim() {
    let stdout = demo(&[]);
    let held = stdout.matches("  ✓ holds: ").count();
    assert!(held >= 18, "{held} claims:\n{stdout}");
    for claim in [
        "through the relay",
        "carried by Drive",
        "carried by the stick",
        "the push is signed by the store",
        "the phone is told the alert cleared",
        "signed in to Google Drive with a device code",
        "T5 holds every sale",
        "no change held by one till alone",
    ] {
        assert!(stdout.contains(claim), "no claim of {claim:?}:\n{stdout}");
    }
    for name in ["T1", "T2", "T3", "T5", "relay"] {
        assert!(
            stdout.contains(&format!("stopped {name} (exit status: 0)")),
            "{name} did not stop cleanly:\n{stdout}"
        );
    }
    assert!(stdout.contains("stopped drive"), "{stdout}");
    assert!(stdout.contains("directory was removed"), "{stdout}");
}

#[test]
fn the_demo_shows_a_larger_store() {
    let stdout = demo(&["--tills", "6"]);
    assert!(
        stdout.contains("all 6 sales are on all 6 tills"),
        "{stdout}"
    );
    for i in 1..=6 {
        assert!(
            stdout.contains(&format!("stopped T{i:02} (exit status: 0)")),
            "T{i:02} did not stop cleanly:\n{stdout}"
        );
    }
    // Out of range: a clear error, before anything starts.
    let out = std::process::Command::new(common::bin())
        .args(["demo", "--tills", "2"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("5..=200"));
}
