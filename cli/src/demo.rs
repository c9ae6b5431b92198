//! `tillmesh demo`: a tour of a small store on this machine. In a temporary
//! directory it starts the store's relay and three till daemons as child
//! processes, enrols two tills with one-time tickets, rings up sales on each, shows
//! them arriving on the others, prints the status screen, and stops everything
//! cleanly. Every step runs the real `tillmesh` binary, as an operator would.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::args::DemoArgs;

struct Demo {
    exe: PathBuf,
    dir: PathBuf,
    children: Vec<(String, Child, Option<PathBuf>)>,
}

impl Demo {
    fn home(&self, till: &str) -> PathBuf {
        self.dir.join(till)
    }

    /// Run a command for `till`, echoing it and its output.
    fn step(&self, till: &str, args: &[&str]) -> Result<String> {
        let shown: Vec<String> = args
            .iter()
            .map(|s| {
                if s.contains(' ') {
                    format!("{s:?}")
                } else if s.len() > 40 {
                    format!("{}…", &s[..24])
                } else {
                    s.to_string()
                }
            })
            .collect();
        println!("[{till}] $ tillmesh {}", shown.join(" "));
        let out = self.quiet(till, args)?;
        print!("{out}");
        println!();
        Ok(out)
    }

    /// Run a command for `till` without echoing it.
    fn quiet(&self, till: &str, args: &[&str]) -> Result<String> {
        let out = Command::new(&self.exe)
            .args(args)
            .env("TILLMESH_HOME", self.home(till))
            .env_remove("TILLMESH_LOG")
            .output()
            .with_context(|| format!("cannot run tillmesh {}", args.join(" ")))?;
        if !out.status.success() {
            bail!(
                "tillmesh {} failed on {till}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn start_daemon(&mut self, till: &str) -> Result<()> {
        let home = self.home(till);
        let log = std::fs::File::create(self.dir.join(format!("{till}.log")))?;
        println!(
            "[{till}] $ tillmesh run --bind 127.0.0.1:0 --sync-interval 5   (in the background)"
        );
        let child = Command::new(&self.exe)
            .args([
                "run",
                "--bind",
                "127.0.0.1:0",
                "--sync-interval",
                "5",
                // The demo stays on this machine: no multicast on the LAN.
                "--no-mdns",
            ])
            .env("TILLMESH_HOME", &home)
            .env_remove("TILLMESH_LOG")
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot start a till daemon")?;
        self.children
            .push((till.to_string(), child, Some(home.clone())));
        let start = Instant::now();
        while !home.join("api.json").exists() {
            if start.elapsed() > Duration::from_secs(30) {
                bail!(
                    "the daemon of {till} did not start; see {}",
                    self.dir.join(format!("{till}.log")).display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Start the store's relay; its URL and certificate fingerprint.
    fn start_relay(&mut self) -> Result<(String, String)> {
        println!("[relay] $ tillmesh relay --bind 127.0.0.1:0   (in the background)");
        let mut child = Command::new(&self.exe)
            .args(["relay", "--bind", "127.0.0.1:0", "--home"])
            .arg(self.home("relay"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start the relay")?;
        let (mut url, mut cert) = (String::new(), String::new());
        if let Some(out) = child.stdout.take() {
            let mut out = BufReader::new(out);
            out.read_line(&mut url)?;
            out.read_line(&mut cert)?;
        }
        self.children.push(("relay".into(), child, None));
        let (url, cert) = (url.trim().to_string(), cert.trim().to_string());
        if url.is_empty() || cert.is_empty() {
            bail!("the relay did not start");
        }
        println!("relay listening at {url}, certificate fingerprint {cert}\n");
        Ok((url, cert))
    }

    /// Stop every child: daemons with `tillmesh stop`, the relay with SIGTERM.
    fn stop_all(&mut self) {
        for (name, child, home) in self.children.iter_mut().rev() {
            match home {
                Some(h) => {
                    let _ = Command::new(&self.exe)
                        .arg("stop")
                        .env("TILLMESH_HOME", h)
                        .output();
                }
                None => {
                    let _ = Command::new("kill")
                        .args(["-TERM", &child.id().to_string()])
                        .status();
                }
            }
            let start = Instant::now();
            loop {
                match child.try_wait() {
                    Ok(Some(status)) => {
                        println!("stopped {name} ({status})");
                        break;
                    }
                    _ if start.elapsed() > Duration::from_secs(10) => {
                        let _ = child.kill();
                        let _ = child.wait();
                        println!("killed {name}: it did not stop in time");
                        break;
                    }
                    _ => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        }
        self.children.clear();
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        self.stop_all();
    }
}

fn receipts(demo: &Demo, till: &str) -> Result<Vec<String>> {
    let json: serde_json::Value = serde_json::from_str(&demo.quiet(till, &["sales", "--json"])?)?;
    Ok(json
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s["receipt"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default())
}

pub fn run(a: &DemoArgs) -> Result<()> {
    let exe = std::env::current_exe().context("cannot find the tillmesh binary")?;
    let tmp = tempfile::Builder::new()
        .prefix("tillmesh-demo-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    println!(
        "Tillmesh demo: a store relay and three tills in {}\n",
        tmp.path().display()
    );
    let mut demo = Demo {
        exe,
        dir: tmp.path().to_path_buf(),
        children: Vec::new(),
    };
    let result = tour(&mut demo);
    demo.stop_all();
    if a.keep {
        let kept = tmp.keep();
        println!(
            "\nKept the demo in {}; its tills are in T1/, T2/, T3/ (try: TILLMESH_HOME={} tillmesh sales)",
            kept.display(),
            kept.join("T1").display()
        );
    } else {
        println!("\nDone. The demo's directory was removed (keep it with --keep).");
    }
    result
}

fn tour(demo: &mut Demo) -> Result<()> {
    let (relay, relay_cert) = demo.start_relay()?;
    println!("--- The back office creates the store, its catalog and stock ---\n");
    demo.step(
        "T1",
        &[
            "init",
            "--store",
            "Corner Grocer",
            "--till",
            "T1",
            "--relay",
            &relay,
        ],
    )?;
    // With the relay's certificate, tills also learn their public address from
    // it, so tills behind NATs can connect directly.
    demo.step("T1", &["relays", "add", &relay, "--cert", &relay_cert])?;
    demo.step(
        "T1",
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
        ],
    )?;
    demo.step(
        "T1",
        &[
            "product",
            "add",
            "BREAD",
            "--name",
            "Sourdough loaf",
            "--price",
            "3.50",
            "--tax-class",
            "reduced",
        ],
    )?;
    demo.step(
        "T1",
        &[
            "product",
            "add",
            "BANANA",
            "--name",
            "Bananas",
            "--price",
            "1.99",
            "--unit",
            "kg",
            "--tax-class",
            "reduced",
        ],
    )?;
    demo.step("T1", &["stock", "receive", "MILK1L", "48"])?;
    demo.step("T1", &["stock", "count", "BANANA", "20000g"])?;
    demo.start_daemon("T1")?;

    println!("\n--- Two tills join with one-time tickets ---\n");
    for till in ["T2", "T3"] {
        let ticket = demo.step("T1", &["invite"])?;
        demo.step(
            till,
            &[
                "join",
                ticket.trim(),
                "--till",
                till,
                "--bind",
                "127.0.0.1:0",
            ],
        )?;
        demo.start_daemon(till)?;
    }

    println!("\n--- Each till sells; the sales spread to the others ---\n");
    demo.step(
        "T1",
        &[
            "sale", "--line", "BREAD", "--line", "MILK1L:2", "--tender", "cash",
        ],
    )?;
    demo.step(
        "T2",
        &[
            "sale",
            "--line",
            "4006381333931:3:-0.30",
            "--tender",
            "card",
        ],
    )?;
    demo.step(
        "T3",
        &[
            "sale",
            "--line",
            "BANANA:1250g",
            "--line",
            "BREAD",
            "--tender",
            "card",
        ],
    )?;
    let start = Instant::now();
    let want = ["T1-1", "T2-1", "T3-1"];
    loop {
        let mut all = true;
        for till in ["T1", "T2", "T3"] {
            let have = receipts(demo, till)?;
            all &= want.iter().all(|r| have.iter().any(|h| h == r));
        }
        if all {
            println!(
                "Every till holds all three sales ({} ms after the last one).\n",
                start.elapsed().as_millis()
            );
            break;
        }
        if start.elapsed() > Duration::from_secs(30) {
            bail!(
                "the sales did not reach every till within 30 s; see the logs in {}",
                demo.dir.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    demo.step("T3", &["sales"])?;
    demo.step("T2", &["stock"])?;
    demo.step("T1", &["status"])?;
    println!("--- Everything stops cleanly ---\n");
    Ok(())
}
