//! Live subscriptions: a filter and a bounded channel, with catch-up from the log on overflow.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};
use xaeroflux_event::{EventRef, VerifiedEvent};

use crate::error::ReadError;
use crate::query::Filter;
use crate::writer::Handle;
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

/// What the writer puts in a subscriber's channel.
enum Note {
    Event(StoredEvent),
    /// Events were left out (the channel was full, or another process wrote): read the log.
    /// The channel holds one slot more than the subscription's capacity for this note, so it
    /// always fits, and a subscriber waiting on the channel wakes for it.
    Lagged,
}

struct Sink {
    filter: Filter,
    tx: Sender<Note>,
    capacity: usize,
    lagged: Arc<AtomicBool>,
}

impl Sink {
    /// Marks the subscriber as lagging and wakes it, once per lag. False if it is gone.
    fn lag(&self) -> bool {
        if self
            .lagged
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return true;
        }
        !matches!(
            self.tx.try_send(Note::Lagged),
            Err(TrySendError::Disconnected(_))
        )
    }
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
                if sink.tx.len() >= sink.capacity {
                    return sink.lag();
                }
                let item = StoredEvent {
                    seq: *seq,
                    bytes: event.as_bytes().into(),
                };
                match sink.tx.try_send(Note::Event(item)) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => return sink.lag(),
                    Err(TrySendError::Disconnected(_)) => return false,
                }
            }
            true
        });
    }

    /// Sends every subscriber to the log: events were stored that this process did not write.
    pub(crate) fn lag_all(&self) {
        self.sinks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(Sink::lag);
    }

    fn add(&self, sink: Sink) {
        self.sinks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(sink);
    }
}

/// Receives every newly stored event that matches a filter, in store order, whichever process
/// stored it. It does not keep the store open: once every [`Store`] handle is dropped and the
/// writer has stopped, it reports [`SubscriptionError::Closed`].
pub struct Subscription {
    store: Weak<Handle>,
    filter: Filter,
    rx: Receiver<Note>,
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
        let (tx, rx) = bounded(capacity + 1);
        let lagged = Arc::new(AtomicBool::new(false));
        store.shared().subscribers.add(Sink {
            filter: filter.clone(),
            tx,
            capacity,
            lagged: lagged.clone(),
        });
        // Everything committed before this point is history, not news.
        let last_seq = store
            .read()
            .and_then(|r| r.next_seq())
            .map(|next| next.saturating_sub(1))
            .unwrap_or(0);
        Subscription {
            store: Arc::downgrade(&store.inner),
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
            match self.rx.recv() {
                Ok(note) => {
                    if let Some(ev) = self.accept(note) {
                        return Ok(ev);
                    }
                }
                Err(_) => return Err(SubscriptionError::Closed),
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
            match self.rx.recv_timeout(left) {
                Ok(note) => {
                    if let Some(ev) = self.accept(note) {
                        return Ok(Some(ev));
                    }
                }
                Err(RecvTimeoutError::Timeout) => return Ok(None),
                Err(RecvTimeoutError::Disconnected) => return Err(SubscriptionError::Closed),
            }
        }
    }

    /// The next event if one is ready, without waiting: `Ok(None)` when there is none now.
    /// With [`Subscription::select_on`], one thread serves many subscriptions: wait until
    /// the select says a channel is ready, then take events with this until it returns `None`
    /// (after a lag it reads the log, so it may return events although the channel is empty:
    /// call it until `None` before waiting again).
    pub fn try_recv(&mut self) -> Result<Option<StoredEvent>, SubscriptionError> {
        self.poll()
    }

    /// True if events wait that the channel does not signal: read from the log after a lag
    /// and not all taken yet. A thread serving many subscriptions with
    /// [`Subscription::select_on`] must not wait while one has a backlog.
    pub fn has_backlog(&self) -> bool {
        !self.backlog.is_empty() || self.catching_up
    }

    /// Adds this subscription's channel to `select`, so that one thread can wait on several
    /// subscriptions (and its own channels) at once, and returns its index there. A ready
    /// index means an event, a lag to catch up on, or the store's end: take what is there with
    /// [`Subscription::try_recv`]. Readiness only: `select` must be waited on with
    /// `ready`/`try_ready`/`ready_timeout`, never `select`, which would take a message this
    /// subscription then misses.
    pub fn select_on<'a>(&'a self, select: &mut crossbeam_channel::Select<'a>) -> usize {
        select.recv(&self.rx)
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
                Ok(note) => {
                    if let Some(ev) = self.accept(note) {
                        return Ok(Some(ev));
                    }
                }
                Err(crossbeam_channel::TryRecvError::Empty) => return Ok(None),
                Err(crossbeam_channel::TryRecvError::Disconnected) => {
                    return Err(SubscriptionError::Closed)
                }
            }
        }
    }

    /// Takes a note from the channel: an event not delivered yet, or the order to read the
    /// log. Re-arms the channel before reading, so nothing committed from here on falls
    /// between the log and the channel (what arrives twice is skipped by sequence number).
    fn accept(&mut self, note: Note) -> Option<StoredEvent> {
        let ev = match note {
            Note::Event(ev) => ev,
            Note::Lagged => {
                self.lagged.store(false, Ordering::Release);
                self.catching_up = true;
                return None;
            }
        };
        if ev.seq <= self.last_seq {
            return None;
        }
        self.last_seq = ev.seq;
        Some(ev)
    }

    fn read_log(&mut self) -> Result<(), SubscriptionError> {
        let store = Store {
            inner: self.store.upgrade().ok_or(SubscriptionError::Closed)?,
        };
        let read = store.read()?;
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
