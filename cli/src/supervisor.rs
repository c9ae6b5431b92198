//! The daemon's actors under one supervisor. Each actor (backup scheduler,
//! key keeper, relay watch, the event watchers) runs as a task of its own; one
//! that panics is built again and restarted after a pause (1 s, doubling up to
//! a minute), so one bug does not silently stop a till's backups; one that
//! returns (its store closed) is done. [`Supervisor::shutdown`] stops them all,
//! newest first, and waits for each, so nothing of the daemon outlives it.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use n0_future::FutureExt;

/// The longest pause before an actor that failed is restarted.
const MAX_PAUSE: Duration = Duration::from_secs(60);

/// The daemon's running actors.
#[derive(Debug)]
pub struct Supervisor {
    actors: Vec<Actor>,
    first_pause: Duration,
}

#[derive(Debug)]
struct Actor {
    name: &'static str,
    restarts: Arc<AtomicU32>,
    task: tokio::task::JoinHandle<()>,
}

impl Default for Supervisor {
    fn default() -> Self {
        Self::with_pause(Duration::from_secs(1))
    }
}

impl Supervisor {
    /// A supervisor that waits `first_pause` before the first restart of an
    /// actor that failed (doubling after each further failure).
    pub fn with_pause(first_pause: Duration) -> Self {
        Self {
            actors: Vec::new(),
            first_pause,
        }
    }

    /// Run the actor that `make` builds, as `name`; built and run again after
    /// it panics.
    pub fn spawn<F, Fut>(&mut self, name: &'static str, mut make: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let restarts = Arc::new(AtomicU32::new(0));
        let counted = restarts.clone();
        let first_pause = self.first_pause;
        let task = tokio::spawn(async move {
            let mut pause = first_pause;
            loop {
                match AssertUnwindSafe(make()).catch_unwind().await {
                    Ok(()) => {
                        tracing::debug!(actor = name, "finished");
                        return;
                    }
                    Err(_) => {
                        tracing::error!(actor = name, "failed; restarting it in {pause:?}");
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(MAX_PAUSE);
                        counted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
        self.actors.push(Actor {
            name,
            restarts,
            task,
        });
    }

    /// Each actor with how often it was restarted, and whether it still runs.
    pub fn report(&self) -> Vec<(&'static str, u32, bool)> {
        self.actors
            .iter()
            .map(|a| {
                (
                    a.name,
                    a.restarts.load(Ordering::Relaxed),
                    !a.task.is_finished(),
                )
            })
            .collect()
    }

    /// Stop every actor, newest first, and wait until each has ended.
    pub async fn shutdown(self) {
        for a in self.actors.into_iter().rev() {
            a.task.abort();
            if let Err(e) = a.task.await
                && e.is_panic()
            {
                tracing::error!(actor = a.name, "failed while stopping");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    #[tokio::test]
    async fn an_actor_that_panics_is_restarted_and_one_that_returns_is_done() {
        let mut sup = Supervisor::with_pause(Duration::from_millis(5));
        let runs = Arc::new(AtomicU32::new(0));
        let r = runs.clone();
        sup.spawn("flaky", move || {
            let r = r.clone();
            async move {
                // Fails twice, then does its work and returns.
                if r.fetch_add(1, Ordering::SeqCst) < 2 {
                    panic!("a bug in the actor");
                }
            }
        });
        for _ in 0..200 {
            if !sup.report()[0].2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(
            runs.load(Ordering::SeqCst),
            3,
            "built and run again after each panic"
        );
        assert_eq!(sup.report(), vec![("flaky", 2, false)]);
        sup.shutdown().await;
    }

    #[tokio::test]
    async fn shutdown_stops_every_actor_and_waits_for_it() {
        struct Flag(Arc<AtomicBool>);
        impl Drop for Flag {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let mut sup = Supervisor::default();
        let dropped = Arc::new(AtomicBool::new(false));
        let d = dropped.clone();
        sup.spawn("forever", move || {
            let flag = Flag(d.clone());
            async move {
                let _held = flag;
                std::future::pending::<()>().await;
            }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(sup.report(), vec![("forever", 0, true)]);
        sup.shutdown().await;
        assert!(
            dropped.load(Ordering::SeqCst),
            "its state is gone when shutdown returns"
        );
    }
}
