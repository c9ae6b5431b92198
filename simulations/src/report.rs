//! What the simulations measure and print, computed one way for all of them.

use std::time::Duration;

use tillmesh_mesh::Node;

/// The `p` quantile (0.0 to 1.0) of `sorted`, by nearest rank. `sorted` must not
/// be empty.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Bytes `node`'s endpoint has sent, over IPv4, IPv6 and relays.
pub fn bytes_sent(node: &Node) -> u64 {
    let m = &node.endpoint().metrics().socket;
    m.send_ipv4.get() + m.send_ipv6.get() + m.send_relay.get()
}

/// `(flag, value)` pairs from the command line (`--flag value ...`); a flag
/// without a value is an error.
pub fn flags() -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let Some(v) = it.next() else {
            anyhow::bail!("{flag} needs a value");
        };
        out.push((flag, v));
    }
    Ok(out)
}

/// Logs on stderr at the level of `TILLMESH_LOG` (default warn), as the daemon
/// logs.
pub fn init_logs() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TILLMESH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
}
