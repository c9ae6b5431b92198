//! Progress of long work the operator waits for (a restore): a bar with the
//! rate and the time left on a terminal (indicatif, on standard error), a
//! plain line every few seconds otherwise (a log, a pipe), nothing with
//! `--json`. The report itself still goes to standard output.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A plain line at most this often when standard error is not a terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

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
}

impl Shown {
    /// The progress of `what` (`restore`): nothing when `json`.
    pub fn new(what: &'static str, json: bool) -> Self {
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
