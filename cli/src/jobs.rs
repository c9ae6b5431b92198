//! Work that runs in steps (a backup, a USB sync) as a resource: each job has
//! an id, its kind and subject, what it has done of how much, and how it ended.
//! `GET /v1/jobs` and `GET /v1/jobs/{id}` read them (the last [`KEPT`]); the
//! event stream carries `KIND.started`, `KIND.progress` (at most once a second
//! per job), `KIND.finished` and `KIND.failed`, whoever started the work: a
//! POS app, an operator's command through the daemon, or the scheduler.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::events::Hub;

/// Jobs kept for reading after they end.
pub const KEPT: usize = 64;

/// How often a job's progress goes on the event stream at most (ms).
const PROGRESS_EVERY_MS: u64 = 1_000;

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    /// A backup to one sink or several.
    Backup,
    /// A USB (or folder) sync, both ways.
    Usb,
    /// Backups read back and checked.
    Verify,
}

impl JobKind {
    /// Its name as the operator's progress shows it.
    pub fn label(self) -> &'static str {
        match self {
            JobKind::Backup => "backup",
            JobKind::Usb => "sync",
            JobKind::Verify => "verify",
        }
    }

    /// Its name in `GET /v1/jobs`.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Backup => "backup",
            JobKind::Usb => "usb",
            JobKind::Verify => "verify",
        }
    }

    /// The event a job of this kind raises when `state` is reached, or on
    /// progress.
    fn event(self, state: Option<JobState>) -> &'static str {
        match (self, state) {
            (JobKind::Backup, Some(JobState::Running)) => "backup.started",
            (JobKind::Backup, None) => "backup.progress",
            (JobKind::Backup, Some(JobState::Finished)) => "backup.finished",
            (JobKind::Backup, Some(JobState::Failed)) => "backup.failed",
            (JobKind::Usb, Some(JobState::Running)) => "usb.started",
            (JobKind::Usb, None) => "usb.progress",
            (JobKind::Usb, Some(JobState::Finished)) => "usb.finished",
            (JobKind::Usb, Some(JobState::Failed)) => "usb.failed",
            (JobKind::Verify, Some(JobState::Running)) => "verify.started",
            (JobKind::Verify, None) => "verify.progress",
            (JobKind::Verify, Some(JobState::Finished)) => "verify.finished",
            (JobKind::Verify, Some(JobState::Failed)) => "verify.failed",
        }
    }
}

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Under way.
    Running,
    /// Done, with what it made.
    Finished,
    /// Stopped by an error.
    Failed,
}

/// Who started a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StartedBy {
    /// A program through the local API.
    Api,
    /// An operator's command, through the daemon.
    Command,
    /// The daemon's backup scheduler.
    Schedule,
}

/// One job, as `GET /v1/jobs/{id}` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Job {
    /// Its id, unique while the daemon runs.
    pub id: u64,
    /// What it does.
    pub kind: JobKind,
    /// What it works on (`to` and `bundle` of a backup, `dir` of a USB sync).
    pub subject: serde_json::Value,
    /// Where it is.
    pub state: JobState,
    /// Who started it.
    pub started_by: StartedBy,
    /// When it started (unix ms).
    pub started_ms: u64,
    /// When it ended (unix ms).
    pub finished_ms: Option<u64>,
    /// What it is doing now.
    pub step: String,
    /// Of the step: documents done so far.
    pub done: u64,
    /// Of the step: documents in all.
    pub total: u64,
    /// What it made, once finished.
    pub result: Option<serde_json::Value>,
    /// Why it failed.
    pub error: Option<String>,
    /// When its progress last went on the event stream (unix ms).
    #[serde(skip)]
    told_ms: Option<u64>,
}

#[derive(Debug, Default)]
struct Table {
    next: u64,
    jobs: VecDeque<Job>,
}

/// The daemon's jobs (cheap to clone).
#[derive(Debug, Clone)]
pub struct Jobs {
    table: Arc<Mutex<Table>>,
    hub: Hub,
}

impl Jobs {
    /// An empty table whose jobs are told on `hub`.
    pub fn new(hub: Hub) -> Self {
        Self {
            table: Arc::default(),
            hub,
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Start a job: `KIND.started` goes on the stream with `subject`.
    pub fn start(
        &self,
        kind: JobKind,
        started_by: StartedBy,
        subject: serde_json::Value,
    ) -> Progress {
        let id = {
            let mut t = self.table();
            t.next += 1;
            let id = t.next;
            t.jobs.push_back(Job {
                id,
                kind,
                subject: subject.clone(),
                state: JobState::Running,
                started_by,
                started_ms: crate::backups::now_ms(),
                finished_ms: None,
                step: "starting".into(),
                done: 0,
                total: 0,
                result: None,
                error: None,
                told_ms: None,
            });
            // Old jobs that have ended make room; running ones stay.
            while t.jobs.len() > KEPT {
                match t.jobs.iter().position(|j| j.state != JobState::Running) {
                    Some(i) => {
                        t.jobs.remove(i);
                    }
                    None => break,
                }
            }
            id
        };
        let mut data = subject;
        if let Some(o) = data.as_object_mut() {
            o.insert("job".into(), id.into());
        }
        self.hub.publish(kind.event(Some(JobState::Running)), data);
        Progress {
            id,
            kind,
            jobs: Some(self.clone()),
            shown: None,
        }
    }

    /// Every job kept, oldest first.
    pub fn list(&self) -> Vec<Job> {
        self.table().jobs.iter().cloned().collect()
    }

    /// One job.
    pub fn get(&self, id: u64) -> Option<Job> {
        self.table().jobs.iter().find(|j| j.id == id).cloned()
    }

    fn update(&self, id: u64, f: impl FnOnce(&mut Job)) -> Option<Job> {
        let mut t = self.table();
        let job = t.jobs.iter_mut().find(|j| j.id == id)?;
        f(job);
        Some(job.clone())
    }
}

/// One running job's side: what the work reports as it goes. A command run
/// with no daemon reports to nobody ([`Progress::none`]).
#[derive(Debug, Clone)]
pub struct Progress {
    id: u64,
    kind: JobKind,
    jobs: Option<Jobs>,
    /// Shown on this process's terminal (a command run with no daemon).
    shown: Option<Arc<crate::progress::Shown>>,
}

impl Progress {
    /// Progress nobody follows.
    pub fn none() -> Self {
        Self {
            id: 0,
            kind: JobKind::Backup,
            jobs: None,
            shown: None,
        }
    }

    /// Progress shown to the operator running the command (no daemon):
    /// see [`crate::progress::Shown`]; nothing with `json`.
    pub fn shown(kind: JobKind, json: bool) -> Self {
        Self {
            kind,
            shown: (!json).then(|| {
                Arc::new(crate::progress::Shown::after(
                    kind.label(),
                    false,
                    crate::progress::QUIET_FOR,
                ))
            }),
            ..Self::none()
        }
    }

    /// The job's id (0 for [`Progress::none`]).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The work is at `step`, `done` of `total` documents.
    pub fn step(&self, step: &str, done: usize, total: usize) {
        if let Some(shown) = &self.shown {
            shown.tell(step, done, total);
        }
        let Some(jobs) = &self.jobs else { return };
        let now = crate::backups::now_ms();
        let mut tell = false;
        let Some(job) = jobs.update(self.id, |j| {
            j.step = step.to_string();
            j.done = done as u64;
            j.total = total as u64;
            // The first step, the last, and at most one a second between.
            tell = done >= total
                || j.told_ms
                    .is_none_or(|at| now.saturating_sub(at) >= PROGRESS_EVERY_MS);
            if tell {
                j.told_ms = Some(now);
            }
        }) else {
            return;
        };
        if tell {
            jobs.hub.publish(
                self.kind.event(None),
                serde_json::json!({"job": self.id, "subject": job.subject, "step": job.step, "done": job.done, "total": job.total}),
            );
        }
    }

    /// The work ended: `Ok` with what it made, or the error.
    pub fn end(&self, outcome: Result<&serde_json::Value, &anyhow::Error>) {
        if let Some(shown) = &self.shown {
            shown.finish();
        }
        let Some(jobs) = &self.jobs else { return };
        let now = crate::backups::now_ms();
        let Some(job) = jobs.update(self.id, |j| {
            j.finished_ms = Some(now);
            match outcome {
                Ok(v) => {
                    j.state = JobState::Finished;
                    j.step = "done".into();
                    j.result = Some(v.clone());
                }
                Err(e) => {
                    j.state = JobState::Failed;
                    j.error = Some(format!("{e:#}"));
                }
            }
        }) else {
            return;
        };
        let mut data = job.subject.clone();
        if let Some(o) = data.as_object_mut() {
            o.insert("job".into(), self.id.into());
            match (&job.result, &job.error) {
                (Some(r), _) if self.kind == JobKind::Backup => o.insert("made".into(), r.clone()),
                (Some(r), _) => o.insert("result".into(), r.clone()),
                (_, Some(e)) => o.insert("error".into(), e.clone().into()),
                _ => None,
            };
        }
        jobs.hub.publish(self.kind.event(Some(job.state)), data);
    }
}

/// Run `work` as a job of `kind` on `jobs` (none: a command run with no
/// daemon, whose progress is shown on its terminal unless `json`), handing it
/// the job's [`Progress`]; the job ends with what the work printed (its JSON,
/// or its text) or its error.
pub async fn tracked<F, Fut>(
    jobs: Option<&Jobs>,
    kind: JobKind,
    started_by: StartedBy,
    subject: serde_json::Value,
    json: bool,
    work: F,
) -> anyhow::Result<Vec<u8>>
where
    F: FnOnce(Progress) -> Fut,
    Fut: Future<Output = anyhow::Result<Vec<u8>>>,
{
    tracked_result(jobs, kind, started_by, subject, json, |p| async move {
        let out = work(p).await?;
        let made = serde_json::from_slice(&out)
            .unwrap_or_else(|_| String::from_utf8_lossy(&out).trim().into());
        Ok((out, made))
    })
    .await
}

/// [`tracked`] for work that gives what it printed and, apart, its result
/// as JSON (the job's result whatever the printed format).
pub async fn tracked_result<T, F, Fut>(
    jobs: Option<&Jobs>,
    kind: JobKind,
    started_by: StartedBy,
    subject: serde_json::Value,
    json: bool,
    work: F,
) -> anyhow::Result<T>
where
    F: FnOnce(Progress) -> Fut,
    Fut: Future<Output = anyhow::Result<(T, serde_json::Value)>>,
{
    let progress = match jobs {
        Some(j) => j.start(kind, started_by, subject),
        None => Progress::shown(kind, json),
    };
    match work(progress.clone()).await {
        Ok((out, result)) => {
            progress.end(Ok(&result));
            Ok(out)
        }
        Err(e) => {
            progress.end(Err(&e));
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every event sent so far on `live`.
    fn told(
        live: &mut tokio::sync::broadcast::Receiver<Arc<crate::events::Event>>,
    ) -> Vec<&'static str> {
        std::iter::from_fn(|| live.try_recv().ok().map(|e| e.kind)).collect()
    }

    #[test]
    fn a_job_tells_its_start_progress_and_end_and_stays_readable() {
        let hub = Hub::new(1);
        let mut live = hub.follow(None).live;
        let jobs = Jobs::new(hub.clone());
        let p = jobs.start(
            JobKind::Backup,
            StartedBy::Api,
            serde_json::json!({"to": "nas"}),
        );
        p.step("reading documents", 1, 10);
        // Within a second: kept in the table, not told again...
        p.step("reading documents", 2, 10);
        assert_eq!(jobs.get(p.id()).expect("kept").done, 2);
        // ...but the last step always is.
        p.step("reading documents", 10, 10);
        p.end(Ok(&serde_json::json!([{"sink": "nas"}])));
        assert_eq!(
            told(&mut live),
            [
                "backup.started",
                "backup.progress",
                "backup.progress",
                "backup.finished"
            ]
        );
        let job = jobs.get(p.id()).expect("kept");
        assert_eq!(
            (job.state, job.done, job.total),
            (JobState::Finished, 10, 10)
        );
        assert!(job.finished_ms.is_some());

        let failed = jobs.start(
            JobKind::Usb,
            StartedBy::Command,
            serde_json::json!({"dir": "/media/x"}),
        );
        failed.end(Err(&anyhow::anyhow!("the stick was pulled")));
        let job = jobs.get(failed.id()).expect("kept");
        assert_eq!(job.state, JobState::Failed);
        assert_eq!(job.error.as_deref(), Some("the stick was pulled"));
        assert_eq!(told(&mut live), ["usb.started", "usb.failed"]);
    }

    #[test]
    fn ended_jobs_make_room_and_running_ones_stay() {
        let jobs = Jobs::new(Hub::new(1));
        let running = jobs.start(JobKind::Backup, StartedBy::Schedule, serde_json::json!({}));
        for _ in 0..KEPT + 5 {
            jobs.start(JobKind::Usb, StartedBy::Api, serde_json::json!({}))
                .end(Ok(&serde_json::json!({})));
        }
        let kept = jobs.list();
        assert_eq!(kept.len(), KEPT);
        assert_eq!(kept[0].id, running.id(), "the running job is never dropped");
    }
}
