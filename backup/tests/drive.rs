//! The Drive sink against the Drive emulator: uploads small and large,
//! interrupted and resumed, rate limits, expired and revoked tokens, a full
//! Drive, a folder deleted behind the sink's back, the logins, and every
//! request held to the discovery document.

use std::sync::Arc;

use tillmesh_backup::drive::{AccessTokens, DriveConfig, DriveSink};
use tillmesh_backup::oauth::{
    AuthRequest, LoopbackRedirect, OAuthClient, OAuthError, RefreshingTokens,
};
use tillmesh_backup::sink::{Sink, SinkErrorKind};
use tillmesh_drive_emulator::{Emulator, FaultAction, Options, Route};

const FILE_SCOPE: &str = "https://www.googleapis.com/auth/drive.file";
const APPDATA_SCOPE: &str = "https://www.googleapis.com/auth/drive.appdata";

fn emulator(options: Options) -> Emulator {
    Emulator::start("127.0.0.1:0".parse().expect("addr"), options).expect("emulator")
}

/// A device login, approved at once: the refresh token.
fn login(e: &Emulator, scopes: &[&str]) -> (OAuthClient, String) {
    let client = OAuthClient::at(e.url(), "till-client", Some("not-a-secret"));
    let started = client.device_start(scopes).expect("device code");
    assert!(started.verification_url.starts_with(e.url()));
    assert_eq!(e.approve(), 1);
    let tokens = client.device_wait(&started).expect("approved");
    (client, tokens.refresh_token.expect("a refresh token"))
}

fn sink(e: &Emulator, app_data: bool) -> DriveSink {
    let scope = if app_data { APPDATA_SCOPE } else { FILE_SCOPE };
    let (client, refresh) = login(e, &[scope]);
    let tokens: Arc<dyn AccessTokens> = Arc::new(RefreshingTokens::new(client, refresh, None));
    DriveSink::new(
        DriveConfig {
            api: e.url().to_string(),
            folder: "tillmesh-test-store".into(),
            app_data,
        },
        tokens,
    )
    .expect("sink")
    .with_chunk(256 * 1024)
    .with_pace(0.001)
}

fn quick() -> Options {
    Options {
        device_interval_s: 1,
        ..Options::default()
    }
}

fn bytes(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn files_go_up_and_come_back_in_my_drive_and_in_app_data() {
    for app_data in [false, true] {
        let e = emulator(quick());
        let s = sink(&e, app_data);
        let small = bytes(10_000, 1);
        let large = bytes(6 * 1024 * 1024 + 123, 2);
        s.put("s/snapshots/a.tms", &small).expect("small");
        s.put("s/bundles/b.tms", &large).expect("large");
        // Replacing keeps one object of that name.
        s.put("s/snapshots/a.tms", &small[..5000]).expect("replace");
        let listed = s.list("s/").expect("list");
        let names: Vec<_> = listed.iter().map(|o| (o.name.as_str(), o.size)).collect();
        assert_eq!(
            names,
            vec![
                ("s/bundles/b.tms", large.len() as u64),
                ("s/snapshots/a.tms", 5000)
            ]
        );
        assert_eq!(s.list("s/snapshots/").expect("list").len(), 1);
        assert_eq!(s.get("s/bundles/b.tms").expect("get"), large);
        assert_eq!(
            s.get_start("s/bundles/b.tms", 100).expect("start"),
            large[..100]
        );
        assert_eq!(
            s.get_limited("s/bundles/b.tms", 1000)
                .expect_err("too large")
                .kind(),
            SinkErrorKind::Damaged
        );
        s.delete("s/snapshots/a.tms").expect("delete");
        assert_eq!(
            s.get("s/snapshots/a.tms").expect_err("gone").kind(),
            SinkErrorKind::NotFound
        );
        assert_eq!(s.free_space(), None, "unlimited");
        e.set_quota(Some(100 << 20));
        let free = s.free_space().expect("free");
        assert_eq!(free, (100 << 20) - large.len() as u64);
        let problems = tillmesh_drive_emulator::discovery::check_requests(&e.requests());
        assert!(problems.is_empty(), "{problems:#?}");
    }
}

#[test]
fn a_large_file_goes_up_in_the_default_chunks() {
    let e = emulator(quick());
    // The sink as `sink add` makes it: 8 MiB chunks.
    let s = sink(&e, false).with_chunk(tillmesh_backup::drive::DEFAULT_CHUNK);
    let big = bytes(9 * 1024 * 1024 + 7, 9);
    s.put("s/snapshots/nine.tms", &big).expect("put");
    assert_eq!(s.get("s/snapshots/nine.tms").expect("get"), big);
    let chunks = e.requests().iter().filter(|r| r.method == "PUT").count();
    assert_eq!(chunks, 2, "8 MiB, then the rest");
}

#[test]
fn an_upload_cut_three_times_resumes_without_sending_finished_chunks_again() {
    let e = emulator(quick());
    let s = sink(&e, false).with_chunk(1024 * 1024);
    let big = bytes(20 * 1024 * 1024, 3);
    // Three chunks are cut part way, at different points, and one is only
    // partly kept.
    e.inject(Route::UploadChunk, FaultAction::DropAfter(300_000), 1);
    e.inject(Route::UploadChunk, FaultAction::PersistOnly(512 * 1024), 1);
    e.inject(Route::UploadChunk, FaultAction::DropAfter(700_000), 1);
    e.inject(Route::UploadChunk, FaultAction::DropAfter(1), 1);
    let before = e.stats().upload_bytes;
    s.put("s/snapshots/big.tms", &big).expect("put");
    let sent = e.stats().upload_bytes - before;
    assert_eq!(s.get("s/snapshots/big.tms").expect("get"), big);
    // Only the cut chunks went again: at most four chunks more than the file
    // (and the metadata of the request that began the session).
    assert!(sent >= big.len() as u64, "sent {sent}");
    assert!(
        sent <= big.len() as u64 + 4 * 1024 * 1024 + 1024,
        "sent {sent}"
    );
}

#[test]
fn rate_limits_and_server_errors_are_ridden_out() {
    let e = emulator(quick());
    let s = sink(&e, false);
    e.inject(
        Route::AnyDrive,
        FaultAction::Status(429, "rateLimitExceeded"),
        2,
    );
    e.inject(
        Route::AnyDrive,
        FaultAction::Status(403, "userRateLimitExceeded"),
        2,
    );
    e.inject(Route::AnyDrive, FaultAction::Status(503, "backendError"), 2);
    s.put("s/a", b"sale").expect("put through the storm");
    assert_eq!(s.get("s/a").expect("get"), b"sale");
    // Something that is not a rate limit is not retried.
    e.inject(Route::List, FaultAction::Status(400, "badRequest"), 1);
    assert_eq!(
        s.list("s/").expect_err("bad").kind(),
        SinkErrorKind::Invalid
    );
}

#[test]
fn an_expired_access_token_is_refreshed_and_a_revoked_login_says_what_to_do() {
    let e = emulator(quick());
    let s = sink(&e, false);
    s.put("s/a", b"one").expect("put");
    let refreshes = e.stats().refreshes;
    e.expire_access_tokens();
    s.put("s/b", b"two").expect("put after expiry");
    assert!(e.stats().refreshes > refreshes, "refreshed");
    e.revoke_all();
    let err = s.put("s/c", b"three").expect_err("revoked");
    assert_eq!(err.kind(), SinkErrorKind::Auth);
    assert!(err.to_string().contains("tillmesh drive login"), "{err}");
}

#[test]
fn a_full_drive_is_a_quota_error_and_nothing_half_written_stays() {
    let e = emulator(quick());
    let s = sink(&e, false);
    s.put("s/a", &bytes(1000, 4)).expect("put");
    e.set_quota(Some(1500));
    let err = s.put("s/b", &bytes(1000, 5)).expect_err("full");
    assert_eq!(err.kind(), SinkErrorKind::Quota);
    assert_eq!(e.file_names(), vec!["s/a".to_string()]);
    // Room made, it goes.
    s.delete("s/a").expect("delete");
    s.put("s/b", &bytes(1000, 5)).expect("put");
}

#[test]
fn a_store_folder_deleted_by_its_owner_is_made_again() {
    let e = emulator(quick());
    let s = sink(&e, false);
    s.put("s/a", b"one").expect("put");
    assert_eq!(e.delete_named("tillmesh-test-store"), 2);
    s.put("s/b", b"two").expect("put into a new folder");
    assert_eq!(s.list("s/").expect("list").len(), 1);
    assert_eq!(s.get("s/b").expect("get"), b"two");
}

#[test]
fn a_browser_login_with_pkce_brings_back_a_refresh_token() {
    let e = emulator(Options {
        auto_approve: true,
        ..quick()
    });
    let client = OAuthClient::at(e.url(), "till-client", None);
    let redirect = LoopbackRedirect::bind().expect("bind");
    let req = AuthRequest::new(
        &client.auth_uri,
        &client.client_id,
        &redirect.uri(),
        &[FILE_SCOPE],
    );
    let url = req.url();
    // The operator's browser: follows the emulator's redirect to the loopback.
    let browser = std::thread::spawn(move || {
        assert_eq!(tillmesh_drive_emulator::browse(&url).expect("browser"), 200);
    });
    let code = redirect
        .wait(&req.state, std::time::Duration::from_secs(20))
        .expect("code");
    browser.join().expect("browser");
    // The code is bound to the verifier: another one is refused.
    let wrong = client.exchange(
        &code,
        "not-the-verifier-not-the-verifier-not-the-ver",
        &redirect.uri(),
    );
    assert!(matches!(wrong, Err(OAuthError::Refused(_))), "{wrong:?}");
    // (A refused exchange spends the code, as Google's does.)
    let redirect2 = LoopbackRedirect::bind().expect("bind");
    let req2 = AuthRequest::new(
        &client.auth_uri,
        &client.client_id,
        &redirect2.uri(),
        &[FILE_SCOPE],
    );
    let url2 = req2.url();
    let browser = std::thread::spawn(move || {
        assert_eq!(
            tillmesh_drive_emulator::browse(&url2).expect("browser"),
            200
        );
    });
    let code2 = redirect2
        .wait(&req2.state, std::time::Duration::from_secs(20))
        .expect("code");
    browser.join().expect("browser");
    let tokens = client
        .exchange(&code2, &req2.pkce.verifier, &redirect2.uri())
        .expect("tokens");
    let refresh = tokens.refresh_token.clone().expect("refresh token");
    assert!(tokens.fresh());
    assert_eq!(tokens.scope, FILE_SCOPE);
    // Revoked, the refresh token is refused.
    client.revoke(&refresh).expect("revoke");
    assert!(matches!(
        client.refresh(&refresh),
        Err(OAuthError::Refused(_))
    ));
    assert_eq!(e.stats().revocations, 1);
}

#[test]
fn a_device_login_waits_for_approval_and_refuses_scopes_google_refuses() {
    let e = emulator(quick());
    let client = OAuthClient::at(e.url(), "till-client", Some("s"));
    let wide = client.device_start(&["https://www.googleapis.com/auth/drive"]);
    assert!(matches!(wide, Err(OAuthError::Provider(_))), "{wide:?}");
    let started = client.device_start(&[FILE_SCOPE]).expect("start");
    let denied = {
        let e2 = &e;
        std::thread::scope(|sc| {
            sc.spawn(|| {
                std::thread::sleep(std::time::Duration::from_millis(1500));
                e2.deny();
            });
            client.device_wait(&started)
        })
    };
    assert!(matches!(denied, Err(OAuthError::Refused(_))), "{denied:?}");
}

#[test]
fn the_emulators_answers_fit_the_discovery_document() {
    use tillmesh_drive_emulator::discovery::check_resource;
    let e = emulator(quick());
    let s = sink(&e, false);
    s.put("s/a", b"some bytes").expect("put");
    let (client, refresh) = login(&e, &[FILE_SCOPE]);
    let token = client.refresh(&refresh).expect("token").access_token;
    let other = OAuthClient::at(e.url(), "another-app", None);
    let started = other.device_start(&[FILE_SCOPE]).expect("start");
    e.approve();
    let other_token = other.device_wait(&started).expect("tokens").access_token;
    let http = tillmesh_backup::drive::http_client().expect("client");
    let get = |token: &str, path: &str, query: &[(&str, &str)]| -> serde_json::Value {
        http.get(format!("{}{path}", e.url()))
            .bearer_auth(token)
            .query(query)
            .send()
            .expect("send")
            .json()
            .expect("json")
    };
    // drive.file shows a client the files it made, and no other's.
    let none = get(&other_token, "/drive/v3/files", &[("fields", "*")]);
    assert_eq!(none["files"].as_array().map(Vec::len), Some(0), "{none}");
    let all = get(
        &token,
        "/drive/v3/files",
        &[("fields", "*"), ("q", "trashed = false")],
    );
    assert_eq!(
        all["files"].as_array().map(Vec::len),
        Some(2),
        "the folder and the file"
    );
    let problems = check_resource("FileList", &all);
    assert!(problems.is_empty(), "{problems:#?}");
    let about = get(&token, "/drive/v3/about", &[("fields", "*")]);
    let problems = check_resource("About", &about);
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(
        about["storageQuota"]["usage"].is_string(),
        "int64 as a string"
    );
    assert!(!check_resource("About", &serde_json::json!({"maxUploadSize": 5})).is_empty());
    let r = http
        .get(format!("{}/drive/v3/about", e.url()))
        .bearer_auth(&token)
        .send()
        .expect("send");
    assert_eq!(r.status().as_u16(), 400, "about.get needs fields");
    let body: serde_json::Value = r.json().expect("json");
    assert_eq!(body["error"]["errors"][0]["reason"], "required");
    let r = http
        .get(format!("{}/drive/v3/files", e.url()))
        .send()
        .expect("send");
    assert_eq!(r.status().as_u16(), 401);
    let r = http
        .get(format!("{}/drive/v3/files", e.url()))
        .bearer_auth(&token)
        .query(&[("q", "size > 3")])
        .send()
        .expect("send");
    assert_eq!(r.status().as_u16(), 400, "an unknown term is refused");
}
