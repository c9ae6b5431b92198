//! Backup benchmarks: a snapshot of a store of a hundred tills' month of sales
//! (time, size, compression), a restore of it into a new till home, and the
//! bundle of one till's day of sales; each made as the daemon makes it, 50 ms
//! per hold of the store, with the longest hold measured.
//!
//! ```text
//! cargo run --release -p tillmesh-sim --bin backup-bench -- [--tills 100] [--days 30]
//!     [--per-day 500] [--dir target/bench-data]
//! ```
//! The store is built once under `--dir` (shared with `store-bench`) and copied
//! before each run, so the benchmark never changes it. Prints a Markdown report;
//! docs/PERFORMANCE.md holds the numbers of record.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use rand::SeedableRng;
use tillmesh_backup::archive::{self, Pick, RestoreSpec};
use tillmesh_backup::{FolderSink, Kind, Sink, format, keys};
use tillmesh_sim::report::flags;
use tillmesh_sim::workload::{self, BigStore};
use tillmesh_store::{DocId, NewStore, Role, Store, StoreOptions, TillKey, TillName};

struct Args {
    big: BigStore,
    dir: PathBuf,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        big: BigStore {
            tills: 100,
            days: 30,
            per_day: 500,
            products: 2000,
        },
        dir: PathBuf::from("target/bench-data"),
    };
    for (flag, v) in flags()? {
        match flag.as_str() {
            "--tills" => a.big.tills = v.parse()?,
            "--days" => a.big.days = v.parse()?,
            "--per-day" => a.big.per_day = v.parse()?,
            "--products" => a.big.products = v.parse()?,
            "--dir" => a.dir = v.into(),
            _ => anyhow::bail!("unknown flag {flag}"),
        }
    }
    Ok(a)
}

fn secs(d: std::time::Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / 1_048_576.0)
}

/// Peak resident memory of this process so far (Linux), in bytes.
fn peak_rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// A backup made as the daemon makes it: the store held [`archive::STEP_TIME`]
/// at a time, then the write off the store.
struct Staged {
    report: tillmesh_backup::BackupReport,
    total: std::time::Duration,
    held: std::time::Duration,
    longest_hold: std::time::Duration,
    write: std::time::Duration,
}

fn staged(store: &mut Store, sink: &FolderSink, kind: Kind) -> Result<Staged> {
    let start = Instant::now();
    let t = Instant::now();
    let mut pending = archive::Pending::start(store, sink, kind)?;
    let mut held = t.elapsed();
    let mut longest_hold = held;
    loop {
        let t = Instant::now();
        let done = pending.step(store, archive::STEP_TIME)?;
        let d = t.elapsed();
        held += d;
        longest_hold = longest_hold.max(d);
        if done {
            break;
        }
    }
    let t = Instant::now();
    let report = pending.write(sink)?;
    let write = t.elapsed();
    Ok(Staged {
        report,
        total: start.elapsed(),
        held,
        longest_hold,
        write,
    })
}

/// What a backup and a restore through the Drive emulator took.
struct DriveRound {
    file_bytes: u64,
    upload: std::time::Duration,
    upload_requests: usize,
    sent_bytes: u64,
    restore: std::time::Duration,
    restore_requests: usize,
    /// Whether the restore from Drive succeeded (the error, if not).
    restored: Result<(), String>,
}

/// Copy every file of `folder` to Drive (the emulator) through the Drive
/// sink, then restore from Drive into a new home.
fn drive_round(
    folder: &FolderSink,
    secrets: &[tillmesh_store::StoreSecret],
    store_id: tillmesh_store::StoreId,
    admin: &TillKey,
    work: &std::path::Path,
) -> Result<DriveRound> {
    use std::sync::Arc;
    use tillmesh_backup::drive::{DriveConfig, DriveSink};
    use tillmesh_backup::oauth::{OAuthClient, RefreshingTokens};
    let e = tillmesh_drive_emulator::Emulator::start(
        "127.0.0.1:0".parse()?,
        tillmesh_drive_emulator::Options {
            auto_approve: true,
            device_interval_s: 1,
            ..Default::default()
        },
    )?;
    let client = OAuthClient::at(e.url(), "bench", None);
    let login = client.device_start(&["https://www.googleapis.com/auth/drive.file"])?;
    let tokens = client.device_wait(&login)?;
    let refresh = tokens.refresh_token.clone().unwrap_or_default();
    let drive = DriveSink::new(
        DriveConfig {
            api: e.url().to_string(),
            folder: "tillmesh-bench".into(),
            app_data: false,
        },
        Arc::new(RefreshingTokens::new(client, refresh, Some(tokens))),
    )?;
    let files = folder.list("")?;
    let file_bytes = files.iter().map(|f| f.size).sum();
    let before = e.requests().len();
    let t = Instant::now();
    for f in &files {
        drive.put(&f.name, &folder.get(&f.name)?)?;
    }
    let upload = t.elapsed();
    let upload_requests = e.requests().len() - before;
    let sent_bytes = e.stats().upload_bytes;
    let before = e.requests().len();
    let t = Instant::now();
    let restored = archive::restore(
        &drive,
        RestoreSpec {
            store_id,
            admin: admin.till_id(),
            secrets,
            recovery: None,
            home: &work.join("restored-from-drive"),
            key: TillKey::generate(),
            till_name: "R2".parse()?,
            certify_with: Some(admin),
            pick: Pick::Newest,
        },
    )
    .map(|_| ())
    .map_err(|e| e.to_string());
    Ok(DriveRound {
        file_bytes,
        upload,
        upload_requests,
        sent_bytes,
        restore: t.elapsed(),
        restore_requests: e.requests().len() - before,
        restored,
    })
}

fn ms(d: std::time::Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn main() -> Result<()> {
    let a = parse_args()?;
    let b = a.big;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let source = a
        .dir
        .join(format!("big-{}x{}x{}", b.tills, b.days, b.per_day));
    let (path, key, admin) = b.build(&source, &mut rng)?;

    let work = a.dir.join("backup-bench");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(work.join("sink"))?;
    let copy = work.join("store.redb");
    std::fs::copy(&path, &copy)?;
    let mut store = Store::open(&copy, key.clone(), StoreOptions::default())?;
    // The till making backups is the admin till, holding the store's key.
    store.set_admin_signer(admin.clone())?;
    store.add_store_secret(keys::generate(1))?;
    let secrets = store.store_secrets()?;
    let sink = FolderSink::new(work.join("sink"))?;

    let staged_snap = staged(&mut store, &sink, Kind::Snapshot)?;
    let snapshot_time = staged_snap.total;
    let snap = staged_snap.report.clone();
    eprintln!("snapshot written in {snapshot_time:.1?}");
    let name = snap.name.clone().expect("a snapshot is written");
    let bytes = sink.get(&name)?;
    let t = Instant::now();
    let (_, contents) = format::open(&bytes, store.store_id(), &secrets, |_| true)?;
    let open_time = t.elapsed();
    let payload: u64 = contents.records.iter().map(|r| r.len() as u64).sum();
    drop(contents);
    let store_file = std::fs::metadata(&copy)?.len();

    // One till's next day of sales, then the bundle the sink lacks.
    let seller = TillKey::generate();
    let till = seller.till_id();
    let tname: TillName = "T999".parse()?;
    store.certify(&admin, till, &tname, Role::Till)?;
    let store_id = store.store_id();
    let day = BigStore::first_day().add_days(b.days as i64);
    let (changes, proofs) = workload::signed_day_of_sales(
        &seller, &store_id, &tname, day, 1, b.per_day, b.products, &mut rng,
    );
    let raw_changes: u64 = changes.iter().map(|c| c.len() as u64).sum();
    store.apply_changes(&DocId::Sales(till, day), &changes, &proofs)?;
    let staged_bundle = staged(&mut store, &sink, Kind::Bundle)?;
    let bundle_time = staged_bundle.total;
    let bundle = staged_bundle.report.clone();
    // The next hour: 50 more sales on a day the sink already holds part of.
    let more = 50;
    let next_hour = workload::day_of_sales(
        till,
        &tname,
        day.add_days(1),
        b.per_day as u64 + 1,
        more,
        b.products,
        &mut rng,
    );
    let next_doc = DocId::Sales(till, day.add_days(1));
    let first_half = &next_hour[..more / 2];
    let proofs = workload::proofs_for(&seller, &store_id, &next_doc, first_half);
    store.apply_changes(&next_doc, first_half, &proofs)?;
    archive::backup(&mut store, &sink, Kind::Bundle)?;
    let proofs = workload::proofs_for(&seller, &store_id, &next_doc, &next_hour);
    store.apply_changes(&next_doc, &next_hour[more / 2..], &proofs)?;
    let partial = archive::backup(&mut store, &sink, Kind::Bundle)?;
    let store_id = store.store_id();
    let docs = store.doc_ids()?.len();
    drop(store);

    let home = work.join("restored");
    let t = Instant::now();
    let restored = archive::restore(
        &sink,
        RestoreSpec {
            store_id,
            admin: admin.till_id(),
            secrets: &secrets,
            recovery: None,
            home: &home,
            key: TillKey::generate(),
            till_name: "R1".parse()?,
            certify_with: Some(&admin),
            pick: Pick::Newest,
        },
    )?;
    let restore_time = t.elapsed();
    eprintln!("restored in {restore_time:.1?}");
    // The restored till adds its own audit document.
    assert!(restored.docs >= docs, "the restore holds every document");
    assert_eq!(restored.bundles.len(), 3, "the bundles are applied");

    // The same files through Google Drive (the emulator on loopback): each
    // uploaded by the Drive sink (resumable, 8 MiB chunks, MD5 checked), then
    // the restore read from Drive.
    let drive = drive_round(&sink, &secrets, store_id, &admin, &work)?;

    // The snapshot imported by a new till's `usb sync` through its daemon: the
    // file opened beside the store, its documents merged a step at a time.
    let mut fresh = Store::create(
        &work.join("usb.redb"),
        TillKey::generate(),
        NewStore {
            store_id,
            store_name: "bench".into(),
            till_name: "U1".parse()?,
            role: Role::Till,
            founder: false,
        },
        StoreOptions::default(),
    )?;
    // A till of the store knows its admin key (from its join), which vouches
    // for the membership document's changes.
    fresh.set_admin_key(admin.till_id())?;
    let (_, contents) = format::open(&bytes, store_id, &secrets, |_| true)?;
    let t = Instant::now();
    let mut import = archive::Import::new(&contents)?;
    drop(contents);
    let mut import_longest = std::time::Duration::ZERO;
    loop {
        let t = Instant::now();
        let done = import.step(&mut fresh, archive::STEP_TIME)?;
        let d = t.elapsed();
        import_longest = import_longest.max(d);
        if done {
            break;
        }
    }
    let import_time = t.elapsed();
    assert!(
        fresh.doc_ids()?.len() >= snap.docs,
        "the import holds every document"
    );
    drop(fresh);

    println!(
        "## Backup of a store of {} tills x {} days x {} sales ({} sales, {} documents)\n",
        b.tills,
        b.days,
        b.per_day,
        b.sales(),
        snap.docs
    );
    println!("| measure | value |");
    println!("|---|---|");
    println!("| store file (redb) | {} |", mib(store_file));
    println!(
        "| snapshot: time to write (save, compress, encrypt, sign, fsync, read back) | {} |",
        secs(snapshot_time)
    );
    println!(
        "| snapshot: file size | {} ({} bytes per sale) |",
        mib(snap.bytes),
        snap.bytes / b.sales()
    );
    println!(
        "| snapshot: Automerge saved documents inside (before zstd) | {} |",
        mib(payload)
    );
    println!(
        "| compression ratio (documents / file) | {:.2} |",
        payload as f64 / snap.bytes as f64
    );
    println!(
        "| compression ratio (store file / snapshot) | {:.1} |",
        store_file as f64 / snap.bytes as f64
    );
    println!(
        "| snapshot: decrypt, verify and decompress | {} |",
        secs(open_time)
    );
    println!(
        "| restore into a new till home (snapshot + 3 bundles, every document through the store's merge path) | {} |",
        secs(restore_time)
    );
    println!(
        "| the snapshot imported by a new till's `usb sync` through its daemon, in steps of {} | {} in all; store held at most {} at a time |",
        ms(archive::STEP_TIME),
        secs(import_time),
        ms(import_longest)
    );
    println!(
        "| bundle of one till's day ({} sales, {} changes): bytes per sale | {} ({} bytes; raw changes {} bytes per sale) |",
        b.per_day,
        bundle.changes,
        bundle.bytes / b.per_day as u64,
        bundle.bytes,
        raw_changes / b.per_day as u64
    );
    println!("| bundle: time to write | {} |", secs(bundle_time));
    for (what, st) in [("snapshot", &staged_snap), ("bundle", &staged_bundle)] {
        println!(
            "| {what}: store held {} in all, at most {} at a time (steps of {}); compress, encrypt, write off the store {} |",
            secs(st.held),
            ms(st.longest_hold),
            ms(archive::STEP_TIME),
            secs(st.write)
        );
    }
    println!(
        "| bundle of {} sales added to a day the sink already holds part of: bytes per sale | {} ({} bytes) |",
        more - more / 2,
        partial.bytes / (more - more / 2) as u64,
        partial.bytes
    );
    println!(
        "| through the Drive emulator on loopback: upload of the snapshot and 3 bundles ({}) | {}; {} requests, {} sent |",
        mib(drive.file_bytes),
        secs(drive.upload),
        drive.upload_requests,
        mib(drive.sent_bytes)
    );
    match &drive.restored {
        Ok(()) => println!(
            "| restore into a new till home read from Drive | {}; {} requests |",
            secs(drive.restore),
            drive.restore_requests
        ),
        Err(e) => println!(
            "| restore into a new till home read from Drive | FAILED after {} ({} requests): {e} |",
            secs(drive.restore),
            drive.restore_requests
        ),
    }
    if let Some(rss) = peak_rss() {
        println!("| peak resident memory of the whole run | {} |", mib(rss));
    }
    println!();
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}
