//! The web dashboard in a real headless browser (chromium, driven through
//! chromedriver): it signs in with the one-time code `tillmesh dashboard`
//! prints, shows the tills and a backup's progress, changes when a till stops
//! without a reload, and shows the last known state, marked stale, once the daemon is down, also
//! after a reload (the service worker keeps the page).

use crate::common::http::Api;
use crate::common::{Till, wait_for};
use tillmesh_sim::browser::Browser;

/// Whether the dashboard's table shows till `name` online (`"true"`) or not.
fn till_shown(name: &str, online: bool) -> String {
    format!(
        "const r = document.querySelector('#tills tr[data-till=\"{name}\"]'); \
         return !!r && r.dataset.online === '{online}';"
    )
}

#[test]
fn the_dashboard_shows_the_mesh_live_and_its_last_state_when_the_daemon_is_down() {
    let Some(browser) = Browser::start() else {
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    let a = Till::new(dir.path(), "a");
    a.ok(&["init", "--store", "Corner Shop", "--till", "A"]);
    a.ok(&["product", "add", "TEA", "--name", "Tea", "--price", "2.00"]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port()
        .to_string();
    let da = a.start(&["--api-port", &port]);
    let b = Till::new(dir.path(), "b");
    b.join(&a, "B");
    let db = b.start(&[]);
    a.ok(&["sale", "--line", "TEA", "--tender", "cash"]);
    let nas = dir.path().join("nas");
    std::fs::create_dir(&nas).expect("nas");
    a.ok(&["sink", "add", "nas", "folder", nas.to_str().expect("path")]);
    a.ok(&["backup"]);
    wait_for("A to see B online", || {
        a.json(&["status"])["tills"]
            .as_array()
            .is_some_and(|t| t.iter().any(|r| r["name"] == "B" && r["online"] == true))
    });

    // Without a session the page's data is closed; the page itself is not.
    let api = Api::of(&a);
    let anonymous = Api {
        token: String::new(),
        ..api.clone()
    };
    assert_eq!(anonymous.get("/v1/status").status, 401);
    assert_eq!(anonymous.get("/").status, 200);

    let code = a.json(&["dashboard"]);
    let url = code["url"].as_str().expect("url");
    assert!(
        url.starts_with(&format!("http://127.0.0.1:{port}/?code=")),
        "{url}"
    );
    browser.goto(url);
    browser.wait_until(
        30,
        "the live dashboard",
        "return document.body.dataset.state === 'live';",
    );
    browser.wait_until(30, "B shown online", &till_shown("B", true));
    assert_eq!(
        browser.eval("return location.search;"),
        "",
        "the code left the address bar"
    );
    browser.wait_until(
        30,
        "the sink's backup",
        "const r = document.querySelector('#sinks tr[data-sink=\"nas\"]'); \
         return !!r && r.textContent.includes('ago');",
    );
    // A backup shows its progress while it runs, and goes from the list
    // when it ends (an observer in the page keeps what the list showed).
    browser.eval(
        "window.seenJobs = []; new MutationObserver(() => { \
         for (const li of document.querySelectorAll('#jobs li')) window.seenJobs.push(li.textContent); \
         }).observe(document.getElementById('jobs'), {childList: true, subtree: true}); return true;",
    );
    a.ok(&["backup"]);
    browser.wait_until(
        30,
        "the backup's progress shown",
        "return window.seenJobs.some((t) => t.startsWith('backup: ') && t.includes('/'));",
    );
    browser.wait_until(
        30,
        "the finished backup gone from the list",
        "return document.getElementById('work').hidden && \
         document.querySelectorAll('#jobs li').length === 0;",
    );
    let text = browser.eval("return document.body.innerText;");
    let text = text.as_str().expect("text");
    assert!(
        text.contains("Corner Shop") && text.contains("this till"),
        "{text}"
    );
    // The code worked once.
    let again = anonymous.post(
        "/dashboard/session",
        &serde_json::json!({ "code": code["code"] }),
    );
    assert_eq!(again.status, 401);
    let png = browser.screenshot();
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    if let Ok(path) = std::env::var("TILLMESH_SCREENSHOT") {
        std::fs::write(path, &png).expect("screenshot");
    }
    browser.wait_until(
        30,
        "the service worker to keep the page",
        "return !!navigator.serviceWorker && !!navigator.serviceWorker.controller;",
    );

    // B stops: the page shows it offline, without a reload.
    browser.eval("window.notReloaded = true; return true;");
    db.stop();
    browser.wait_until(90, "B shown offline", &till_shown("B", false));
    assert_eq!(browser.eval("return window.notReloaded === true;"), true);

    // The daemon stops: the last state, marked stale.
    da.stop();
    browser.wait_until(
        30,
        "the stale state",
        "return document.body.dataset.state === 'stale' && \
         document.getElementById('stale').textContent.includes('cannot be reached');",
    );
    assert_eq!(browser.eval("return window.notReloaded === true;"), true);
    // Opened again with the daemon down: the kept page, the kept state.
    browser.goto(&format!("http://127.0.0.1:{port}/"));
    browser.wait_until(
        30,
        "the stale state after a reload",
        "return document.body.dataset.state === 'stale' && \
         !!document.querySelector('#tills tr[data-till=\"B\"]');",
    );
}
