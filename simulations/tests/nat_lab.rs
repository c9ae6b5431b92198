//! The NAT lab: real till nodes (`tillmesh_mesh::Node`, real iroh endpoints, the
//! store's own relay) in Linux network namespaces built by patchbay, behind NATs,
//! across a broken or lossy, slow network. See docs/nat-lab.md.
//!
//! Every fault is measured before a test relies on it, and the test fails if the
//! fault is not there. Needs root (network namespaces, nftables, a TUN device) and
//! the `nft` and `ip` commands; where any is missing, each test prints what is and
//! passes without running (`TILLMESH_NAT_LAB=require` makes that a failure).
#![cfg(target_os = "linux")]

#[path = "nat_lab/daemons.rs"]
mod daemons;
#[path = "nat_lab/net.rs"]
mod net;
#[path = "nat_lab/shop.rs"]
mod shop;

use std::time::Duration;

use patchbay::{Device, Nat, Router};

use daemons::CliTill;
use net::{Net, echo_probe, http_answers, impair, lab_with_relay, udp_punch};
use shop::{Till, eventually, two_tills};

/// Logs at the level of `TILLMESH_LOG` (default warn).
fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("TILLMESH_LOG").unwrap_or_else(|_| "warn".into()))
        .with_test_writer()
        .try_init();
}

/// Two tills in a new temporary directory, started on `dev_a` and `dev_b` with
/// the store's relay as their only relay, its certificate pinned.
async fn start_two(net: &Net, dev_a: &Device, dev_b: &Device) -> (tempfile::TempDir, Till, Till) {
    let dir = tempfile::tempdir().expect("tempdir");
    let [a, b] = two_tills(dir.path());
    let a = a.start(dev_a, &net.relay_url, Some(&net.relay_cert)).await;
    let b = b.start(dev_b, &net.relay_url, Some(&net.relay_cert)).await;
    (dir, a, b)
}

/// Wait until a sale made on `from` is held by `to`.
async fn arrives(from: &Till, to: &Till, limit: Duration) -> Duration {
    let receipt = from.sell().await;
    let (to_ref, r) = (to, &receipt);
    eventually(
        &format!("a sale made on {} reaches {}", from.name, to.name),
        limit,
        move || async move { to_ref.receipts().await.contains(r) },
    )
    .await
}

/// Wait until `till`'s own diagnostics report a completed sync session with `peer`
/// over a `path` (`direct` or `relay`) path.
async fn link_is(till: &Till, peer: &Till, path: &str, limit: Duration) -> Duration {
    eventually(
        &format!(
            "{}'s sessions with {} run over a {path} path",
            till.name, peer.name
        ),
        limit,
        move || async move {
            till.link_to(peer)
                .is_some_and(|l| l.path == path && l.last_sync.is_some())
        },
    )
    .await
}

/// The two sites of the main tests: till A behind an endpoint-independent
/// ("Moderate": EIM mapping, address-and-port-dependent filtering) home NAT,
/// optionally behind an ISP router of its own (where a link fault goes); till B on
/// a public address (the back office on the store's fixed line, say).
struct Sites {
    nat_a: Router,
    isp_a: Option<Router>,
    dev_a: Device,
    dev_b: Device,
}

async fn sites(net: &Net, with_isp: bool) -> Sites {
    let lab = &net.lab;
    let isp_a = if with_isp {
        Some(lab.add_router("isp_a").build().await.expect("isp_a"))
    } else {
        None
    };
    let mut nat = lab.add_router("nat_a").nat(Nat::Moderate);
    if let Some(isp) = &isp_a {
        nat = nat.upstream(isp.id());
    }
    let nat_a = nat.build().await.expect("nat_a");
    let pub_b = lab.add_router("pub_b").build().await.expect("pub_b");
    let dev_a = lab
        .add_device("till_a")
        .uplink(nat_a.id())
        .build()
        .await
        .expect("till_a");
    let dev_b = lab
        .add_device("till_b")
        .uplink(pub_b.id())
        .build()
        .await
        .expect("till_b");
    Sites {
        nat_a,
        isp_a,
        dev_a,
        dev_b,
    }
}

/// 1. Till A behind a NAT, till B on a public address, the store's relay on the
/// internet side. Knowing only each other's relay, their first connection starts
/// relayed and becomes direct; sales cross both ways, and the mesh's own sync
/// sessions report the direct path.
#[tokio::test]
async fn tills_start_relayed_then_go_direct_and_sync() {
    logs();
    let Some(net) = lab_with_relay().await else {
        return;
    };
    let s = sites(&net, false).await;
    let (_dir, a, b) = start_two(&net, &s.dev_a, &s.dev_b).await;

    // Neither node knows where the other is yet: this is the first connection
    // between the two endpoints, and it knows only B's relay.
    let watch = a.watch_path(&b, Duration::from_secs(30), true).await;
    println!("A->B path: {watch:?}");
    assert_eq!(watch.first, "relay", "the connection starts relayed");
    let direct = watch
        .direct_after
        .expect("the connection became direct within 30 s");
    println!(
        "time to direct path: {direct:?} after the dial (handshake {:?}); direct RTT {:?} ms",
        watch.handshake, watch.last_rtt_ms
    );

    a.learn_relay_addr_of(&b);
    b.learn_relay_addr_of(&a);
    a.node.sync_now();
    b.node.sync_now();
    let ab = arrives(&a, &b, Duration::from_secs(30)).await;
    let ba = arrives(&b, &a, Duration::from_secs(30)).await;
    println!("sale A->B in {ab:?}, B->A in {ba:?}");
    link_is(&a, &b, "direct", Duration::from_secs(30)).await;
    link_is(&b, &a, "direct", Duration::from_secs(30)).await;
    println!("links: A->B {:?}; B->A {:?}", a.link_to(&b), b.link_to(&a));

    a.shutdown().await;
    b.shutdown().await;
}

/// 2. The same sites with every UDP packet between their public addresses dropped
/// on the internet side: no direct path is possible, so the tills stay on the
/// relay (over TCP) and sales made on either side still reach the other.
#[tokio::test]
async fn with_udp_blocked_tills_stay_relayed_and_sync() {
    logs();
    let Some(net) = lab_with_relay().await else {
        return;
    };
    let s = sites(&net, false).await;
    let punch = Duration::from_secs(2);

    // The probe can see a working path: before the block, a hole punch between
    // the two sites gets through both ways.
    let (pa, pb) = udp_punch(&s.dev_a, &s.dev_b, net.reflector(), punch).await;
    println!("UDP hole punch before the block: A got {pa}, B got {pb}");
    assert!(
        pa > 0 && pb > 0,
        "control: the punch works without the block"
    );

    let public_a = s.nat_a.uplink_ip().expect("A's public IPv4");
    let public_b = s.dev_b.ip().expect("B's public IPv4");
    net.block_udp_between(public_a, public_b);
    let (pa, pb) = udp_punch(&s.dev_a, &s.dev_b, net.reflector(), punch).await;
    let dropped = net.udp_block_drops();
    println!("UDP hole punch with the block: A got {pa}, B got {pb}; {dropped} dropped");
    assert_eq!((pa, pb), (0, 0), "no UDP datagram crosses the block");
    assert!(dropped > 0, "the block is what stopped them");
    // TCP to the relay still works from both sides.
    assert!(
        http_answers(&s.dev_a, net.relay_tcp()).await,
        "A reaches the relay over TCP"
    );
    assert!(
        http_answers(&s.dev_b, net.relay_tcp()).await,
        "B reaches the relay over TCP"
    );

    let (_dir, a, b) = start_two(&net, &s.dev_a, &s.dev_b).await;
    // Without the block this goes direct in well under a second (test 1).
    let watch = a.watch_path(&b, Duration::from_secs(10), false).await;
    println!("A->B path with UDP blocked: {watch:?}");
    assert_eq!(watch.first, "relay", "the connection starts relayed");
    assert_eq!(watch.seen, ["relay"], "and never becomes direct");

    a.learn_relay_addr_of(&b);
    b.learn_relay_addr_of(&a);
    a.node.sync_now();
    b.node.sync_now();
    let ab = arrives(&a, &b, Duration::from_secs(30)).await;
    let ba = arrives(&b, &a, Duration::from_secs(30)).await;
    println!("sale A->B in {ab:?}, B->A in {ba:?}");
    link_is(&a, &b, "relay", Duration::from_secs(30)).await;
    link_is(&b, &a, "relay", Duration::from_secs(30)).await;
    println!("links: A->B {:?}; B->A {:?}", a.link_to(&b), b.link_to(&a));

    // Still blocked at the end, and the tills' last sessions were relayed.
    let (pa, pb) = udp_punch(&s.dev_a, &s.dev_b, net.reflector(), punch).await;
    assert_eq!((pa, pb), (0, 0), "the block held throughout");
    println!(
        "UDP packets dropped by the block in all: {}",
        net.udp_block_drops()
    );
    for (x, y) in [(&a, &b), (&b, &a)] {
        let link = x.link_to(y).expect("link");
        assert_eq!(
            link.path, "relay",
            "{} -> {} stayed relayed",
            x.name, y.name
        );
    }

    a.shutdown().await;
    b.shutdown().await;
}

/// 3. Till A's ISP link loses 5% of the packets and delays each by 100 ms, in
/// both directions: the tills still converge on every sale made on either side.
#[tokio::test]
async fn with_loss_and_latency_on_a_link_tills_converge() {
    logs();
    let Some(net) = lab_with_relay().await else {
        return;
    };
    let s = sites(&net, true).await;
    let isp_a = s.isp_a.as_ref().expect("isp_a");

    // Before: the probe sees a clean, fast link.
    let base = echo_probe(&net, &s.dev_a, 100, Duration::from_millis(500)).await;
    println!(
        "before: sent {} arrived {} replies {}; RTT min {:.2} median {:.2} max {:.2} ms",
        base.sent,
        base.arrived,
        base.replies,
        base.rtt_min(),
        base.rtt_median(),
        base.rtt_max()
    );
    assert!(base.replies + 1 >= base.sent, "control: no loss before");
    assert!(base.rtt_median() < 50.0, "control: fast before");

    let fault = impair(isp_a, Duration::from_millis(100), 5).await;
    let m = echo_probe(&net, &s.dev_a, 1000, Duration::from_millis(1500)).await;
    println!(
        "impaired: sent {} arrived {} replies {}; loss up {:.1}% down {:.1}%; \
         RTT min {:.1} median {:.1} max {:.1} ms",
        m.sent,
        m.arrived,
        m.replies,
        m.up_loss() * 100.0,
        m.down_loss() * 100.0,
        m.rtt_min(),
        m.rtt_median(),
        m.rtt_max()
    );
    for (dir, loss) in [("up", m.up_loss()), ("down", m.down_loss())] {
        assert!(
            (0.02..=0.15).contains(&loss),
            "{dir}stream loss {:.1}% is not about 5%",
            loss * 100.0
        );
    }
    assert!(
        m.rtt_min() >= 195.0,
        "every round trip crosses the 100 ms delay twice"
    );

    let (_dir, a, b) = start_two(&net, &s.dev_a, &s.dev_b).await;
    a.learn_relay_addr_of(&b);
    b.learn_relay_addr_of(&a);
    a.node.sync_now();
    b.node.sync_now();
    let mut made = std::collections::BTreeSet::new();
    for _ in 0..3 {
        made.insert(a.sell().await);
        made.insert(b.sell().await);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (ra, rb, made_ref) = (&a, &b, &made);
    let took = eventually(
        "both tills hold all six sales",
        Duration::from_secs(90),
        move || async move { ra.receipts().await == *made_ref && rb.receipts().await == *made_ref },
    )
    .await;
    println!("converged {took:?} after the last sale");
    // Anti-entropy sessions, not only gossip, complete across the fault.
    for (x, y) in [(&a, &b), (&b, &a)] {
        let what = format!("{} completes a sync session with {}", x.name, y.name);
        eventually(&what, Duration::from_secs(60), move || async move {
            x.link_to(y).is_some_and(|l| l.last_sync.is_some())
        })
        .await;
    }
    println!("links: A->B {:?}; B->A {:?}", a.link_to(&b), b.link_to(&a));

    // The fault was there all along.
    let after = echo_probe(&net, &s.dev_a, 200, Duration::from_millis(1500)).await;
    println!(
        "after: sent {} arrived {} replies {}; RTT min {:.1} ms; {} packets delayed in all",
        after.sent,
        after.arrived,
        after.replies,
        after.rtt_min(),
        fault.delayed.load(std::sync::atomic::Ordering::Relaxed)
    );
    assert!(after.replies < after.sent, "still lossy");
    assert!(after.rtt_min() >= 195.0, "still slow");

    a.shutdown().await;
    b.shutdown().await;
}

/// Two tills each behind an endpoint-independent ("Moderate") NAT go direct too:
/// each learns its public (NAT-mapped) address from the store's relay (QUIC
/// address discovery, trusted by the relay's pinned certificate), tells the
/// other, and iroh hole-punches the pair.
#[tokio::test]
async fn tills_behind_two_moderate_nats_go_direct() {
    logs();
    let Some(net) = lab_with_relay().await else {
        return;
    };
    let lab = &net.lab;
    let mut devs = Vec::new();
    for site in ["a", "b"] {
        let nat = lab
            .add_router(&format!("nat_{site}"))
            .nat(Nat::Moderate)
            .build()
            .await
            .expect("nat");
        devs.push(
            lab.add_device(&format!("till_{site}"))
                .uplink(nat.id())
                .build()
                .await
                .expect("till"),
        );
    }
    let (_dir, a, b) = start_two(&net, &devs[0], &devs[1]).await;
    let watch = a.watch_path(&b, Duration::from_secs(15), true).await;
    println!("A->B path: {watch:?}");
    assert_eq!(watch.first, "relay", "the connection starts relayed");
    assert!(
        watch.direct_after.is_some(),
        "the connection became direct within 15 s"
    );
    a.shutdown().await;
    b.shutdown().await;
}

/// 5. Two tills on one shop LAN with no relay, neither knowing the other's
/// address: they find each other by mDNS and sync both ways. The control: an
/// endpoint on the same LAN without mDNS, knowing B's id only, cannot reach B.
#[tokio::test]
async fn tills_on_one_lan_find_each_other_by_mdns() {
    logs();
    let Some(net) = lab_with_relay().await else {
        return;
    };
    let lab = &net.lab;
    let shop = lab.add_router("shop").build().await.expect("shop LAN");
    let mut devs = Vec::new();
    for name in ["till_a", "till_b", "probe"] {
        devs.push(
            lab.add_device(name)
                .uplink(shop.id())
                .build()
                .await
                .expect("device"),
        );
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let [a, b] = two_tills(dir.path());
    let a = a.start_without_relay(&devs[0], true).await;
    let b = b.start_without_relay(&devs[1], true).await;

    let b_id = iroh::EndpointId::from_bytes(b.id.as_bytes()).expect("endpoint id");
    let reached = devs[2]
        .spawn(move |_| async move {
            let ep = tillmesh_mesh::endpoint(
                &tillmesh_store::TillKey::generate(),
                Some(std::net::SocketAddr::from(([0, 0, 0, 0], 0))),
                &[],
                &Default::default(),
                None::<NoHooks>,
            )
            .await
            .expect("probe endpoint");
            let r = tokio::time::timeout(
                Duration::from_secs(5),
                ep.connect(
                    iroh::EndpointAddr::new(b_id),
                    tillmesh_mesh::wire::SYNC_ALPN,
                ),
            )
            .await;
            ep.close().await;
            matches!(r, Ok(Ok(_)))
        })
        .expect("probe runtime")
        .await
        .expect("probe task");
    assert!(!reached, "without mDNS, B's id alone leads nowhere");

    let took = arrives(&a, &b, Duration::from_secs(30)).await;
    println!("A's sale reached B in {took:?}");
    arrives(&b, &a, Duration::from_secs(30)).await;
    a.shutdown().await;
    b.shutdown().await;
}

#[derive(Debug)]
struct NoHooks;
impl iroh::endpoint::EndpointHooks for NoHooks {}

/// 7. Two tills run by `tillmesh run`, each on a site of its own, with a
/// Google Drive (the emulator) on the internet that both reach. With every
/// packet between the two sites, and between each and the store's relay, cut,
/// no mesh path is left: sales cross through the store's Drive folder on the
/// daemons' schedule, and `status` shows the other till on the path `drive`.
/// Once the cut is lifted, the mesh carries them again and `status` shows
/// `direct` or `relay`.
#[tokio::test]
async fn tills_cut_off_from_each_other_converge_through_drive_and_return_to_the_mesh() {
    logs();
    let Some(net) = lab_with_relay().await else {
        return;
    };
    let lab = &net.lab;
    let mut devs = Vec::new();
    for (router, device) in [
        ("site_a", "till_a"),
        ("site_b", "till_b"),
        ("google", "drive"),
    ] {
        let r = lab.add_router(router).build().await.expect("router");
        devs.push(
            lab.add_device(device)
                .uplink(r.id())
                .build()
                .await
                .expect("device"),
        );
    }
    let ip = |d: &Device| d.ip().expect("IPv4");
    let (ip_a, ip_b, ip_drive) = (ip(&devs[0]), ip(&devs[1]), ip(&devs[2]));
    let drive_addr = std::net::SocketAddr::from((ip_drive, 8790));
    devs[2]
        .spawn(move |_| async move {
            let options = tillmesh_drive_emulator::Options {
                auto_approve: true,
                device_interval_s: 1,
                ..Default::default()
            };
            if let Err(e) = tillmesh_drive_emulator::Emulator::serve(drive_addr, options).await {
                eprintln!("the Drive emulator stopped: {e}");
            }
        })
        .expect("emulator runtime");
    let drive_url = format!("http://{drive_addr}");

    let dir = tempfile::tempdir().expect("tempdir");
    let mut a = CliTill::new(dir.path(), "a", &devs[0]);
    let mut b = CliTill::new(dir.path(), "b", &devs[1]);
    a.ok(&["init", "--store", "Two Sites", "--till", "A"]);
    a.ok(&["relays", "add", &net.relay_url, "--cert", &net.relay_cert]);
    a.ok(&["product", "add", "TEA", "--name", "Tea", "--price", "2.00"]);
    // Anti-entropy every 2 s, the Drive mailbox every 2 s while no mesh path.
    let run_args = ["--sync-interval", "2", "--mailbox-every", "2"];
    a.start(&run_args);
    let ticket = a.ok(&["invite"]);
    let joined = b.ok(&["join", ticket.trim(), "--till", "B", "--bind", "0.0.0.0:0"]);
    assert!(joined.contains("Joined"), "{joined}");
    b.start(&run_args);
    daemons::wait("B to hold the store's backup keys", 60, || {
        b.json(&["keys", "list"])["keys"]
            .as_array()
            .is_some_and(|k| !k.is_empty())
    });
    for t in [&mut a, &mut b] {
        t.set_env("TILLMESH_GOOGLE_ENDPOINT", &drive_url);
        t.set_env("TILLMESH_GOOGLE_CLIENT_ID", "till-app");
    }
    // The device flow: the emulator approves it at once.
    let login = a.ok(&["drive", "login", "--device"]);
    assert!(login.contains(&drive_url), "{login}");
    daemons::wait("B to take the store's Google login", 60, || {
        b.json(&["drive", "status"])["logged_in"] == true
    });
    for t in [&a, &b] {
        t.ok(&["sink", "add", "mail", "drive", "mailbox"]);
    }

    // The mesh first.
    let first = a.sell("TEA");
    daemons::wait("A's first sale to reach B over the mesh", 60, || {
        b.receipts().contains(&first)
    });
    let (path, _) = b.path_to("A");
    assert!(path == "direct" || path == "relay", "B sees A on {path}");

    // Cut the sites off from each other and from the relay; Drive stays.
    net.cut_between(&[(ip_a, ip_b), (ip_a, net.relay_ip()), (ip_b, net.relay_ip())]);
    assert!(
        !http_answers(&devs[0], net.relay_tcp()).await,
        "A no longer reaches the relay"
    );
    assert!(
        http_answers(&devs[0], drive_addr).await && http_answers(&devs[1], drive_addr).await,
        "both still reach Google Drive"
    );
    let cut_at = std::time::Instant::now();
    let second = a.sell("TEA");
    let took = daemons::wait("A's sale to reach B through Drive", 120, || {
        b.receipts().contains(&second)
    });
    println!("with no mesh path, A's sale reached B through Drive in {took:?}");
    daemons::wait("B to show A on the path drive", 30, || {
        b.path_to("A").0 == "drive"
    });
    let third = b.sell("TEA");
    daemons::wait("B's sale to reach A through Drive", 120, || {
        a.receipts().contains(&third)
    });
    daemons::wait("A to show B on the path drive", 30, || {
        a.path_to("B").0 == "drive"
    });
    assert!(net.cut_drops() > 0, "the cut is what kept them apart");
    let audit = a.json(&["audit"]).to_string();
    assert!(
        audit.contains("drive-sync"),
        "A's syncs through Drive are on record"
    );
    println!("cut for {:?}", cut_at.elapsed());

    // The mesh returns.
    net.lift_cut();
    let took = daemons::wait("B to show A on the mesh again", 120, || {
        let (path, _) = b.path_to("A");
        path == "direct" || path == "relay"
    });
    println!("after the cut was lifted, B saw A over the mesh again in {took:?}");
    daemons::wait("A to show B on the mesh again", 60, || {
        let (path, _) = a.path_to("B");
        path == "direct" || path == "relay"
    });
    let fourth = a.sell("TEA");
    daemons::wait("A's sale to reach B over the mesh again", 60, || {
        b.receipts().contains(&fourth)
    });
    let (mut ra, mut rb) = (a.receipts(), b.receipts());
    ra.sort();
    rb.sort();
    assert_eq!(ra.len(), 4);
    assert_eq!(ra, rb, "both tills hold every sale");
}
