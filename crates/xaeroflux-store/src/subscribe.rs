//! Live subscriptions: a filter and a bounded channel, with catch-up from the log on overflow.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};
use xaeroflux_event::{EventRef, VerifiedEvent};

use crate::error::ReadError;
use crate::query::Filter;
use crate::Store;

/// An event as delivered to a subscriber: its local sequence number and its encoding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEvent {
    /// Local sequence number.
    pub seq: u64,
    /// The encoded event (`id ‖ header ‖ signature ‖ payload`).
    pub bytes: Arc<[u8]>,
}

impl StoredEvent {
    /// A view of the event.
    pub fn event(&self) -> EventRef<'_> {
        EventRef::decode(&self.bytes).expect("stored events decode")
    }
}

/// Why a subscription stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubscriptionError {
    /// The store has closed.
    #[error("the store has closed")]
    Closed,
    /// Reading the log to catch up failed.
    #[error(transparent)]
    Read(#[from] ReadError),
}

struct Sink {
    filter: Filter,
    tx: Sender<StoredEvent>,
    lagged: Arc<AtomicBool>,
}

/// The writer's side: every live subscription's filter and channel.
#[derive(Default)]
pub(crate) struct Subscribers {
    sinks: Mutex<Vec<Sink>>,
}

impl Subscribers {
    /// Offers newly committed events to every subscriber. Never blocks: a full channel marks
    /// its subscriber as lagging, and it catches up from the log itself.
    pub(crate) fn publish(&self, stored: &[(u64, &VerifiedEvent)]) {
        let mut sinks = self.sinks.lock().unwrap_or_else(|p| p.into_inner());
        if sinks.is_empty() || stored.is_empty() {
            return;
        }
        sinks.retain(|sink| {
            for (seq, event) in stored {
                if sink.lagged.load(Ordering::Acquire) || !sink.filter.matches(&event.as_ref()) {
                    continue;
                }
                let item = StoredEvent {
                    seq: *seq,
                    bytes: event.as_bytes().into(),
                };
                match sink.tx.try_send(item) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => sink.lagged.store(true, Ordering::Release),
                    Err(TrySendError::Disconnected(_)) => return false,
                }
            }
            true
        });
    }

    fn add(&self, sink: Sink) {
        self.sinks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(sink);
    }
}

/// Receives every newly stored event that matches a filter, in store order.
pub struct Subscription {
    store: Store,
    filter: Filter,
    rx: Receiver<StoredEvent>,
    lagged: Arc<AtomicBool>,
    /// Highest sequence number delivered (or known to be before the subscription began).
    last_seq: u64,
    backlog: VecDeque<StoredEvent>,
    /// Reading the log instead of the channel until the log is exhausted.
    catching_up: bool,
    capacity: usize,
}

impl Subscription {
    pub(crate) fn new(store: Store, filter: Filter, capacity: usize) -> Subscription {
        let capacity = capacity.max(1);
        let (tx, rx) = bounded(capacity);
        let lagged = Arc::new(AtomicBool::new(false));
        store.shared().subscribers.add(Sink {
            filter: filter.clone(),
            tx,
            lagged: lagged.clone(),
        });
        // Everything committed before this point is history, not news.
        let last_seq = store
            .read()
            .and_then(|r| r.next_seq())
            .map(|next| next.saturating_sub(1))
            .unwrap_or(0);
        Subscription {
            store,
            filter,
            rx,
            lagged,
            last_seq,
            backlog: VecDeque::new(),
            catching_up: false,
            capacity,
        }
    }

    /// Waits for the next event.
    pub fn recv(&mut self) -> Result<StoredEvent, SubscriptionError> {
        loop {
            if let Some(ev) = self.poll()? {
                return Ok(ev);
            }
            match self.rx.recv_timeout(Duration::from_millis(50)) {
                Ok(ev) => {
                    if let Some(ev) = self.accept(ev) {
                        return Ok(ev);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Err(SubscriptionError::Closed),
            }
        }
    }

    /// Waits at most `timeout` for the next event.
    pub fn recv_timeout(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<StoredEvent>, SubscriptionError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(ev) = self.poll()? {
                return Ok(Some(ev));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            match self.rx.recv_timeout(left.min(Duration::from_millis(50))) {
                Ok(ev) => {
                    if let Some(ev) = self.accept(ev) {
                        return Ok(Some(ev));
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Err(SubscriptionError::Closed),
            }
        }
    }

    /// An event ready without waiting: from the backlog, the log, or the channel.
    fn poll(&mut self) -> Result<Option<StoredEvent>, SubscriptionError> {
        loop {
            if let Some(ev) = self.backlog.pop_front() {
                self.last_seq = ev.seq;
                return Ok(Some(ev));
            }
            if self.catching_up {
                self.read_log()?;
                continue;
            }
            match self.rx.try_recv() {
                Ok(ev) => {
                    if let Some(ev) = self.accept(ev) {
                        return Ok(Some(ev));
                    }
                }
                Err(_) if self.lagged.load(Ordering::Acquire) => {
                    // The channel is drained; what overflowed is in the log. Re-arm the
                    // channel first so nothing committed from here on can fall between.
                    self.lagged.store(false, Ordering::Release);
                    self.catching_up = true;
                }
                Err(_) => return Ok(None),
            }
        }
    }

    /// Skips what was already delivered from the log.
    fn accept(&mut self, ev: StoredEvent) -> Option<StoredEvent> {
        if ev.seq <= self.last_seq {
            return None;
        }
        self.last_seq = ev.seq;
        Some(ev)
    }

    fn read_log(&mut self) -> Result<(), SubscriptionError> {
        let read = self.store.read()?;
        let page = read.changes_since(self.last_seq, self.capacity)?;
        if page.len() < self.capacity {
            self.catching_up = false;
        }
        let mut last = self.last_seq;
        for (seq, ev) in page {
            last = seq;
            if self.filter.matches(&ev) {
                self.backlog.push_back(StoredEvent {
                    seq,
                    bytes: ev.to_vec().into(),
                });
            }
        }
        // Skipped non-matching events still advance the cursor.
        if self.backlog.is_empty() {
            self.last_seq = last;
        }
        Ok(())
    }
}
