//! The writes a driver lets run ahead of its session: received events are handed to storage
//! and the session goes on while they are written, up to a bound; then the driver waits for
//! the oldest. Sans-IO: the window only holds the handles and keeps the rules (the bound,
//! oldest first, the first failure wins, everything is waited for at the end); the driver
//! waits on a handle in its own way (a blocking call, or an `await`).

use std::collections::VecDeque;
use std::future::Future;

/// Writes a driver lets run ahead of its session before it waits for the oldest (or, on a
/// network, stops reading from the peer).
pub const WRITES_AHEAD: usize = 8;

/// The writes in flight, oldest first. `W` is whatever the driver waits on: a blocking
/// [`PendingWrite`](crate::PendingWrite), a store's ticket future.
#[derive(Debug)]
pub struct WriteWindow<W> {
    writes: VecDeque<W>,
    ahead: usize,
}

impl<W> Default for WriteWindow<W> {
    fn default() -> Self {
        WriteWindow::new()
    }
}

impl<W> WriteWindow<W> {
    /// An empty window of [`WRITES_AHEAD`] writes.
    pub fn new() -> WriteWindow<W> {
        WriteWindow {
            writes: VecDeque::new(),
            ahead: WRITES_AHEAD,
        }
    }

    /// Adds a write that has just started.
    pub fn push(&mut self, write: W) {
        self.writes.push_back(write);
    }

    /// Whether the window holds its bound or more: the driver waits for the oldest before it
    /// takes in more.
    pub fn is_full(&self) -> bool {
        self.writes.len() >= self.ahead
    }

    /// Writes in flight.
    pub fn len(&self) -> usize {
        self.writes.len()
    }

    /// Whether no write is in flight.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    /// The oldest write, for a driver that polls it in place (it pops it once it is done).
    pub fn oldest_mut(&mut self) -> Option<&mut W> {
        self.writes.front_mut()
    }

    /// Takes the oldest write out of the window.
    pub fn pop_oldest(&mut self) -> Option<W> {
        self.writes.pop_front()
    }

    /// Waits with `wait` for the oldest writes until no more than the bound are in flight.
    /// Every write taken out is waited for to its end; the first failure is returned.
    pub fn wait_over_bound<E>(&mut self, wait: impl FnMut(W) -> Result<(), E>) -> Result<(), E> {
        self.wait_down_to(self.ahead, wait)
    }

    /// Waits with `wait` for every write in flight, oldest first; the first failure is
    /// returned once all are done.
    pub fn flush<E>(&mut self, wait: impl FnMut(W) -> Result<(), E>) -> Result<(), E> {
        self.wait_down_to(0, wait)
    }

    /// [`WriteWindow::flush`] for writes that are futures: awaits every one, oldest first;
    /// the first failure is returned once all are done.
    pub async fn flush_async<T, E>(&mut self) -> Result<(), E>
    where
        W: Future<Output = Result<T, E>>,
    {
        let mut first = Ok(());
        while let Some(write) = self.writes.pop_front() {
            keep_first(&mut first, write.await.map(drop));
        }
        first
    }

    fn wait_down_to<E>(
        &mut self,
        left: usize,
        mut wait: impl FnMut(W) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut first = Ok(());
        while self.writes.len() > left {
            if let Some(write) = self.writes.pop_front() {
                keep_first(&mut first, wait(write));
            }
        }
        first
    }
}

/// The first failure wins: later ones are dropped.
fn keep_first<E>(first: &mut Result<(), E>, next: Result<(), E>) {
    if first.is_ok() {
        *first = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_down_to_the_bound_oldest_first_and_keeps_the_first_error() {
        let mut window = WriteWindow::new();
        for i in 0..WRITES_AHEAD + 3 {
            window.push(i);
        }
        assert!(window.is_full());
        let mut waited = Vec::new();
        let r = window.wait_over_bound(|i| {
            waited.push(i);
            if i == 0 {
                Ok(())
            } else {
                Err(i)
            }
        });
        assert_eq!(waited, [0, 1, 2]);
        assert_eq!(r, Err(1));
        assert_eq!(window.len(), WRITES_AHEAD);
        assert!(window.is_full());
        let mut rest = Vec::new();
        let r = window.flush(|i| {
            rest.push(i);
            if i > 5 {
                Err(i)
            } else {
                Ok(())
            }
        });
        assert_eq!(rest, (3..WRITES_AHEAD + 3).collect::<Vec<_>>());
        assert_eq!(r, Err(6));
        assert!(window.is_empty() && !window.is_full());
    }

    #[test]
    fn flushes_futures_to_the_end_and_keeps_the_first_error() {
        let mut window = WriteWindow::new();
        for r in [Ok(1), Err("first"), Ok(2), Err("second")] {
            window.push(std::future::ready(r));
        }
        let r = xaeroflux_event::block_on(window.flush_async());
        assert_eq!(r, Err("first"));
        assert!(window.is_empty());
    }
}
