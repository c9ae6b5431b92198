//! What an operator looks at, for a store of many tills: `tillmesh status`
//! (without the daemon and through it), `GET /v1/status` and `GET /metrics`
//! on the local API, and the dashboard's first render in a real headless
//! chromium, all with `--tills` members (1,000 by default).
//!
//! ```text
//! cargo build --release -p tillmesh -p tillmesh-sim
//! target/release/operator-bench [--tills 1000] [--runs 20] [--bin target/release/tillmesh]
//! ```
//! Prints a Markdown report; docs/PERFORMANCE.md holds the numbers of record.
//! The dashboard's row is left out when chromium and chromedriver are not
//! installed.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use tillmesh_sim::report::flags;
use tillmesh_sim::run_tillmesh as tillmesh;
use tillmesh_store::{Role, Store, StoreOptions, TillKey};

/// `GET path` on the API: the body.
fn get(port: u16, token: &str, path: &str) -> Result<Vec<u8>> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )?;
    let mut reply = Vec::new();
    s.read_to_end(&mut reply)?;
    let split = reply
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no reply head")?;
    ensure!(
        reply.starts_with(b"HTTP/1.1 200"),
        "{path}: {}",
        String::from_utf8_lossy(&reply[..split])
    );
    Ok(reply[split + 4..].to_vec())
}

fn time(runs: usize, mut f: impl FnMut() -> Result<usize>) -> Result<(Vec<Duration>, usize)> {
    let mut times = Vec::with_capacity(runs);
    let mut size = 0;
    for _ in 0..runs {
        let t = Instant::now();
        size = f()?;
        times.push(t.elapsed());
    }
    Ok((times, size))
}

fn row(what: &str, mut times: Vec<Duration>, bytes: usize) -> String {
    times.sort();
    let pct = |p: f64| times[((times.len() - 1) as f64 * p) as usize];
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
    format!(
        "| {what} | {} | {} | {} | {} |",
        times.len(),
        ms(pct(0.5)),
        ms(*times.last().expect("times")),
        bytes
    )
}

fn main() -> Result<()> {
    let (mut tills, mut runs, mut bin) =
        (1000usize, 20usize, PathBuf::from("target/release/tillmesh"));
    for (flag, v) in flags()? {
        match flag.as_str() {
            "--tills" => tills = v.parse()?,
            "--runs" => runs = v.parse()?,
            "--bin" => bin = v.into(),
            _ => anyhow::bail!("unknown flag {flag}"),
        }
    }
    let dir = tempfile::tempdir()?;
    let home = dir.path().join("till");
    tillmesh(
        &bin,
        &home,
        &["init", "--store", "Big Shop", "--till", "T0000"],
    )?;
    // The other tills, certified by the admin straight into the store.
    {
        let key = TillKey::load(&home.join("till.key"))?;
        let admin = TillKey::load(&home.join("admin.key"))?;
        let mut store = Store::open(&home.join("store.redb"), key, StoreOptions::default())?;
        for i in 1..tills {
            let name = format!("T{i:04}").parse()?;
            store.certify(&admin, TillKey::generate().till_id(), &name, Role::Till)?;
        }
    }
    let mut out = vec![
        format!("{tills} tills, {runs} runs each"),
        String::new(),
        "| what | runs | median | slowest | bytes |".to_string(),
        "|---|---:|---:|---:|---:|".to_string(),
    ];
    let (t, n) = time(runs, || {
        Ok(tillmesh(&bin, &home, &["status", "--json"])?.len())
    })?;
    out.push(row(
        "`tillmesh status --json`, no daemon (a process each)",
        t,
        n,
    ));
    let (t, n) = time(runs, || Ok(tillmesh(&bin, &home, &["status"])?.len()))?;
    out.push(row("`tillmesh status`, no daemon", t, n));

    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let port_arg = port.to_string();
    let tillmesh_sim::Daemon {
        child: mut daemon,
        token,
        ..
    } = tillmesh_sim::start_daemon(
        &bin,
        &home,
        &[
            "--no-mdns",
            "--bind",
            "127.0.0.1:0",
            "--api-port",
            &port_arg,
        ],
    )?;
    let result = (|| -> Result<()> {
        let (t, n) = time(runs, || {
            Ok(tillmesh(&bin, &home, &["status", "--json"])?.len())
        })?;
        out.push(row("`tillmesh status --json` through the daemon", t, n));
        let (t, n) = time(runs, || Ok(get(port, &token, "/v1/status")?.len()))?;
        out.push(row("`GET /v1/status`", t, n));
        let (t, n) = time(runs, || Ok(get(port, &token, "/metrics")?.len()))?;
        out.push(row("`GET /metrics`", t, n));
        match tillmesh_sim::browser::Browser::start() {
            None => out.push("| dashboard | (chromium not installed) | | | |".into()),
            Some(browser) => {
                let mut times = Vec::new();
                for _ in 0..runs.min(10) {
                    let code: serde_json::Value =
                        serde_json::from_str(&tillmesh(&bin, &home, &["dashboard", "--json"])?)?;
                    browser.goto(code["url"].as_str().context("url")?);
                    // The browser's own clock, from the start of navigation to
                    // the table holding every till.
                    let wait = format!(
                        "return document.querySelectorAll('#tills tbody tr').length === {tills};"
                    );
                    browser.wait_until(60, "every till in the table", &wait);
                    let ms = browser
                        .eval("return performance.now();")
                        .as_f64()
                        .context("performance.now")?;
                    times.push(Duration::from_secs_f64(ms / 1000.0));
                }
                out.push(row(
                    "dashboard: first render of every till (chromium, from navigation)",
                    times,
                    0,
                ));
            }
        }
        Ok(())
    })();
    let _ = tillmesh(&bin, &home, &["stop"]);
    let _ = daemon.wait();
    result?;
    println!("{}", out.join("\n"));
    Ok(())
}
