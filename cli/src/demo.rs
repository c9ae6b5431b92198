//! `tillmesh demo`: the whole product on this machine. In a temporary
//! directory it starts the store's relay, the Google Drive emulator, a folder
//! standing in for a USB stick, a webhook receiver standing in for a phone,
//! and real till daemons as child processes, and narrates a grocery day:
//! tills enrol and connect (directly and through the relay), sales flow, the
//! network splits while two managers change one price, the conflict waits for
//! a person and the phone is told, a till with no LAN syncs through Drive and
//! another by stick, backups land on both after a device-flow login, a till's
//! disk dies and it comes back from the stick, and every till ends converged.
//! Every step runs the real `tillmesh` binary, as an operator would, and every
//! claim is checked as it goes: the demo fails loudly when one does not hold.
//!
//! `--tills N` shows a larger store instead: N tills enrol, sell and converge.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;

use crate::args::DemoArgs;

/// How long a claim that waits for the mesh may take before it fails (a
/// larger store: a second more per till).
const PATIENCE: Duration = Duration::from_secs(40);

/// The webhook's shared secret (the receiver checks every signature with it).
const HOOK_SECRET: &str = "corner-grocer-phone-2026";

/// The Drive folder the store's backups and mailbox go to.
const DRIVE_FOLDER: &str = "tillmesh-corner-grocer";

/// A child process the demo started: a till daemon (with its home), the
/// relay or the Drive emulator.
struct Running {
    name: String,
    child: Child,
    home: Option<PathBuf>,
}

struct Demo {
    exe: PathBuf,
    dir: PathBuf,
    children: Vec<Running>,
    claims: usize,
    started: Instant,
    patience: Duration,
    /// Each till's mesh port ([`Demo::bind`]).
    ports: Mutex<std::collections::HashMap<String, u16>>,
}

impl Demo {
    fn home(&self, till: &str) -> PathBuf {
        self.dir.join(till)
    }

    fn part(&self, title: &str) {
        println!(
            "\n=== {title} ({:.1} s) ===\n",
            self.started.elapsed().as_secs_f64()
        );
    }

    /// Run a command for `till`, echoing it and its output.
    fn step(&self, till: &str, args: &[&str]) -> Result<String> {
        println!("[{till}] $ tillmesh {}", shown(args));
        let out = self.quiet(till, args)?;
        print!("{out}");
        if !out.is_empty() && !out.ends_with('\n') {
            println!();
        }
        Ok(out)
    }

    /// Run a command for `till` without echoing it; its standard output.
    fn quiet(&self, till: &str, args: &[&str]) -> Result<String> {
        let out = self
            .command(till, args)
            .output()
            .with_context(|| format!("cannot run tillmesh {}", args.join(" ")))?;
        if !out.status.success() {
            bail!(
                "tillmesh {} failed on {till}: {}",
                shown(args),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn command(&self, till: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.exe);
        cmd.args(args)
            .env("TILLMESH_HOME", self.home(till))
            .env("NO_COLOR", "1")
            .env_remove("TILLMESH_LOG")
            .stdin(Stdio::null());
        cmd
    }

    fn json(&self, till: &str, args: &[&str]) -> Result<Value> {
        let mut args = args.to_vec();
        args.push("--json");
        let out = self.quiet(till, &args)?;
        serde_json::from_str(&out)
            .with_context(|| format!("tillmesh {} printed no JSON", args.join(" ")))
    }

    /// Check a claim now: it holds, or the demo stops here, saying so.
    fn claim(&mut self, what: &str, holds: bool, otherwise: impl FnOnce() -> String) -> Result<()> {
        if !holds {
            bail!("CLAIM FAILED: {what}: {}", otherwise());
        }
        self.claims += 1;
        println!("  ✓ holds: {what}");
        Ok(())
    }

    /// Wait for a claim to hold (at most its patience); `check` says whether
    /// it does, and what it saw when it does not.
    fn claim_within(
        &mut self,
        what: &str,
        mut check: impl FnMut(&Demo) -> Result<std::result::Result<(), String>>,
    ) -> Result<()> {
        let start = Instant::now();
        loop {
            let seen = match check(self) {
                Ok(Ok(())) => {
                    self.claims += 1;
                    println!(
                        "  ✓ holds: {what} (after {} ms)",
                        start.elapsed().as_millis()
                    );
                    return Ok(());
                }
                Ok(Err(seen)) => seen,
                Err(e) => format!("{e:#}"),
            };
            if start.elapsed() > self.patience {
                bail!(
                    "CLAIM FAILED: {what}: not within {} s; last seen: {seen}; the daemons' logs are in {}",
                    self.patience.as_secs(),
                    self.dir.display()
                );
            }
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    fn start_daemon(&mut self, till: &str, extra: &[&str]) -> Result<()> {
        let home = self.home(till);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{till}.log")))?;
        let bind = self.bind(till);
        let mut args = vec![
            "run",
            "--bind",
            bind.as_str(),
            "--sync-interval",
            "5",
            // The demo stays on this machine: no multicast on the LAN.
            "--no-mdns",
        ];
        args.extend_from_slice(extra);
        println!("[{till}] $ tillmesh {}   (in the background)", shown(&args));
        let _ = std::fs::remove_file(home.join("api.json"));
        let mut cmd = self.command(till, &args);
        if let Ok(filter) = std::env::var("TILLMESH_DEMO_LOG") {
            cmd.env("TILLMESH_LOG", filter);
        }
        let child = cmd
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot start a till daemon")?;
        self.children.push(Running {
            name: till.to_string(),
            child,
            home: Some(home.clone()),
        });
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

    /// The mesh address `till` joins and runs on: a port of its own on
    /// loopback, the same for `join` and `run`, so the address it publishes
    /// when it joins still reaches it when its daemon runs (as a till's fixed
    /// `--bind` port does in a store).
    fn bind(&self, till: &str) -> String {
        let mut ports = self.ports.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(port) = ports.get(till) {
            return format!("127.0.0.1:{port}");
        }
        // Below the kernel's ephemeral range (20000-29999, from a start of
        // this process's own, wrapping round), past the ports already given,
        // each one free when it is given.
        let given: BTreeSet<u16> = ports.values().copied().collect();
        let start = (std::process::id() % 500) as u16 * 20;
        let port = (0..10_000)
            .map(|i| 20_000 + (start + i) % 10_000)
            .find(|p| {
                !given.contains(p)
                    && std::net::UdpSocket::bind(("127.0.0.1", *p)).is_ok()
                    && TcpListener::bind(("127.0.0.1", *p)).is_ok()
            })
            .unwrap_or(0);
        ports.insert(till.to_string(), port);
        format!("127.0.0.1:{port}")
    }

    /// Stop `till`'s daemon (`tillmesh stop`) and wait for it to exit.
    fn stop_daemon(&mut self, till: &str) -> Result<()> {
        let Some(i) = self.children.iter().position(|r| r.name == till) else {
            bail!("{till} has no daemon running");
        };
        let mut r = self.children.remove(i);
        stop(&self.exe, &mut r);
        Ok(())
    }

    /// Start a child that prints what it serves on its first line; that line.
    fn start_service(
        &mut self,
        name: &str,
        args: &[&str],
    ) -> Result<(String, BufReader<std::process::ChildStdout>)> {
        println!("[{name}] $ tillmesh {}   (in the background)", shown(args));
        let mut child = Command::new(&self.exe)
            .args(args)
            .env_remove("TILLMESH_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start the {name}"))?;
        let mut out = BufReader::new(child.stdout.take().context("no stdout")?);
        self.children.push(Running {
            name: name.into(),
            child,
            home: None,
        });
        let mut first = String::new();
        out.read_line(&mut first)?;
        if first.trim().is_empty() {
            bail!("the {name} did not start");
        }
        Ok((first.trim().to_string(), out))
    }

    /// Start the store's relay; its URL and certificate fingerprint.
    fn start_relay(&mut self) -> Result<(String, String)> {
        let home = self.home("relay");
        let home = home.to_str().context("the demo's directory is not UTF-8")?;
        let (url, mut out) =
            self.start_service("relay", &["relay", "--bind", "127.0.0.1:0", "--home", home])?;
        let mut cert = String::new();
        out.read_line(&mut cert)?;
        let cert = cert.trim().to_string();
        println!("relay listening at {url}, certificate fingerprint {cert}");
        Ok((url, cert))
    }

    /// Start the Drive emulator; its URL.
    fn start_drive(&mut self) -> Result<String> {
        let (line, _) = self.start_service(
            "drive",
            &[
                "drive-emulator",
                "--bind",
                "127.0.0.1:0",
                "--device-interval",
                "1",
            ],
        )?;
        println!("{line}");
        line.split_whitespace()
            .find(|w| w.starts_with("http://"))
            .map(|w| w.trim_end_matches(':').to_string())
            .ok_or_else(|| anyhow!("the Drive emulator printed no address: {line}"))
    }

    /// Stop every child: daemons with `tillmesh stop`, the others with SIGTERM.
    fn stop_all(&mut self) {
        let mut children = std::mem::take(&mut self.children);
        for r in children.iter_mut().rev() {
            stop(&self.exe, r);
        }
    }

    fn receipts(&self, till: &str) -> Result<BTreeSet<String>> {
        let mut all = BTreeSet::new();
        let mut after: Option<String> = None;
        loop {
            let mut args = vec!["sales", "--limit", "1000"];
            if let Some(a) = &after {
                args.extend(["--after", a.as_str()]);
            }
            let page = self.json(till, &args)?;
            for s in page["items"].as_array().into_iter().flatten() {
                if let Some(r) = s["receipt"].as_str() {
                    all.insert(r.to_string());
                }
            }
            match page["next"].as_str() {
                Some(next) => after = Some(next.to_string()),
                None => return Ok(all),
            }
        }
    }

    fn price_cents(&self, till: &str, sku: &str) -> Result<i64> {
        self.json(till, &["product", "show", sku])?["price_cents"]
            .as_i64()
            .ok_or_else(|| anyhow!("no price for {sku} on {till}"))
    }

    /// `till`'s row of `status --json` on `on`.
    fn row(&self, on: &str, till: &str) -> Result<Value> {
        let s = self.json(on, &["status"])?;
        s["tills"]
            .as_array()
            .and_then(|t| t.iter().find(|r| r["name"] == till).cloned())
            .ok_or_else(|| anyhow!("{on}'s status has no till {till}"))
    }

    /// A one-time ticket from `till` for a new till of `role`, shown
    /// shortened.
    fn invite(&self, till: &str, role: &str) -> Result<String> {
        let args = ["invite", "--role", role];
        println!("[{till}] $ tillmesh {}", shown(&args));
        let ticket = self.quiet(till, &args)?.trim().to_string();
        println!(
            "{}… (a one-time ticket of {} characters)",
            ticket.chars().take(24).collect::<String>(),
            ticket.len()
        );
        Ok(ticket)
    }

    /// Ring up a sale on `till`; its receipt number.
    fn sell(&self, till: &str, lines: &[&str], tender: &str) -> Result<String> {
        let mut args = vec!["sale"];
        for l in lines {
            args.extend(["--line", l]);
        }
        args.extend(["--tender", tender]);
        receipt_in(till, &self.step(till, &args)?)
    }

    /// The price of `sku` on each of `tills`.
    fn prices(&self, tills: &[&str], sku: &str) -> Result<Vec<i64>> {
        tills.iter().map(|t| self.price_cents(t, sku)).collect()
    }
}

/// The receipt number in what `tillmesh sale` printed on `till`.
fn receipt_in(till: &str, printed: &str) -> Result<String> {
    printed
        .split_whitespace()
        .find(|w| w.starts_with(&format!("{till}-")))
        .map(|w| w.trim_end_matches([':', ',', '.']).to_string())
        .ok_or_else(|| anyhow!("the sale on {till} printed no receipt number: {printed}"))
}

impl Drop for Demo {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// Stop one child: a daemon with `tillmesh stop`, the others with SIGTERM;
/// killed when it does not stop within 10 s.
fn stop(exe: &Path, r: &mut Running) {
    match &r.home {
        Some(h) => {
            let _ = Command::new(exe)
                .arg("stop")
                .env("TILLMESH_HOME", h)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        None => {
            let _ = Command::new("kill")
                .args(["-TERM", &r.child.id().to_string()])
                .status();
        }
    }
    let start = Instant::now();
    loop {
        match r.child.try_wait() {
            Ok(Some(status)) => {
                println!("stopped {} ({status})", r.name);
                return;
            }
            _ if start.elapsed() > Duration::from_secs(10) => {
                let _ = r.child.kill();
                let _ = r.child.wait();
                println!("killed {}: it did not stop in time", r.name);
                return;
            }
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Arguments as an operator would type them (long tickets shortened).
fn shown(args: &[&str]) -> String {
    args.iter()
        .map(|s| {
            if s.contains(' ') {
                format!("{s:?}")
            } else if s.len() > 60 {
                format!("{}…", &s[..24])
            } else {
                s.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A POST the phone's webhook receiver took: its signature header and body.
#[derive(Debug, Clone)]
struct Push {
    signature: Option<String>,
    body: Vec<u8>,
}

impl Push {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn signed(&self) -> bool {
        self.signature.as_deref()
            == Some(crate::alerts::signature(HOOK_SECRET, &self.body).as_str())
    }
}

/// A webhook receiver on loopback standing in for a phone's push service: it
/// takes every POST, answers 200 and keeps it. Its URL and what it took.
fn phone() -> Result<(String, Arc<Mutex<Vec<Push>>>)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let url = format!("http://{}/push", listener.local_addr()?);
    let pushes = Arc::new(Mutex::new(Vec::new()));
    let kept = pushes.clone();
    std::thread::Builder::new()
        .name("demo-phone".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                if let Some(p) = take_post(stream) {
                    kept.lock().unwrap_or_else(|e| e.into_inner()).push(p);
                }
            }
        })?;
    Ok((url, pushes))
}

/// Read one HTTP request from `stream` and answer 200.
fn take_post(mut stream: std::net::TcpStream) -> Option<Push> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let (mut length, mut signature) = (0usize, None);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
            if k == "content-length" {
                length = v.parse().unwrap_or(0);
            } else if k == crate::alerts::SIGNATURE_HEADER.to_ascii_lowercase() {
                signature = Some(v);
            }
        }
    }
    let mut body = vec![0; length.min(1 << 20)];
    reader.read_exact(&mut body).ok()?;
    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    Some(Push { signature, body })
}

pub fn run(a: &DemoArgs) -> Result<()> {
    let exe = std::env::current_exe().context("cannot find the tillmesh binary")?;
    let tmp = tempfile::Builder::new()
        .prefix("tillmesh-demo-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let mut demo = Demo {
        exe,
        dir: tmp.path().to_path_buf(),
        children: Vec::new(),
        claims: 0,
        started: Instant::now(),
        patience: PATIENCE + Duration::from_secs(u64::from(a.tills.unwrap_or(0))),
        ports: Mutex::default(),
    };
    let result = match a.tills {
        Some(n) => larger_store(&mut demo, usize::from(n)),
        None => tour(&mut demo),
    };
    let took = demo.started.elapsed().as_secs_f64();
    match &result {
        Ok(()) => println!("\nAll {} claims held, in {took:.1} s.", demo.claims),
        Err(e) => println!(
            "\nThe demo stopped after {} claims held: {e:#}",
            demo.claims
        ),
    }
    if a.keep && result.is_ok() {
        let kept = tmp.keep();
        keep(&mut demo, &kept)?;
        return result;
    }
    println!();
    demo.stop_all();
    if a.keep || result.is_err() {
        let kept = tmp.keep();
        println!(
            "Kept the demo's directory, with the daemons' logs: {}",
            kept.display()
        );
    } else {
        println!("Done. The demo's directory was removed (--keep leaves everything running).");
    }
    result
}

/// `--keep`: leave every child running and say how to look around.
fn keep(demo: &mut Demo, dir: &Path) -> Result<()> {
    let dashboard = demo.quiet("T1", &["dashboard"]).unwrap_or_default();
    let home = dir.join("T1");
    println!("\nEverything is still running in {}.", dir.display());
    println!("The dashboard of T1 (one-time sign-in code, good for 2 minutes):");
    print!("{dashboard}");
    println!("Explore (each till's home is a directory there):");
    println!("  alias tillmesh={}", demo.exe.display());
    println!("  export TILLMESH_HOME={}", home.display());
    println!("  tillmesh status            # every till at a glance");
    println!("  tillmesh report            # how the day went");
    println!("  tillmesh alerts --all      # what the phone was told");
    println!("  tillmesh conflicts --all   # the price conflict and who settled it");
    println!("  tillmesh events            # follow what happens; then sell on another till:");
    println!(
        "  TILLMESH_HOME={} tillmesh sale --line BREAD --tender cash",
        dir.join("T2").display()
    );
    println!("  tillmesh dashboard         # a new sign-in code");
    println!("Stop it all:");
    let mut tills = Vec::new();
    let mut pids = Vec::new();
    for r in std::mem::take(&mut demo.children) {
        match r.home {
            Some(h) => tills.push(h),
            None => pids.push(r.child.id().to_string()),
        }
    }
    for h in tills {
        println!("  TILLMESH_HOME={} tillmesh stop", h.display());
    }
    println!(
        "  kill {}   # the relay and the Drive emulator",
        pids.join(" ")
    );
    Ok(())
}

/// The tour of a small store: every part of the product, each claim checked.
fn tour(demo: &mut Demo) -> Result<()> {
    println!(
        "Tillmesh demo: a grocery day at Corner Grocer, on this machine only, in {}",
        demo.dir.display()
    );
    demo.part("The store's own services: a relay, Google Drive (emulated), a USB stick, a phone");
    let (relay, relay_cert) = demo.start_relay()?;
    let drive = demo.start_drive()?;
    let stick = demo.dir.join("USB-STICK");
    std::fs::create_dir_all(&stick)?;
    let stick = stick
        .to_str()
        .context("the demo's directory is not UTF-8")?
        .to_string();
    println!("a folder stands in for the USB stick: {stick}");
    let (hook, pushes) = phone()?;
    println!("the store manager's phone takes alerts as JSON webhooks at {hook}");

    demo.part("The back office opens the store: catalog, stock, policy, alerts");
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
    // With the relay's certificate, tills also learn their public address
    // from it, so tills behind NATs can connect directly.
    demo.step("T1", &["relays", "add", &relay, "--cert", &relay_cert])?;
    for product in [
        &[
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
            "BREAD",
            "--name",
            "Sourdough loaf",
            "--price",
            "3.50",
            "--tax-class",
            "reduced",
        ],
        &[
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
    ] {
        let mut args = vec!["product", "add"];
        args.extend_from_slice(product);
        demo.step("T1", &args)?;
    }
    demo.step("T1", &["stock", "receive", "MILK1L", "48"])?;
    demo.step("T1", &["stock", "count", "BANANA", "20000g"])?;
    println!("Two managers changing one price at once: the store wants a person to choose.");
    demo.step("T1", &["conflicts", "policy", "catalog", "manual"])?;
    demo.step(
        "T1",
        &["alerts", "webhook", "add", &hook, "--secret", HOOK_SECRET],
    )?;
    demo.start_daemon("T1", &[])?;

    demo.part("Three tills join with one-time tickets");
    for (till, role, extra) in [
        ("T2", "manager", &[][..]),
        ("T3", "till", &["--relay-only"][..]),
        ("T4", "till", &[][..]),
    ] {
        let ticket = demo.invite("T1", role)?;
        demo.step(
            till,
            &[
                "join",
                ticket.trim(),
                "--till",
                till,
                "--bind",
                &demo.bind(till),
            ],
        )?;
        if !extra.is_empty() {
            println!(
                "{till}'s network blocks UDP between tills: it goes through the store's relay."
            );
        }
        demo.start_daemon(till, extra)?;
    }
    demo.claim_within(
        "T1 reaches T2 and T4 directly and T3 through the relay",
        |d| {
            let paths: Vec<String> = ["T2", "T3", "T4"]
                .iter()
                .map(|t| {
                    d.row("T1", t).map(|r| {
                        format!("{t}: {} {}", state(&r), r["path"].as_str().unwrap_or("-"))
                    })
                })
                .collect::<Result<_>>()?;
            let want = ["T2: online direct", "T3: online relay", "T4: online direct"];
            Ok(if paths == want {
                Ok(())
            } else {
                Err(paths.join(", "))
            })
        },
    )?;
    demo.step("T1", &["status"])?;

    demo.part("The tills sell; every sale reaches every till");
    let mut sales = BTreeSet::new();
    sales.insert(demo.sell("T1", &["BREAD", "MILK1L:2"], "cash")?);
    sales.insert(demo.sell("T2", &["4006381333931:3:-0.30"], "card")?);
    sales.insert(demo.sell("T3", &["BANANA:1250g", "BREAD"], "card")?);
    sales.insert(demo.sell("T4", &["MILK1L"], "cash")?);
    converged(
        demo,
        &["T1", "T2", "T3", "T4"],
        &sales,
        "all four sales are on all four tills",
    )?;

    demo.part("The network splits: T2 is cut off, and two managers change one price");
    println!("T2's cable is pulled (its daemon stops): the till goes on alone on its own store.");
    demo.stop_daemon("T2")?;
    demo.step("T1", &["product", "set-price", "MILK1L", "1.29"])?;
    demo.step("T2", &["product", "set-price", "MILK1L", "1.25"])?;
    let offline = demo.sell("T2", &["MILK1L:2"], "cash")?;
    demo.claim(
        &format!("T2 sold while cut off ({offline}), at its own price"),
        demo.price_cents("T2", "MILK1L")? == 125,
        || "T2's price is not 1.25".into(),
    )?;
    sales.insert(offline);

    demo.part("The network heals: one price everywhere, the conflict waits for a person");
    demo.start_daemon("T2", &[])?;
    converged(
        demo,
        &["T1", "T2", "T3", "T4"],
        &sales,
        "T2's offline sale reaches every till",
    )?;
    demo.claim_within("every till shows the same price for MILK1L", |d| {
        let prices = d.prices(&["T1", "T2", "T3", "T4"], "MILK1L")?;
        Ok(if prices.windows(2).all(|w| w[0] == w[1]) {
            Ok(())
        } else {
            Err(format!("{prices:?}"))
        })
    })?;
    let mut conflict = Value::Null;
    demo.claim_within(
        "T1 logs the conflict, pending review by the manual policy",
        |d| {
            let list = d.json("T1", &["conflicts"])?;
            conflict = list
                .as_array()
                .and_then(|l| l.iter().find(|c| c["key"] == "MILK1L/price_cents").cloned())
                .unwrap_or(Value::Null);
            Ok(if conflict["status"] == "pending" {
                Ok(())
            } else {
                Err(list.to_string())
            })
        },
    )?;
    demo.claim_within(
        "the manager's phone is told, and the push is signed by the store",
        |_| Ok(pushed(&pushes, "alert.raised", "conflicts_pending")),
    )?;
    demo.step("T1", &["conflicts"])?;
    let id = conflict["id"].as_str().unwrap_or_default().to_string();
    let pick = conflict["values"]
        .as_array()
        .and_then(|v| v.iter().position(|v| v["value"] == 129))
        .map(|i| (i + 1).to_string())
        .ok_or_else(|| anyhow!("the conflict lacks T1's price: {conflict}"))?;
    println!("The back office keeps its own price, 1.29:");
    demo.step("T1", &["conflicts", "resolve", &id, "--pick", &pick])?;
    demo.claim_within("1.29 is the price on every till", |d| {
        let prices = d.prices(&["T1", "T2", "T3", "T4"], "MILK1L")?;
        Ok(if prices.iter().all(|p| *p == 129) {
            Ok(())
        } else {
            Err(format!("{prices:?}"))
        })
    })?;
    demo.claim_within("the phone is told the alert cleared", |_| {
        Ok(pushed(&pushes, "alert.cleared", "conflicts_pending"))
    })?;
    demo.step("T1", &["conflicts", "--all"])?;

    demo.part("Google Drive: a sign-in with a code on a phone, backups off site");
    drive_login(demo, &drive)?;
    demo.step("T1", &["sink", "add", "gdrive", "drive", DRIVE_FOLDER])?;
    backed_up(demo, "gdrive", "in Google Drive")?;

    demo.part("T3's LAN is gone: it syncs through the store's Drive folder");
    demo.claim_within(
        "T3 holds the store's Drive login (shared by the mesh)",
        |d| {
            let st = d.json("T3", &["drive", "status"])?;
            Ok(if st["logged_in"] == true {
                Ok(())
            } else {
                Err(st.to_string())
            })
        },
    )?;
    demo.stop_daemon("T3")?;
    demo.step("T3", &["sink", "add", "gdrive", "drive", DRIVE_FOLDER])?;
    let by_drive = demo.sell("T3", &["BREAD:2"], "card")?;
    demo.step("T3", &["drive", "sync"])?;
    demo.step("T1", &["drive", "sync"])?;
    let on_t1 = demo.receipts("T1")?;
    demo.claim(
        &format!("T1 holds T3's sale {by_drive}, carried by Drive"),
        on_t1.contains(&by_drive) && demo.row("T1", "T3")?["path"] == "drive",
        || format!("T1 holds {on_t1:?}"),
    )?;
    sales.insert(by_drive);
    demo.start_daemon("T3", &["--relay-only"])?;

    demo.part("T4 has no network at all: a USB stick carries its sales");
    demo.stop_daemon("T4")?;
    let by_stick = demo.sell("T4", &["BANANA:800g"], "cash")?;
    demo.step("T4", &["usb", "sync", &stick])?;
    println!("The stick is carried to the back office:");
    demo.step("T1", &["usb", "sync", &stick])?;
    let on_t1 = demo.receipts("T1")?;
    demo.claim(
        &format!("T1 holds T4's sale {by_stick}, carried by the stick"),
        on_t1.contains(&by_stick),
        || format!("T1 holds {on_t1:?}"),
    )?;
    sales.insert(by_stick);
    backed_up(demo, &stick, "on the stick")?;

    demo.part("T4's disk dies; a new machine, T5, is restored from the stick");
    std::fs::remove_dir_all(demo.home("T4")).context("cannot remove T4's home")?;
    println!("T4's home is gone. The back office revokes T4 and restores its store onto T5:");
    demo.step("T1", &["revoke", "T4"])?;
    let t5 = demo.home("T5");
    let t5 = t5
        .to_str()
        .context("the demo's directory is not UTF-8")?
        .to_string();
    demo.step(
        "T1",
        &[
            "restore",
            "--from",
            &stick,
            "--till",
            "T5",
            "--home",
            &t5,
            "--certify",
        ],
    )?;
    let on_t5 = demo.receipts("T5")?;
    demo.claim(
        "T5 holds every sale, T4's last one too",
        sales.is_subset(&on_t5),
        || format!("T5 holds {on_t5:?}, the store {sales:?}"),
    )?;
    demo.start_daemon("T5", &[])?;
    sales.insert(demo.sell("T5", &["BREAD", "MILK1L"], "card")?);

    demo.part("The end of the day");
    let tills = ["T1", "T2", "T3", "T5"];
    converged(
        demo,
        &tills,
        &sales,
        "every till holds every sale of the day",
    )?;
    demo.claim_within(
        "T1 sees every till online, and no change held by one till alone",
        |d| {
            let s = d.json("T1", &["status"])?;
            let rows = s["tills"].as_array().cloned().unwrap_or_default();
            let bad: Vec<String> = rows
                .iter()
                .filter(|r| state(r) != "revoked")
                .filter(|r| !["self", "online"].contains(&state(r)) || r["unreplicated"] != 0)
                .map(|r| format!("{}: {} {}", r["name"], state(r), r["unreplicated"]))
                .collect();
            Ok(if bad.is_empty() && rows.len() == 5 {
                Ok(())
            } else {
                Err(format!("{bad:?} of {} tills", rows.len()))
            })
        },
    )?;
    demo.step("T1", &["status"])?;
    demo.step("T1", &["sales", "--day", "today"])?;
    Ok(())
}

/// T1 backs up to `to` (a sink or a folder); claim a snapshot is there.
fn backed_up(demo: &mut Demo, to: &str, there: &str) -> Result<()> {
    demo.step("T1", &["backup", "--to", to])?;
    let listed = demo.json("T1", &["backup", "list", "--from", to])?;
    demo.claim(
        &format!("a snapshot of the store is {there}"),
        listed.to_string().contains("\"snapshot\""),
        || listed.to_string(),
    )
}

/// A till's state in a `status --json` row: self, revoked, online or offline.
fn state(row: &Value) -> &str {
    match row["membership"].as_str() {
        Some("self") => "self",
        Some("revoked") => "revoked",
        _ if row["online"] == true => "online",
        _ => "offline",
    }
}

/// Whether the phone took a push of `event` for an alert of `kind`, signed.
fn pushed(pushes: &Mutex<Vec<Push>>, event: &str, kind: &str) -> std::result::Result<(), String> {
    let pushes = pushes.lock().unwrap_or_else(|e| e.into_inner());
    let found: Vec<&Push> = pushes
        .iter()
        .filter(|p| p.json()["event"] == event && p.json()["alert"]["kind"] == kind)
        .collect();
    match found.first() {
        Some(p) if p.signed() => {
            println!(
                "  [phone] {}",
                p.json()["text"].as_str().unwrap_or_default()
            );
            Ok(())
        }
        Some(_) => Err("a push came with a wrong signature".into()),
        None => Err(format!("{} pushes, none {event} {kind}", pushes.len())),
    }
}

/// Wait until each of `tills` holds every receipt of `sales`.
fn converged(demo: &mut Demo, tills: &[&str], sales: &BTreeSet<String>, what: &str) -> Result<()> {
    demo.claim_within(what, |d| {
        let mut missing = Vec::new();
        for t in tills {
            let have = d.receipts(t)?;
            let lacks: Vec<&String> = sales.difference(&have).collect();
            if !lacks.is_empty() {
                missing.push(format!("{t} lacks {lacks:?}"));
            }
        }
        Ok(if missing.is_empty() {
            Ok(())
        } else {
            Err(missing.join("; "))
        })
    })
}

/// `drive login --device` on T1; the demo plays the manager who enters the
/// code on a phone.
fn drive_login(demo: &mut Demo, drive: &str) -> Result<()> {
    let args = [
        "drive",
        "login",
        "--device",
        "--client-id",
        "tillmesh-demo",
        "--endpoint",
        drive,
    ];
    println!("[T1] $ tillmesh {}", shown(&args));
    let mut child = demo
        .command("T1", &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run drive login")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut printed = String::new();
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        if let Some(code) = line
            .contains("enter the code")
            .then(|| line.rsplit(' ').next())
            .flatten()
        {
            let page = format!("{drive}/device?user_code={code}");
            println!("  [phone] the manager opens {drive}/device and enters {code}");
            let answered = tillmesh_drive_emulator::browse(&page)?;
            if answered != 200 {
                bail!("the sign-in page answered {answered}");
            }
        }
        printed.push_str(&line);
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "drive login failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    demo.claim(
        "T1 signed in to Google Drive with a device code",
        printed.contains("Signed in"),
        || printed.clone(),
    )
}

/// `--tills N`: a larger store. N tills enrol, each sells, and every sale
/// reaches every till.
fn larger_store(demo: &mut Demo, n: usize) -> Result<()> {
    println!(
        "Tillmesh demo: a store of {n} tills on this machine only, in {}",
        demo.dir.display()
    );
    let tills: Vec<String> = (1..=n).map(|i| format!("T{i:02}")).collect();
    demo.part(&format!("The back office opens the store ({})", tills[0]));
    let first = tills[0].as_str();
    demo.step(first, &["init", "--store", "Big Grocer", "--till", first])?;
    demo.step(
        first,
        &[
            "product",
            "add",
            "BREAD",
            "--name",
            "Sourdough loaf",
            "--price",
            "3.50",
        ],
    )?;
    demo.start_daemon(first, &[])?;

    demo.part(&format!("{} tills join, four at a time", n - 1));
    let tickets: Vec<String> = (1..n)
        .map(|_| demo.quiet(first, &["invite"]).map(|t| t.trim().to_string()))
        .collect::<Result<_>>()?;
    println!("[{first}] $ tillmesh invite   ({} times)", n - 1);
    let joined = Mutex::new(Vec::new());
    let d: &Demo = demo;
    for chunk in tills[1..]
        .iter()
        .zip(&tickets)
        .collect::<Vec<_>>()
        .chunks(4)
    {
        std::thread::scope(|scope| {
            for (till, ticket) in chunk {
                let joined = &joined;
                scope.spawn(move || {
                    let r = d.quiet(
                        till,
                        &["join", ticket, "--till", till, "--bind", &d.bind(till)],
                    );
                    joined
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((till.to_string(), r));
                });
            }
        });
    }
    for (till, r) in joined.into_inner().unwrap_or_default() {
        r.with_context(|| format!("{till} could not join"))?;
    }
    println!("[T02..T{n:02}] $ tillmesh join TICKET --till NAME   (each with its own ticket)");
    for till in &tills[1..] {
        demo.start_daemon(till, &[])?;
    }
    let members = demo.json(first, &["status"])?;
    let certified = members["tills"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter(|r| ["self", "online", "offline"].contains(&state(r)))
                .count()
        })
        .unwrap_or(0);
    demo.claim(
        &format!("{first} counts all {n} tills as members"),
        certified == n,
        || format!("{certified} of {n}: {members}"),
    )?;

    demo.claim_within(
        &format!("all {n} tills are in the store's gossip swarm"),
        |d| {
            let mut outside = Vec::new();
            for till in &tills {
                let s = d.json(till, &["status"])?;
                if s["self"]["gossip_neighbours"].as_u64().unwrap_or(0) == 0 {
                    outside.push(till.as_str());
                }
            }
            Ok(if outside.is_empty() {
                Ok(())
            } else {
                Err(format!("no gossip neighbour yet: {}", outside.join(" ")))
            })
        },
    )?;

    demo.part("Every till sells; every sale reaches every till");
    let mut sales = BTreeSet::new();
    for till in &tills {
        let out = demo.quiet(till, &["sale", "--line", "BREAD", "--tender", "card"])?;
        sales.insert(receipt_in(till, &out)?);
    }
    println!("[T01..T{n:02}] $ tillmesh sale --line BREAD --tender card   (on each till)");
    let names: Vec<&str> = tills.iter().map(String::as_str).collect();
    converged(
        demo,
        &names,
        &sales,
        &format!("all {n} sales are on all {n} tills"),
    )?;
    demo.step(first, &["status"])?;
    Ok(())
}
