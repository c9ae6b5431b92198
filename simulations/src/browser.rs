//! A real headless browser: Debian's chromium, driven through chromedriver
//! over the W3C WebDriver protocol (plain HTTP on loopback). Every address
//! other than loopback goes to a dead proxy, so the browser reaches nothing
//! beyond this machine.
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// A chromedriver with one browser session, stopped on drop.
#[derive(Debug)]
pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
    _profile: tempfile::TempDir,
}

fn find(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Browser {
    /// Start chromium headless, or say why not and give `None`; with
    /// `TILLMESH_BROWSER=require` (CI) a missing browser fails the test.
    pub fn start() -> Option<Browser> {
        let chromium = find(&["chromium", "chromium-browser"]);
        let driver = find(&["chromedriver"]);
        let (Some(chromium), Some(driver)) = (chromium, driver) else {
            let why = "chromium and chromedriver are not installed \
                       (apt-get install chromium chromium-driver; scripts/test does it as root)";
            assert!(
                std::env::var("TILLMESH_BROWSER").as_deref() != Ok("require"),
                "TILLMESH_BROWSER=require: {why}"
            );
            eprintln!("skipped: {why}");
            return None;
        };
        let port = free_port();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let profile = tempfile::tempdir().expect("profile dir");
        let mut b = Browser {
            driver: child,
            port,
            session: String::new(),
            _profile: profile,
        };
        let start = Instant::now();
        while b.call("GET", "/status", None).is_none() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "chromedriver did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let args = [
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--window-size=1100,760".into(),
            format!("--user-data-dir={}", b._profile.path().display()),
            "--no-first-run".into(),
            "--no-default-browser-check".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-domain-reliability".into(),
            "--no-pings".into(),
            // Nothing but loopback: every other address meets a closed port.
            "--proxy-server=http://127.0.0.1:9".into(),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium.display().to_string(), "args": args},
        }}});
        let reply = b
            .call("POST", "/session", Some(&caps))
            .expect("a browser session");
        b.session = reply["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {reply}"))
            .to_string();
        Some(b)
    }

    /// One WebDriver command; `None` when chromedriver cannot be reached.
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Option<Value> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(60))).ok()?;
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            self.port,
            body.len()
        );
        s.write_all(head.as_bytes()).ok()?;
        s.write_all(body.as_bytes()).ok()?;
        // chromedriver keeps the connection open: read the head, then as
        // many bytes as it says.
        let mut raw = Vec::new();
        let mut buf = [0u8; 8192];
        let split = loop {
            if let Some(p) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break p;
            }
            let n = s.read(&mut buf).ok()?;
            if n == 0 {
                return None;
            }
            raw.extend_from_slice(&buf[..n]);
        };
        let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())?;
        let mut body = raw[split + 4..].to_vec();
        while body.len() < len {
            let n = s.read(&mut buf).ok()?;
            if n == 0 {
                return None;
            }
            body.extend_from_slice(&buf[..n]);
        }
        serde_json::from_slice(&body[..len]).ok()
    }

    fn session_call(&self, method: &str, what: &str, body: Option<&Value>) -> Value {
        let path = format!("/session/{}{what}", self.session);
        let reply = self
            .call(method, &path, body)
            .unwrap_or_else(|| panic!("chromedriver did not answer {method} {what}"));
        if reply["value"]["error"].is_string() {
            panic!("{method} {what}: {}", reply["value"]);
        }
        reply["value"].clone()
    }

    /// Open `url`.
    pub fn goto(&self, url: &str) {
        self.session_call("POST", "/url", Some(&json!({ "url": url })));
    }

    /// Run `script` (a function body) in the page and give what it returns.
    pub fn eval(&self, script: &str) -> Value {
        self.session_call(
            "POST",
            "/execute/sync",
            Some(&json!({ "script": script, "args": [] })),
        )
    }

    /// Wait up to `secs` seconds until `script` returns true.
    pub fn wait_until(&self, secs: u64, what: &str, script: &str) {
        let start = Instant::now();
        loop {
            if self.eval(script) == Value::Bool(true) {
                return;
            }
            if start.elapsed() > Duration::from_secs(secs) {
                let body = self.eval("return document.body.innerText");
                panic!("gave up after {secs} s waiting for {what}; the page shows:\n{body}");
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// A PNG of the window.
    pub fn screenshot(&self) -> Vec<u8> {
        use base64::Engine;
        let b64 = self.session_call("GET", "/screenshot", None);
        base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().expect("base64"))
            .expect("a PNG")
    }

    /// Save a screenshot to `path`.
    pub fn save_screenshot(&self, path: &Path) {
        std::fs::write(path, self.screenshot()).expect("write the screenshot");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.call("DELETE", &format!("/session/{}", self.session), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
