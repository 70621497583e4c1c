//! The verifier stage: one small pool of threads that verifies batches for every caller
//! (ingest, sync sessions, gossip), so that whoever receives events hands them over instead of
//! verifying them on its own thread. Batches are split into chunks, each checked with one
//! ed25519 batch equation and the shared author-key cache; results come back in input order
//! through a [`Verification`], which a task awaits and a thread waits on.
//!
//! The threads are started when work arrives and end after [`IDLE_EXIT`] without any: a node
//! at rest runs none, and nothing in the stage wakes while nothing is asked of it.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use futures_channel::oneshot;

use crate::verify::{verify_batch_cached, KeyCache, Limits, VerifyError};
use crate::VerifiedEvent;

/// The results of one batch, in input order.
pub type Verified = Vec<Result<VerifiedEvent, VerifyError>>;

/// How long a verifier thread waits for work before it ends.
pub const IDLE_EXIT: Duration = Duration::from_secs(2);
/// Smallest chunk handed to one thread: below this the hand-off costs more than it saves,
/// and the batch equation gains little.
const CHUNK_MIN: usize = 64;
/// Decompressed author keys the stage keeps (about 200 bytes each).
const KEYS_CACHED: usize = 16 * 1024;

/// The verifier stage. Cloning is cheap; clones share the threads and the key cache.
#[derive(Clone)]
pub struct Verifier {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    work: Condvar,
    /// Signalled whenever a thread ends, for [`Verifier::wind_down`].
    gone: Condvar,
    cache: KeyCache,
    threads_max: usize,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Chunk>,
    /// Threads alive.
    workers: usize,
    /// Threads waiting for work.
    idle: usize,
    /// Callers of [`Verifier::wind_down`] waiting: threads end as soon as the queue is empty.
    winding_down: usize,
}

struct Chunk {
    items: Vec<Vec<u8>>,
    limits: Limits,
    reply: oneshot::Sender<Verified>,
}

/// The verifier stage stopped before answering (a verifier thread panicked, or no thread
/// could be started). The events are neither accepted nor held against their sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the verifier stage stopped before answering")]
pub struct VerifierStopped;

impl Verifier {
    /// A stage of at most `threads` threads (at least one).
    pub fn new(threads: usize) -> Verifier {
        Verifier {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                work: Condvar::new(),
                gone: Condvar::new(),
                cache: KeyCache::new(KEYS_CACHED),
                threads_max: threads.max(1),
            }),
        }
    }

    /// A stage with a thread per core the OS reports.
    pub fn per_core() -> Verifier {
        Verifier::new(std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// Most threads this stage runs.
    pub fn threads_max(&self) -> usize {
        self.shared.threads_max
    }

    /// Threads running now (none at rest).
    pub fn threads(&self) -> usize {
        self.shared.lock().workers
    }

    /// Ends the stage's threads as soon as the queued work is done, instead of after
    /// [`IDLE_EXIT`], and returns once none runs: what closing a node waits for. The stage
    /// stays usable; later work starts threads again.
    pub fn wind_down(&self) {
        let mut state = self.shared.lock();
        state.winding_down += 1;
        self.shared.work.notify_all();
        while state.workers > 0 {
            state = self
                .shared
                .gone
                .wait(state)
                .unwrap_or_else(|p| p.into_inner());
        }
        state.winding_down -= 1;
    }

    /// Hands `items` (each `id ‖ header ‖ signature ‖ payload`) to the stage. The calling
    /// thread does no verification; await or wait on the answer.
    pub fn verify(&self, mut items: Vec<Vec<u8>>, limits: &Limits) -> Verification {
        let mut parts = VecDeque::new();
        if items.is_empty() {
            return Verification {
                parts,
                out: Vec::new(),
            };
        }
        let chunk = items.len().div_ceil(self.shared.threads_max).max(CHUNK_MIN);
        let mut chunks = Vec::with_capacity(items.len().div_ceil(chunk));
        while items.len() > chunk {
            let rest = items.split_off(chunk);
            chunks.push(std::mem::replace(&mut items, rest));
        }
        chunks.push(items);
        let mut state = self.shared.lock();
        for items in chunks {
            let (reply, rx) = oneshot::channel();
            parts.push_back(rx);
            state.queue.push_back(Chunk {
                items,
                limits: *limits,
                reply,
            });
        }
        let mut ready = state.idle;
        while state.workers < self.shared.threads_max && ready < state.queue.len() {
            let shared = Arc::clone(&self.shared);
            let spawned = std::thread::Builder::new()
                .name("xf-verify".into())
                .spawn(move || work(shared));
            if spawned.is_err() {
                break;
            }
            state.workers += 1;
            ready += 1;
        }
        let orphaned = state.workers == 0;
        let queued: Vec<Chunk> = if orphaned {
            // No thread could be started and none runs: answer here rather than never.
            state.queue.drain(..).collect()
        } else {
            Vec::new()
        };
        drop(state);
        self.shared.work.notify_all();
        for c in queued {
            let _ = c
                .reply
                .send(verify_batch_cached(c.items, &c.limits, &self.shared.cache));
        }
        Verification {
            parts,
            out: Vec::new(),
        }
    }
}

impl Verifier {
    /// Verifies `items` with the calling thread taking part: it checks one share itself while
    /// the stage's threads check the rest, then waits for them. A batch of one share never
    /// leaves the thread. For a thread that would otherwise only wait (an ingest, a local
    /// sync); a task on a network thread hands its batches over with [`Verifier::verify`].
    pub fn verify_here(
        &self,
        mut items: Vec<Vec<u8>>,
        limits: &Limits,
    ) -> Result<Verified, VerifierStopped> {
        let share = items
            .len()
            .div_ceil(self.shared.threads_max + 1)
            .max(CHUNK_MIN);
        if items.len() <= share {
            return Ok(verify_batch_cached(items, limits, &self.shared.cache));
        }
        let rest = items.split_off(share);
        let others = self.verify(rest, limits);
        let mut out = verify_batch_cached(items, limits, &self.shared.cache);
        out.extend(others.wait()?);
        Ok(out)
    }
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("threads_max", &self.shared.threads_max)
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is consistent between statements: a panic elsewhere leaves it usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Counts a thread out if it ends by a panic; an idle thread counts itself out under the same
/// lock under which it found nothing to do, so that a batch queued meanwhile never waits for
/// a thread that is already leaving.
struct Leaving<'a> {
    shared: &'a Shared,
    counted_out: bool,
}

impl Drop for Leaving<'_> {
    fn drop(&mut self) {
        if !self.counted_out {
            self.shared.lock().workers -= 1;
            self.shared.gone.notify_all();
        }
    }
}

fn work(shared: Arc<Shared>) {
    let mut leaving = Leaving {
        shared: &shared,
        counted_out: false,
    };
    let mut state = shared.lock();
    loop {
        if let Some(c) = state.queue.pop_front() {
            drop(state);
            // A receiver that went away (a session that ended) takes nothing.
            let _ = c
                .reply
                .send(verify_batch_cached(c.items, &c.limits, &shared.cache));
            state = shared.lock();
            continue;
        }
        if state.winding_down > 0 {
            state.workers -= 1;
            leaving.counted_out = true;
            drop(state);
            shared.gone.notify_all();
            return;
        }
        state.idle += 1;
        let (next, waited) = shared
            .work
            .wait_timeout(state, IDLE_EXIT)
            .unwrap_or_else(|p| p.into_inner());
        state = next;
        state.idle -= 1;
        if waited.timed_out() && state.queue.is_empty() {
            state.workers -= 1;
            leaving.counted_out = true;
            drop(state);
            shared.gone.notify_all();
            return;
        }
    }
}

/// A batch handed to the stage: a future of its results in input order, or
/// [`Verification::wait`] from a thread.
#[must_use = "the results come only through the verification"]
pub struct Verification {
    parts: VecDeque<oneshot::Receiver<Verified>>,
    out: Verified,
}

impl Verification {
    /// Blocks this thread until every chunk is verified.
    pub fn wait(self) -> Result<Verified, VerifierStopped> {
        block_on(self)
    }
}

impl Future for Verification {
    type Output = Result<Verified, VerifierStopped>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        while let Some(part) = this.parts.front_mut() {
            match Pin::new(part).poll(cx) {
                Poll::Ready(Ok(results)) => {
                    this.out.extend(results);
                    this.parts.pop_front();
                }
                Poll::Ready(Err(oneshot::Canceled)) => return Poll::Ready(Err(VerifierStopped)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(std::mem::take(&mut this.out)))
    }
}

/// Wakes a thread parked in [`block_on`].
struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs a future to completion on this thread, parking between polls: how a thread waits on
/// the answers of the verifier stage and of the store's writer.
pub fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(out) = f.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Draft, Identity, Verdict};

    fn signed(n: usize) -> Vec<Vec<u8>> {
        let id = Identity::from_seed(&[7; 32]);
        (0..n)
            .map(|i| {
                let draft = Draft::post(1_000 + i as u64, &format!("post {i}"));
                id.sign(&draft).as_bytes().to_vec()
            })
            .collect()
    }

    #[test]
    fn results_come_back_in_input_order_with_the_bad_ones_named() {
        let stage = Verifier::new(2);
        let mut items = signed(1_000);
        // Break one signature and one id, far apart, in different chunks.
        items[3][40] ^= 1;
        let last = items[900].len() - 1;
        items[900][last] ^= 1;
        let want: Vec<Vec<u8>> = items.clone();
        let out = stage
            .verify(items, &Limits::at(u64::MAX / 2))
            .wait()
            .unwrap();
        assert_eq!(out.len(), 1_000);
        for (i, (r, bytes)) in out.iter().zip(&want).enumerate() {
            match r {
                Ok(ev) => {
                    assert!(i != 3 && i != 900, "event {i} should fail");
                    assert_eq!(ev.as_bytes(), &bytes[..]);
                }
                Err(e) => {
                    assert!(i == 3 || i == 900, "event {i} failed: {e}");
                    assert_eq!(e.verdict(), Verdict::Invalid);
                }
            }
        }
        assert!(stage.threads() <= 2);
    }

    #[test]
    fn an_empty_batch_is_answered_at_once_and_threads_end_when_idle() {
        let stage = Verifier::new(2);
        assert!(stage
            .verify(Vec::new(), &Limits::at(0))
            .wait()
            .unwrap()
            .is_empty());
        assert_eq!(stage.threads(), 0, "nothing started for nothing");
        let out = stage.verify(signed(10), &Limits::at(u64::MAX / 2)).wait();
        assert!(out.unwrap().iter().all(Result::is_ok));
        let deadline = std::time::Instant::now() + IDLE_EXIT * 5;
        while stage.threads() > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "threads still running"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    #[test]
    fn winding_down_ends_the_threads_at_once_and_the_stage_stays_usable() {
        let stage = Verifier::new(2);
        let out = stage.verify(signed(300), &Limits::at(u64::MAX / 2)).wait();
        assert!(out.unwrap().iter().all(Result::is_ok));
        assert!(stage.threads() > 0, "the threads linger for IDLE_EXIT");
        let started = std::time::Instant::now();
        stage.wind_down();
        assert_eq!(stage.threads(), 0);
        // Well before the idle exit: they were told, not timed out.
        assert!(started.elapsed() < IDLE_EXIT / 2, "{:?}", started.elapsed());
        let out = stage.verify(signed(100), &Limits::at(u64::MAX / 2)).wait();
        assert!(out.unwrap().iter().all(Result::is_ok));
        stage.wind_down();
        assert_eq!(stage.threads(), 0);
    }

    #[test]
    fn a_caller_that_takes_part_gets_the_same_results() {
        let stage = Verifier::new(2);
        let mut items = signed(500);
        items[10][40] ^= 1;
        items[400][40] ^= 1;
        let limits = Limits::at(u64::MAX / 2);
        let here = stage.verify_here(items.clone(), &limits).unwrap();
        let there = stage.verify(items, &limits).wait().unwrap();
        assert_eq!(here, there);
        let bad: Vec<usize> = here
            .iter()
            .enumerate()
            .filter(|(_, r)| r.is_err())
            .map(|(i, _)| i)
            .collect();
        assert_eq!(bad, [10, 400]);
        // One share stays on the calling thread: no thread is started for it.
        let small = Verifier::new(2);
        assert!(small
            .verify_here(signed(20), &limits)
            .unwrap()
            .iter()
            .all(Result::is_ok));
        assert_eq!(small.threads(), 0);
    }

    #[test]
    fn many_callers_share_the_stage() {
        let stage = Verifier::new(2);
        let items = signed(300);
        std::thread::scope(|s| {
            for _ in 0..4 {
                let stage = stage.clone();
                let items = items.clone();
                s.spawn(move || {
                    let out = stage.verify(items, &Limits::at(u64::MAX / 2)).wait();
                    assert_eq!(out.unwrap().iter().filter(|r| r.is_ok()).count(), 300);
                });
            }
        });
    }
}
