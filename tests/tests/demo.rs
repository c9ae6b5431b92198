//! The README's "run it" command works: `tillmesh demo` starts a relay and three
//! tills, spreads sales between them, and stops everything cleanly.

use crate::common;

#[test]
fn the_demo_runs_and_stops_cleanly() {
    let out = std::process::Command::new(common::bin())
        .arg("demo")
        .env_remove("TILLMESH_HOME")
        .output()
        .expect("run the demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("Every till holds all three sales"),
        "{stdout}"
    );
    for name in ["T1", "T2", "T3", "relay"] {
        assert!(
            stdout.contains(&format!("stopped {name} (exit status: 0)")),
            "{name} did not stop cleanly:\n{stdout}"
        );
    }
    assert!(
        stdout.contains("direct"),
        "status shows direct paths:\n{stdout}"
    );
}
