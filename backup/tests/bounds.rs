//! Every length a file on a sink announces is checked before the file is read:
//! a 4 GiB file (sparse: nothing of it is on disk) with a valid header is refused
//! by name from its header and size alone, and `usb sync` goes on with the rest
//! of the stick.

use std::io::Write;
use std::path::Path;

use tillmesh_backup::archive;
use tillmesh_backup::format::{self, Form, Kind, Writer};
use tillmesh_backup::sink::Object;
use tillmesh_backup::{FolderSink, FormatError, Sink, SinkError, keys};
use tillmesh_store::test_utils::{product, sale, till};
use tillmesh_store::{Role, Store, StoreId, StoreOptions, Tender, TillKey};

/// A folder sink that fails the test if any file is read whole: only headers
/// (`get_start`) may be read.
#[derive(Debug)]
struct HeadersOnly(FolderSink);

impl Sink for HeadersOnly {
    fn describe(&self) -> String {
        self.0.describe()
    }
    fn list(&self, prefix: &str) -> Result<Vec<Object>, SinkError> {
        self.0.list(prefix)
    }
    fn put(&self, name: &str, bytes: &[u8]) -> Result<(), SinkError> {
        self.0.put(name, bytes)
    }
    fn get_limited(&self, name: &str, _max: u64) -> Result<Vec<u8>, SinkError> {
        panic!("{name} was read whole")
    }
    fn get_start(&self, name: &str, len: usize) -> Result<Vec<u8>, SinkError> {
        self.0.get_start(name, len)
    }
    fn delete(&self, name: &str) -> Result<(), SinkError> {
        self.0.delete(name)
    }
    fn free_space(&self) -> Option<u64> {
        self.0.free_space()
    }
}

/// Write `header` with its body length set to `body_len` at `path`, and make
/// the file `size` bytes long (sparse).
fn plant(path: &Path, header: &[u8], body_len: u64, size: u64) {
    let mut h = header[..format::HEADER_LEN].to_vec();
    h[76..84].copy_from_slice(&body_len.to_le_bytes());
    std::fs::create_dir_all(path.parent().expect("parent")).expect("dir");
    let mut f = std::fs::File::create(path).expect("create");
    f.write_all(&h).expect("header");
    f.set_len(size).expect("sparse");
}

#[test]
fn sizes_are_checked_before_a_file_is_read() {
    let (store, till) = (StoreId::random(), TillKey::generate());
    let mut w = Writer::new(Kind::Bundle, store, "Bound Shop");
    w.add("catalog", vec![[1; 32]], Form::Saved, b"tea".to_vec());
    let file = w.finish(&till, &keys::generate(1), 1).expect("file");
    let dir = tempfile::tempdir().expect("dir");
    let root = dir.path();
    const GIB4: u64 = 4 << 30;
    let frame = (format::HEADER_LEN + format::SIGNATURE_LEN) as u64;
    plant(
        &root.join(format!("{store}/bundles/huge.tmb")),
        &file,
        GIB4,
        GIB4 + frame,
    );
    plant(
        &root.join(format!("{store}/bundles/short.tmb")),
        &file,
        1000,
        100,
    );
    plant(
        &root.join(format!("{store}/bundles/long.tmb")),
        &file,
        10,
        10 + frame + 1,
    );
    let sink = HeadersOnly(FolderSink::new(root).expect("sink"));

    let read = |name: &str| {
        let l = archive::list(&sink, store)
            .expect("list")
            .into_iter()
            .find(|l| l.name.ends_with(name))
            .expect("listed");
        archive::read(&sink, &l.name, l.bytes)
            .expect("the sink works")
            .expect_err("refused")
    };
    match read("huge.tmb") {
        FormatError::TooLarge { len, max, .. } => {
            assert_eq!((len, max), (GIB4, format::MAX_BODY));
        }
        other => panic!("want TooLarge, got {other:?}"),
    }
    assert!(matches!(
        read("short.tmb"),
        FormatError::Truncated { have: 100, .. }
    ));
    assert!(matches!(read("long.tmb"), FormatError::TrailingBytes));

    // Whole-file reads are capped too, whoever calls them.
    let folder = FolderSink::new(root).expect("sink");
    assert!(matches!(
        folder.get(&format!("{store}/bundles/huge.tmb")),
        Err(SinkError::TooLarge { .. })
    ));
    // An honest file reads back whole.
    folder
        .put(&format!("{store}/bundles/ok.tmb"), &file)
        .expect("put");
    assert_eq!(
        archive::read(
            &folder,
            &format!("{store}/bundles/ok.tmb"),
            file.len() as u64
        )
        .expect("the sink works")
        .expect("read"),
        file
    );
}

#[test]
fn usb_sync_refuses_a_huge_file_by_name_and_takes_the_rest() {
    let id = StoreId::random();
    let admin = TillKey::generate();
    let mut a = till(id, "A", Role::BackOffice, true, StoreOptions::default());
    let mut b = till(id, "B", Role::Till, false, StoreOptions::default());
    for s in [&mut a, &mut b] {
        s.set_admin_key(admin.till_id()).expect("admin");
    }
    let (ta, tb) = (a.till_id(), b.till_id());
    a.certify(&admin, ta, &"A".parse().expect("n"), Role::BackOffice)
        .expect("cert a");
    a.certify(&admin, tb, &"B".parse().expect("n"), Role::Till)
        .expect("cert b");
    a.add_product(product("TEA", 250)).expect("product");
    let secret = keys::generate(1);
    a.add_store_secret(secret.clone()).expect("secret");
    b.add_store_secret(secret).expect("secret");
    // B learns who the members are, as at its enrolment.
    tillmesh_store::test_utils::sync_from(&mut a, &mut b);
    for _ in 0..3 {
        a.record_sale(sale("TEA", 1, Tender::Cash)).expect("sale");
    }
    let stick = tempfile::tempdir().expect("stick");
    let sink = FolderSink::new(stick.path()).expect("sink");
    let exported = archive::usb_sync(&mut a, &sink, &[], &Default::default()).expect("a");
    let bundle = exported.exported.expect("a bundle of A's");
    let header = sink.get_start(&bundle, format::HEADER_LEN).expect("header");
    let huge = stick.path().join(&bundle).with_file_name("huge.tmb");
    const GIB4: u64 = 4 << 30;
    plant(&huge, &header, GIB4, GIB4 + 148);

    let r = archive::usb_sync(&mut b, &sink, &[], &Default::default()).expect("b syncs");
    assert_eq!(r.refused.len(), 1, "{r:?}");
    assert!(r.refused[0].0.ends_with("huge.tmb"), "{r:?}");
    assert!(
        r.refused[0].1.contains("over the 1073741824-byte limit"),
        "{r:?}"
    );
    assert!(r.imported_changes > 0, "{r:?}");
    assert_eq!(sales(&mut b), 3);
}

fn sales(s: &mut Store) -> usize {
    s.sales(None, None).expect("sales").len()
}
