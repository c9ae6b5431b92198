//! [`StoreHandle`]: the till's store on a thread of its own.
//!
//! Every redb transaction runs on that thread, one call at a time, so async tasks
//! never block on disk and the store needs no lock. After each call the thread
//! drains the store's outbox of local changes into the gossip channel, if any.

use std::sync::mpsc;
use std::thread::JoinHandle;

use crate::{DocId, Store};

type Job = Box<dyn FnOnce(&mut Store) + Send>;

/// The store thread has stopped.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the store has shut down")]
pub struct StoreClosed;

/// A cheap, cloneable handle to the store thread.
#[derive(Debug, Clone)]
pub struct StoreHandle {
    tx: mpsc::Sender<Job>,
}

/// What writes did, for the daemon's event stream.
pub type Events = tokio::sync::mpsc::UnboundedSender<crate::StoreEvent>;

/// Local changes leaving the store, for gossip: (document, raw change, proofs).
pub type Outbox = tokio::sync::mpsc::UnboundedSender<(DocId, Vec<u8>, Vec<crate::Proof>)>;

impl StoreHandle {
    /// Move `store` to a new thread. The thread ends, closing the store, when the
    /// last handle is dropped; join the returned handle to wait for that.
    pub fn spawn(store: Store, outbox: Option<Outbox>) -> (Self, JoinHandle<()>) {
        Self::spawn_watched(store, outbox, None)
    }

    /// [`StoreHandle::spawn`], also sending what every write did to `events`.
    pub fn spawn_watched(
        mut store: Store,
        outbox: Option<Outbox>,
        events: Option<Events>,
    ) -> (Self, JoinHandle<()>) {
        store.watch_events(events.is_some());
        let (tx, rx) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("tillmesh-store".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    // A job that panics fails its own caller (it hears
                    // `StoreClosed`), not the till: a write it left
                    // unfinished was never committed (redb aborts the
                    // transaction, and the store forgets the documents it
                    // touched), and the next job finds the store as the last
                    // commit left it.
                    let ran =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut store)));
                    if ran.is_err() {
                        tracing::error!(
                            "a store call panicked; it failed alone and the store goes on"
                        );
                    }
                    let out = store.take_outbox();
                    if let Some(sink) = &outbox {
                        for item in out {
                            // A closed gossip channel only means gossip stopped first.
                            let _ = sink.send(item);
                        }
                    }
                    if let Some(sink) = &events {
                        for event in store.take_events() {
                            let _ = sink.send(event);
                        }
                    }
                }
            })
            .expect("spawn the store thread");
        (Self { tx }, thread)
    }

    /// Run `f` on the store and return its result.
    pub async fn call<T, F>(&self, f: F) -> Result<T, StoreClosed>
    where
        T: Send + 'static,
        F: FnOnce(&mut Store) -> T + Send + 'static,
    {
        let (otx, orx) = tokio::sync::oneshot::channel();
        self.tx
            .send(Box::new(move |s| {
                let _ = otx.send(f(s));
            }))
            .map_err(|_| StoreClosed)?;
        orx.await.map_err(|_| StoreClosed)
    }

    /// Run `f` on the store for each of `items`, in order, over as many calls as
    /// it takes to hold the store at most about `step` at a time (and one item at
    /// least), so a sale made meanwhile waits for one item at most; gives the
    /// results in order.
    pub async fn call_in_steps<I, T, F>(
        &self,
        items: Vec<I>,
        step: std::time::Duration,
        f: F,
    ) -> Result<Vec<T>, StoreClosed>
    where
        I: Send + 'static,
        T: Send + 'static,
        F: Fn(&mut Store, I) -> T + Clone + Send + 'static,
    {
        let mut out = Vec::with_capacity(items.len());
        let mut rest: std::collections::VecDeque<I> = items.into();
        while !rest.is_empty() {
            let f = f.clone();
            let (done, left) = self
                .call(move |s| {
                    let start = std::time::Instant::now();
                    let mut done = Vec::new();
                    while let Some(item) = rest.pop_front() {
                        done.push(f(s, item));
                        if start.elapsed() >= step {
                            break;
                        }
                    }
                    (done, rest)
                })
                .await?;
            out.extend(done);
            rest = left;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_call_that_panics_fails_alone() {
        let (store, _, _) = crate::test_utils::founder_in_memory("Shop");
        let (handle, _thread) = StoreHandle::spawn(store, None);
        handle
            .call(|s| s.add_product(crate::test_utils::product("TEA", 200)))
            .await
            .expect("store up")
            .expect("product");
        let failed = handle
            .call(|_s| -> () { panic!("a bug in one call") })
            .await;
        assert!(failed.is_err(), "the caller hears of it");
        let sold = handle
            .call(|s| s.record_sale(crate::test_utils::sale("TEA", 1, crate::Tender::Cash)))
            .await
            .expect("the store still answers");
        assert!(sold.is_ok(), "and still sells");
    }
}
