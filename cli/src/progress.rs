//! Progress of long work the operator waits for (a restore, a backup, a USB
//! or Drive sync): a bar with the rate and the time left on a terminal
//! (indicatif, on standard error), a plain line every few seconds otherwise
//! (a log, a pipe; for a backup or a sync, once it has taken a second),
//! nothing with `--json`.
//! The report itself still goes to standard output. Work the daemon does
//! for a command is followed from the command through the daemon's jobs
//! ([`follow_job`]).

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A plain line at most this often when standard error is not a terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// Work the operator did not start by hand (a backup or a sync, often from a
/// script) done sooner than this prints no plain line at all.
pub const QUIET_FOR: Duration = Duration::from_secs(1);

/// How the progress of one piece of work is shown.
#[derive(Debug)]
pub struct Shown {
    what: &'static str,
    how: How,
}

#[derive(Debug)]
enum How {
    Nothing,
    Bar(indicatif::ProgressBar, Mutex<String>),
    Plain(Mutex<Plain>),
}

#[derive(Debug)]
struct Plain {
    started: Instant,
    last: Option<Instant>,
    quiet_for: Duration,
}

impl Shown {
    /// The progress of `what` (`restore`): nothing when `json`.
    pub fn new(what: &'static str, json: bool) -> Self {
        Self::after(what, json, Duration::ZERO)
    }

    /// [`Shown::new`], with no plain line before the work has taken
    /// `quiet_for`.
    pub fn after(what: &'static str, json: bool, quiet_for: Duration) -> Self {
        let how = if json {
            How::Nothing
        } else if std::io::stderr().is_terminal() {
            // A spinner until the first step says how much there is.
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_prefix(what);
            bar.set_message("reading the backups");
            bar.set_style(
                indicatif::ProgressStyle::with_template("{prefix} {msg} {spinner}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            How::Bar(bar, Mutex::new(String::new()))
        } else {
            How::Plain(Mutex::new(Plain {
                started: Instant::now(),
                last: None,
                quiet_for,
            }))
        };
        Self { what, how }
    }

    /// The work is at `step`, `done` of `total`.
    pub fn tell(&self, step: &str, done: usize, total: usize) {
        match &self.how {
            How::Nothing => {}
            How::Bar(bar, shown_step) => {
                if let Ok(mut s) = shown_step.lock()
                    && *s != step
                {
                    // A new step starts its own count, on a bar.
                    step.clone_into(&mut s);
                    bar.set_style(
                        indicatif::ProgressStyle::with_template(
                            "{prefix} {msg:9} [{bar:30}] {pos}/{len} {per_sec} {eta} left",
                        )
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                        .progress_chars("=> "),
                    );
                    bar.reset();
                    bar.set_message(step.to_string());
                }
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            }
            How::Plain(p) => {
                let Ok(mut p) = p.lock() else { return };
                let now = Instant::now();
                if p.last.is_none() && now - p.started < p.quiet_for {
                    return;
                }
                if p.last.is_some_and(|t| now - t < PLAIN_EVERY) && done < total {
                    return;
                }
                p.last = Some(now);
                let secs = (now - p.started).as_secs_f64().max(0.001);
                let rate = done as f64 / secs;
                let left = if rate > 0.0 && total > done {
                    format!(", about {:.0} s left", (total - done) as f64 / rate)
                } else {
                    String::new()
                };
                eprintln!(
                    "{}: {step} {done}/{total} ({:.0} %), {rate:.0}/s{left}",
                    self.what,
                    100.0 * done as f64 / total.max(1) as f64
                );
            }
        }
    }

    /// The work ended: the bar goes.
    pub fn finish(&self) {
        if let How::Bar(bar, _) = &self.how {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Shown {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Show the progress of the job of `kind` (`backup`, `usb`) that a command
/// sent to the daemon at `api` starts there, as [`Shown`] does, by asking
/// the daemon for its jobs a few times a second until the returned guard is
/// dropped (when the command's reply arrives). Nothing with `json`.
pub fn follow_job(
    api: &crate::client::ApiInfo,
    what: &'static str,
    kind: &'static str,
    json: bool,
) -> Option<Following> {
    if json {
        return None;
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (api, halt) = (api.clone(), stop.clone());
    let sent_ms = crate::backups::now_ms();
    let thread = std::thread::spawn(move || {
        use std::sync::atomic::Ordering;
        let shown = Shown::after(what, false, QUIET_FOR);
        let mut job = None;
        while !halt.load(Ordering::Relaxed) {
            // Woken at once when the command's reply arrives (see Drop).
            std::thread::park_timeout(Duration::from_millis(250));
            if halt.load(Ordering::Relaxed) {
                break;
            }
            let Ok(crate::client::Sent::Reply(200, body)) = crate::client::get(&api, "/v1/jobs")
            else {
                continue;
            };
            let Ok(serde_json::Value::Array(jobs)) = serde_json::from_slice(&body) else {
                continue;
            };
            // The job this command started: the newest of its kind started
            // by a command since it was sent, then that one by its id.
            let mine = jobs.iter().rev().find(|j| match job {
                Some(id) => j["id"] == id,
                None => {
                    j["kind"] == kind
                        && j["started_by"] == "command"
                        && j["started_ms"].as_u64().unwrap_or(0) + 2_000 >= sent_ms
                }
            });
            let Some(j) = mine else { continue };
            job = j["id"].as_u64();
            if j["state"] != "running" {
                break;
            }
            let n = |k: &str| j[k].as_u64().unwrap_or(0) as usize;
            shown.tell(j["step"].as_str().unwrap_or(""), n("done"), n("total"));
        }
    });
    Some(Following {
        stop,
        thread: Some(thread),
    })
}

/// Following a daemon's job: stops when dropped.
#[derive(Debug)]
pub struct Following {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Following {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}
