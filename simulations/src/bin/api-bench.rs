//! The local API under a POS: durable sales through `POST /v1/sales` on a live
//! daemon (a new connection per sale, as a simple POS makes them), and the
//! same sale through the command line (`tillmesh sale`, a process per sale,
//! through the daemon).
//!
//! ```text
//! cargo build --release -p tillmesh
//! cargo run --release -p tillmesh-sim --bin api-bench -- [--sales 2000] [--cli-sales 200]
//!     [--bin target/release/tillmesh]
//! ```
//! Prints a Markdown report; docs/PERFORMANCE.md holds the numbers of record.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use tillmesh_sim::report::flags;
use tillmesh_sim::run_tillmesh as tillmesh;

struct Args {
    sales: usize,
    cli_sales: usize,
    bin: PathBuf,
}

fn post_sale(port: u16, token: &str, key: &str) -> Result<u16> {
    let body = r#"{"lines":[{"barcode":"4006381333931","qty":2},{"sku":"APPLES","grams":750}],"tender":"card"}"#;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_nodelay(true)?;
    write!(
        s,
        "POST /v1/sales HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n\
         Idempotency-Key: {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut reply = Vec::new();
    s.read_to_end(&mut reply)?;
    let text = String::from_utf8_lossy(&reply);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("no status")
}

fn row(what: &str, mut times: Vec<Duration>) -> String {
    times.sort();
    let pct = |p: f64| times[((times.len() - 1) as f64 * p) as usize];
    let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1e3);
    format!(
        "| {what} | {} | {} | {} | {} |",
        times.len(),
        ms(pct(0.5)),
        ms(pct(0.99)),
        ms(*times.last().expect("times"))
    )
}

fn main() -> Result<()> {
    let mut a = Args {
        sales: 2000,
        cli_sales: 200,
        bin: PathBuf::from("target/release/tillmesh"),
    };
    for (flag, v) in flags()? {
        match flag.as_str() {
            "--sales" => a.sales = v.parse()?,
            "--cli-sales" => a.cli_sales = v.parse()?,
            "--bin" => a.bin = v.into(),
            _ => anyhow::bail!("unknown flag {flag}"),
        }
    }
    let dir = tempfile::tempdir()?;
    let home = dir.path().join("till");
    let bin = &a.bin;
    tillmesh(
        bin,
        &home,
        &["init", "--store", "Bench Shop", "--till", "T1"],
    )?;
    tillmesh(
        bin,
        &home,
        &[
            "product",
            "add",
            "BREAD",
            "--name",
            "Bread",
            "--price",
            "2.50",
            "--barcode",
            "4006381333931",
        ],
    )?;
    tillmesh(
        bin,
        &home,
        &[
            "product", "add", "APPLES", "--name", "Apples", "--price", "3.20", "--unit", "kg",
        ],
    )?;
    let tillmesh_sim::Daemon {
        child: mut daemon,
        port,
        token,
    } = tillmesh_sim::start_daemon(bin, &home, &["--no-mdns", "--bind", "127.0.0.1:0"])?;

    let mut api = Vec::with_capacity(a.sales);
    let mut repeats = Vec::with_capacity(a.sales / 10);
    for i in 0..a.sales {
        let key = format!("bench-{i}");
        let t = Instant::now();
        ensure!(
            post_sale(port, &token, &key)? == 201,
            "sale {i} not recorded"
        );
        api.push(t.elapsed());
        if i % 10 == 0 {
            let t = Instant::now();
            ensure!(
                post_sale(port, &token, &key)? == 200,
                "repeat {i} not found"
            );
            repeats.push(t.elapsed());
        }
    }
    let mut cli = Vec::with_capacity(a.cli_sales);
    for _ in 0..a.cli_sales {
        let t = Instant::now();
        tillmesh(
            bin,
            &home,
            &[
                "sale",
                "--line",
                "4006381333931:2",
                "--line",
                "APPLES:750g",
                "--tender",
                "card",
            ],
        )?;
        cli.push(t.elapsed());
    }
    let show = |n: usize| -> Result<Vec<Duration>> {
        let mut times = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            tillmesh(bin, &home, &["product", "show", "APPLES"])?;
            times.push(t.elapsed());
        }
        Ok(times)
    };
    let show_daemon = show(a.cli_sales)?;
    let _ = tillmesh(bin, &home, &["stop"]);
    let _ = daemon.wait();
    // The same commands with no daemon: each opens the store itself, on a
    // store thread of its own, as the daemon does.
    let mut alone = Vec::with_capacity(a.cli_sales);
    for _ in 0..a.cli_sales {
        let t = Instant::now();
        tillmesh(
            bin,
            &home,
            &["sale", "--line", "4006381333931:2", "--tender", "cash"],
        )?;
        alone.push(t.elapsed());
    }
    let show_alone = show(a.cli_sales)?;

    println!("## Sales through a running daemon (durable: fsync per sale)\n");
    println!("| path | sales | p50 | p99 | max |");
    println!("|---|---|---|---|---|");
    println!("{}", row("`POST /v1/sales`, a connection each", api));
    println!(
        "{}",
        row(
            "the same key again (answered from the key, nothing written)",
            repeats
        )
    );
    println!(
        "{}",
        row("`tillmesh sale` (a process each, through the daemon)", cli)
    );
    println!(
        "{}",
        row(
            "`tillmesh sale` with no daemon (the command opens the store)",
            alone
        )
    );
    println!(
        "{}",
        row("`tillmesh product show` through the daemon", show_daemon)
    );
    println!(
        "{}",
        row("`tillmesh product show` with no daemon", show_alone)
    );
    Ok(())
}
