//! The lab's network: a patchbay lab with the store's relay on a public router,
//! the faults the tests impose, and the probes that measure that each fault is
//! really there before a test relies on it.
//!
//! This kernel has no `netem` qdisc, so patchbay's `LinkCondition` (always a
//! `tc netem` root, plus `tbf` for a rate cap) cannot be used. Instead:
//! - UDP between two sites is dropped by nftables in the lab's root namespace,
//!   the "internet" between them (its exchange bridge, which every top-level
//!   router is plugged into, and its routing between them);
//! - loss is an nftables `numgen random` drop in the impaired router;
//! - latency is a delay line: the impaired router routes every forwarded packet
//!   into a TUN device, and a task holds each packet for the delay before writing
//!   it back, from where the kernel forwards it on.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use patchbay::{Device, Lab, Router};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot};

/// The relay's HTTP port.
const RELAY_PORT: u16 = 3340;
/// The UDP reflector's port (answers `PROBE` with `OBSERVED ip:port`).
const REFLECTOR_PORT: u16 = 3478;
/// The UDP echo server's port.
const ECHO_PORT: u16 = 7007;

/// A lab with the store's relay and a UDP reflector and echo server on a device
/// behind a public (no NAT) router: the lab's internet side.
pub struct Net {
    pub lab: Lab,
    pub relay_url: String,
    /// The relay's certificate fingerprint (it serves QUIC address discovery).
    pub relay_cert: String,
    pub relay_dev: Device,
    /// How many echo requests the echo server has answered.
    pub echoed: Arc<AtomicU64>,
    _reflector: patchbay::ReflectorGuard,
}

/// Run a command in a namespace (through `spawn`, one of patchbay's
/// `spawn_command_sync`), failing with its output if it fails.
fn run(
    spawn: impl FnOnce(Command) -> anyhow::Result<std::process::Child>,
    program: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> String {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if stdin.is_some() {
        cmd.stdin(std::process::Stdio::piped());
    }
    let mut child = spawn(cmd).unwrap_or_else(|e| panic!("spawn {program}: {e:#}"));
    if let Some(text) = stdin {
        use std::io::Write;
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(text.as_bytes()).expect("write stdin");
    }
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Apply an nftables ruleset in a router's namespace.
pub fn nft_router(router: &Router, rules: &str) {
    run(
        |c| router.spawn_command_sync(c),
        "nft",
        &["-f", "-"],
        Some(rules),
    );
}

/// What the lab needs from this machine and how to get each: the capabilities
/// root has (network namespaces, nftables), the `nft` and `ip` commands, and the
/// TUN device of the delay line.
fn missing_here() -> Vec<&'static str> {
    let mut missing = Vec::new();
    // CAP_NET_ADMIN is bit 12, CAP_SYS_ADMIN bit 21 of the effective set.
    let caps = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let hex = s.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
            u64::from_str_radix(hex.trim(), 16).ok()
        })
        .unwrap_or(0);
    if caps & (1 << 12) == 0 || caps & (1 << 21) == 0 {
        missing.push("root (CAP_NET_ADMIN and CAP_SYS_ADMIN): run the tests as root");
    }
    let runs = |program: &str, arg: &str| {
        Command::new(program)
            .arg(arg)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok()
    };
    if !runs("nft", "--version") {
        missing.push("the nft command: apt-get install nftables");
    }
    if !runs("ip", "-V") {
        missing.push("the ip command: apt-get install iproute2");
    }
    if !std::path::Path::new("/dev/net/tun").exists() {
        missing.push("/dev/net/tun: modprobe tun");
    }
    missing
}

/// Whether the lab can run here. If not, says once, on the real stderr (a passing
/// test's printed output is hidden), what is missing and how to get it, and the
/// tests return without checking anything; with `TILLMESH_NAT_LAB=require` (set
/// by .ci/run) a missing piece fails the test instead.
fn available() -> bool {
    static MISSING: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let missing = MISSING.get_or_init(|| {
        let missing = missing_here();
        if missing.is_empty() {
            return None;
        }
        let line = format!(
            "nat_lab: SKIPPED, this machine lacks {} (scripts/test, run as root, installs the commands)",
            missing.join("; ")
        );
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "{line}");
        Some(line)
    });
    match missing {
        None => true,
        Some(line) if std::env::var("TILLMESH_NAT_LAB").as_deref() == Ok("require") => {
            panic!("TILLMESH_NAT_LAB=require, but {line}")
        }
        Some(_) => false,
    }
}

/// A new lab with the relay running on `dc`'s device `relay`, or `None` where
/// the lab cannot run (see [`available`]).
pub async fn lab_with_relay() -> Option<Net> {
    if !available() {
        return None;
    }
    // We run as root, so patchbay's user-namespace bootstrap (an ELF constructor,
    // which would need `unsafe`) is not needed; every namespace thread still gets
    // its own private mount namespace from patchbay.
    let lab = Lab::builder()
        .allow_real_root()
        .build()
        .await
        .expect("lab (needs root: CAP_NET_ADMIN and CAP_SYS_ADMIN)");
    let dc = lab.add_router("dc").build().await.expect("dc router");
    let relay_dev = lab
        .add_device("relay")
        .uplink(dc.id())
        .build()
        .await
        .expect("relay device");
    let ip = relay_dev.ip().expect("relay IPv4");
    let (tx, rx) = oneshot::channel();
    relay_dev
        .spawn(move |_| async move {
            let identity = tillmesh_mesh::relay::RelayIdentity::generate().expect("relay identity");
            match tillmesh_mesh::relay::Relay::spawn(
                SocketAddr::from((ip, RELAY_PORT)),
                Some(&identity),
            )
            .await
            {
                Ok(relay) => {
                    let _ = tx.send(Ok((relay.url().to_string(), identity.fingerprint())));
                    // Serve until the lab (and this runtime) goes.
                    std::future::pending::<()>().await;
                    drop(relay);
                }
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                }
            }
        })
        .expect("relay runtime");
    let (relay_url, relay_cert) = rx.await.expect("relay task").expect("relay starts");
    let reflector = relay_dev
        .spawn_reflector(SocketAddr::from((ip, REFLECTOR_PORT)))
        .await
        .expect("reflector");
    let echoed = Arc::new(AtomicU64::new(0));
    let count = echoed.clone();
    let (tx, rx) = oneshot::channel();
    relay_dev
        .spawn(move |_| async move {
            let sock = UdpSocket::bind(SocketAddr::from((ip, ECHO_PORT)))
                .await
                .expect("echo bind");
            let _ = tx.send(());
            let mut buf = [0u8; 2048];
            while let Ok((n, from)) = sock.recv_from(&mut buf).await {
                count.fetch_add(1, Ordering::Relaxed);
                let _ = sock.send_to(&buf[..n], from).await;
            }
        })
        .expect("echo runtime");
    rx.await.expect("echo server starts");
    Some(Net {
        lab,
        relay_url,
        relay_cert,
        relay_dev,
        echoed,
        _reflector: reflector,
    })
}

impl Net {
    pub fn relay_ip(&self) -> Ipv4Addr {
        self.relay_dev.ip().expect("relay IPv4")
    }

    /// The UDP reflector on the relay device.
    pub fn reflector(&self) -> SocketAddr {
        SocketAddr::from((self.relay_ip(), REFLECTOR_PORT))
    }

    /// The UDP echo server on the relay device.
    pub fn echo(&self) -> SocketAddr {
        SocketAddr::from((self.relay_ip(), ECHO_PORT))
    }

    /// The relay's TCP address.
    pub fn relay_tcp(&self) -> SocketAddr {
        SocketAddr::from((self.relay_ip(), RELAY_PORT))
    }

    /// Drop every UDP packet between the public addresses `a` and `b` on the lab's
    /// internet side: the lab's root namespace, which holds the exchange bridge
    /// every top-level router is plugged into and routes between them. Packets
    /// bridged between two routers and packets routed through the root namespace
    /// are both caught. Counters record what was dropped.
    pub fn block_udp_between(&self, a: Ipv4Addr, b: Ipv4Addr) {
        let rules = format!(
            "table bridge tillmesh_block {{
                chain forward {{
                    type filter hook forward priority 0; policy accept;
                    ip saddr {a} ip daddr {b} ip protocol udp counter drop
                    ip saddr {b} ip daddr {a} ip protocol udp counter drop
                }}
            }}
            table inet tillmesh_block {{
                chain forward {{
                    type filter hook forward priority 0; policy accept;
                    ip saddr {a} ip daddr {b} ip protocol udp counter drop
                    ip saddr {b} ip daddr {a} ip protocol udp counter drop
                }}
            }}\n"
        );
        let ix = self.lab.ix();
        run(
            |c| ix.spawn_command_sync(c),
            "nft",
            &["-f", "-"],
            Some(&rules),
        );
    }

    /// Cut every packet between each pair of public addresses in `pairs` on
    /// the lab's internet side, as [`Net::block_udp_between`] does for UDP;
    /// [`Net::lift_cut`] undoes it. Counters record what was dropped.
    pub fn cut_between(&self, pairs: &[(Ipv4Addr, Ipv4Addr)]) {
        let rules: String = pairs
            .iter()
            .map(|(a, b)| {
                format!(
                    "ip saddr {a} ip daddr {b} counter drop\nip saddr {b} ip daddr {a} counter drop\n"
                )
            })
            .collect();
        let table = |family: &str| {
            format!(
                "table {family} tillmesh_cut {{
                    chain forward {{
                        type filter hook forward priority 0; policy accept;
                        {rules}
                    }}
                }}\n"
            )
        };
        let ruleset = format!("{}{}", table("bridge"), table("inet"));
        let ix = self.lab.ix();
        run(
            |c| ix.spawn_command_sync(c),
            "nft",
            &["-f", "-"],
            Some(&ruleset),
        );
    }

    /// Packets [`Net::cut_between`] has dropped so far.
    pub fn cut_drops(&self) -> u64 {
        self.counted("tillmesh_cut")
    }

    /// Lift [`Net::cut_between`].
    pub fn lift_cut(&self) {
        let ix = self.lab.ix();
        run(
            |c| ix.spawn_command_sync(c),
            "nft",
            &["-f", "-"],
            Some("delete table bridge tillmesh_cut\ndelete table inet tillmesh_cut\n"),
        );
    }

    /// Packets the UDP block has dropped so far.
    pub fn udp_block_drops(&self) -> u64 {
        self.counted("tillmesh_block")
    }

    /// The packets counted by the rules of the lab's tables named `table`.
    fn counted(&self, table: &str) -> u64 {
        let ix = self.lab.ix();
        ["bridge", "inet"]
            .into_iter()
            .map(|family| {
                let out = run(
                    |c| ix.spawn_command_sync(c),
                    "nft",
                    &["list", "table", family, table],
                    None,
                );
                counter_packets(&out).iter().sum::<u64>()
            })
            .sum()
    }
}

/// The `counter packets N` values in an `nft list` output, in order.
fn counter_packets(listing: &str) -> Vec<u64> {
    listing
        .split("counter packets ")
        .skip(1)
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .collect()
}

/// The address a UDP socket bound in `dev` is seen from on the internet side,
/// by the reflector.
async fn mapped_addr(sock: &UdpSocket, reflector: SocketAddr) -> SocketAddr {
    let mut buf = [0u8; 256];
    for _ in 0..10 {
        sock.send_to(b"PROBE", reflector).await.expect("send probe");
        if let Ok(Ok((n, from))) =
            tokio::time::timeout(Duration::from_millis(500), sock.recv_from(&mut buf)).await
            && from == reflector
        {
            let text = std::str::from_utf8(&buf[..n]).expect("utf-8 reply");
            return text
                .strip_prefix("OBSERVED ")
                .and_then(|a| a.trim().parse().ok())
                .unwrap_or_else(|| panic!("unexpected reflector reply {text:?}"));
        }
    }
    panic!("the reflector at {reflector} did not answer");
}

/// A UDP hole punch between `a` and `b`, as a till would try one: each side binds
/// a fresh socket, learns its public mapping from the reflector, then both send to
/// each other's mapping every 20 ms for `window`. Returns how many punches each
/// side received (a, b). Between endpoint-independent NATs with nothing in the
/// way, both receive some.
pub async fn udp_punch(
    a: &Device,
    b: &Device,
    reflector: SocketAddr,
    window: Duration,
) -> (u64, u64) {
    async fn side(
        dev: &Device,
        reflector: SocketAddr,
        window: Duration,
        mine: oneshot::Sender<SocketAddr>,
        theirs: oneshot::Receiver<SocketAddr>,
    ) -> tokio::task::JoinHandle<u64> {
        dev.spawn(move |_| async move {
            let sock = UdpSocket::bind("0.0.0.0:0").await.expect("bind");
            let _ = mine.send(mapped_addr(&sock, reflector).await);
            let peer = theirs.await.expect("peer mapping");
            let end = Instant::now() + window;
            let mut got = 0;
            let mut buf = [0u8; 64];
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            while Instant::now() < end {
                tokio::select! {
                    _ = tick.tick() => {
                        let _ = sock.send_to(b"PUNCH", peer).await;
                    }
                    r = sock.recv_from(&mut buf) => {
                        if let Ok((n, from)) = r && from == peer && &buf[..n] == b"PUNCH" {
                            got += 1;
                        }
                    }
                }
            }
            got
        })
        .expect("device runtime")
    }
    let (a_tx, a_rx) = oneshot::channel();
    let (b_tx, b_rx) = oneshot::channel();
    let ta = side(a, reflector, window, a_tx, b_rx).await;
    let tb = side(b, reflector, window, b_tx, a_rx).await;
    (ta.await.expect("punch a"), tb.await.expect("punch b"))
}

/// Whether `dev` can open a TCP connection to `addr` and get an HTTP answer.
pub async fn http_answers(dev: &Device, addr: SocketAddr) -> bool {
    dev.spawn(move |_| async move {
        let attempt = async {
            let mut s = TcpStream::connect(addr).await.ok()?;
            s.write_all(b"GET / HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n\r\n")
                .await
                .ok()?;
            let mut head = [0u8; 12];
            s.read_exact(&mut head).await.ok()?;
            Some(head.starts_with(b"HTTP/1."))
        };
        tokio::time::timeout(Duration::from_secs(5), attempt)
            .await
            .ok()
            .flatten()
            .unwrap_or(false)
    })
    .expect("device runtime")
    .await
    .expect("http probe")
}

/// What an echo measurement saw.
#[derive(Debug)]
pub struct Echo {
    pub sent: u64,
    /// Requests that reached the echo server (the upstream direction).
    pub arrived: u64,
    /// Replies that came back (the downstream direction).
    pub replies: u64,
    /// Round-trip times of the replies, sorted (ms).
    pub rtts_ms: Vec<f64>,
}

impl Echo {
    pub fn up_loss(&self) -> f64 {
        1.0 - self.arrived as f64 / self.sent as f64
    }
    pub fn down_loss(&self) -> f64 {
        1.0 - self.replies as f64 / self.arrived.max(1) as f64
    }
    pub fn rtt_min(&self) -> f64 {
        self.rtts_ms.first().copied().unwrap_or(f64::NAN)
    }
    pub fn rtt_median(&self) -> f64 {
        self.rtts_ms
            .get(self.rtts_ms.len() / 2)
            .copied()
            .unwrap_or(f64::NAN)
    }
    pub fn rtt_max(&self) -> f64 {
        self.rtts_ms.last().copied().unwrap_or(f64::NAN)
    }
}

/// Send `count` numbered UDP requests from `dev` to the echo server, 2 ms apart,
/// and count what arrives there and what comes back (waiting `linger` after the
/// last for stragglers).
pub async fn echo_probe(net: &Net, dev: &Device, count: u32, linger: Duration) -> Echo {
    let target = net.echo();
    let before = net.echoed.load(Ordering::Relaxed);
    let (sent, rtts) = dev
        .spawn(move |_| async move {
            let sock = Arc::new(UdpSocket::bind("0.0.0.0:0").await.expect("bind"));
            let start = Instant::now();
            let rx_sock = sock.clone();
            let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
            let receiver = tokio::spawn(async move {
                let mut rtts = Vec::new();
                let mut seen = vec![false; count as usize];
                let mut buf = [0u8; 64];
                loop {
                    let (n, _) = tokio::select! {
                        _ = &mut stop_rx => break,
                        r = rx_sock.recv_from(&mut buf) => match r {
                            Ok(r) => r,
                            Err(_) => break,
                        },
                    };
                    if n < 12 {
                        continue;
                    }
                    let seq = u32::from_be_bytes(buf[..4].try_into().expect("4 bytes"));
                    let at = u64::from_be_bytes(buf[4..12].try_into().expect("8 bytes"));
                    if let Some(s) = seen.get_mut(seq as usize)
                        && !*s
                    {
                        *s = true;
                        let now = start.elapsed().as_micros() as u64;
                        rtts.push(now.saturating_sub(at) as f64 / 1000.0);
                    }
                }
                rtts
            });
            let mut sent = 0u64;
            for seq in 0..count {
                let mut msg = [0u8; 12];
                msg[..4].copy_from_slice(&seq.to_be_bytes());
                msg[4..].copy_from_slice(&(start.elapsed().as_micros() as u64).to_be_bytes());
                if sock.send_to(&msg, target).await.is_ok() {
                    sent += 1;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            tokio::time::sleep(linger).await;
            let _ = stop_tx.send(());
            let rtts = receiver.await.expect("echo receiver");
            (sent, rtts)
        })
        .expect("device runtime")
        .await
        .expect("echo probe");
    let mut rtts_ms = rtts;
    rtts_ms.sort_by(f64::total_cmp);
    Echo {
        sent,
        arrived: net.echoed.load(Ordering::Relaxed) - before,
        replies: rtts_ms.len() as u64,
        rtts_ms,
    }
}

/// Counters of an impaired router's faults.
#[derive(Debug, Clone)]
pub struct Impairment {
    /// Packets the delay line has carried.
    pub delayed: Arc<AtomicU64>,
}

/// Make every packet `router` forwards wait `delay` and lose `loss_pct` percent of
/// them at random: both directions, each packet once.
pub async fn impair(router: &Router, delay: Duration, loss_pct: u32) -> Impairment {
    const TUN: &str = "delay0";
    let delayed = Arc::new(AtomicU64::new(0));
    let count = delayed.clone();
    let (tx, rx) = oneshot::channel();
    router
        .spawn(move |_| async move {
            let tun = match tokio_tun::Tun::builder().name(TUN).up().build() {
                Ok(mut t) => Arc::new(t.remove(0)),
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                    return;
                }
            };
            let _ = tx.send(Ok(()));
            let (line_tx, mut line_rx) =
                mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
            let reader = tun.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                while let Ok(n) = reader.recv(&mut buf).await {
                    let due = tokio::time::Instant::now() + delay;
                    if line_tx.send((due, buf[..n].to_vec())).is_err() {
                        break;
                    }
                }
            });
            while let Some((due, packet)) = line_rx.recv().await {
                tokio::time::sleep_until(due).await;
                if tun.send(&packet).await.is_ok() {
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
        .expect("router runtime");
    rx.await
        .expect("delay line task")
        .unwrap_or_else(|e| panic!("cannot create the TUN device: {e}"));
    // Packets written back into the TUN come in on it: they must not be dropped
    // for arriving on an interface that is not the route back to their source.
    router
        .run_sync(|| {
            for dev in ["all", "default", TUN] {
                std::fs::write(format!("/proc/sys/net/ipv4/conf/{dev}/rp_filter"), "0")?;
            }
            Ok(())
        })
        .expect("rp_filter");
    let ip = |args: &[&str]| {
        run(|c| router.spawn_command_sync(c), "ip", args, None);
    };
    // Everything forwarded from either side goes through the delay line first;
    // what comes back out of it is routed by the main table as usual.
    ip(&["route", "add", "default", "dev", TUN, "table", "100"]);
    for iface in router.interfaces() {
        let name = iface.name().to_string();
        if name != TUN && name != "lo" {
            ip(&["rule", "add", "iif", &name, "lookup", "100", "pref", "100"]);
        }
    }
    nft_router(
        router,
        &format!(
            "table inet tillmesh_loss {{
                chain forward {{
                    type filter hook forward priority -10; policy accept;
                    oifname \"{TUN}\" numgen random mod 100 < {loss_pct} counter drop
                    oifname \"{TUN}\" counter accept
                }}
            }}\n"
        ),
    );
    Impairment { delayed }
}
