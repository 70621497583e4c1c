//! The one thread that calls the host back: subscriptions and the network's reports.
//!
//! It starts with the first subscription or network, waits on all their channels at once
//! (never on a timer: while nothing arrives it sleeps in the kernel), and ends when it has
//! nothing left to watch. Host callbacks run on it one at a time, in order; a slow callback
//! delays the ones after it, never the store or the network (their channels are bounded and
//! a subscription that falls behind catches up from the log).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, Select, Sender, TryRecvError};
use xaeroflux::{Multiaddr, PeerId, Subscription};

use crate::error::XfError;
use crate::net::{NetEvent, NetListener, Peer};
use crate::types::Event;

/// Receives the events a subscription matches, on the binding's callback thread, in store
/// order. Throwing does not end the subscription (the error is logged).
#[uniffi::export(foreign)]
pub trait EventListener: Send + Sync {
    /// A newly stored event matched the subscription's filter.
    fn on_event(&self, event: Event) -> Result<(), XfError>;
}

/// Events one subscription delivers in a row before the thread looks at the others.
const BURST_MAX: usize = 256;

/// What the node asks of the thread.
pub(crate) enum Control {
    Subscribe {
        id: u64,
        subscription: Box<Subscription>,
        listener: Arc<dyn EventListener>,
        cancelled: Arc<AtomicBool>,
    },
    Unsubscribe(u64),
    /// A network started: its reports (a clone of the handle's receiver) and who hears them.
    Network {
        events: Receiver<xaeroflux::NetEvent>,
        me: PeerId,
        listener: Option<Arc<dyn NetListener>>,
    },
    /// The network stopped: its receiver is dropped, what it reported forgotten.
    NetworkGone,
}

/// What the network reported that the node answers from: connected peers and listen
/// addresses.
#[derive(Default)]
pub(crate) struct NetState {
    peers: BTreeMap<PeerId, Vec<Multiaddr>>,
    listening: Vec<Multiaddr>,
}

/// The network's state, shared by the thread that updates it and the node that reads it.
#[derive(Default)]
pub(crate) struct SharedNet {
    state: Mutex<NetState>,
    changed: Condvar,
}

impl SharedNet {
    fn update(&self, f: impl FnOnce(&mut NetState)) {
        f(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()));
        self.changed.notify_all();
    }

    pub(crate) fn peers(&self) -> Vec<Peer> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state
            .peers
            .iter()
            .map(|(peer, addrs)| Peer {
                peer_id: peer.to_string(),
                addresses: addrs.iter().map(ToString::to_string).collect(),
            })
            .collect()
    }

    /// The listen addresses, waiting up to `limit` for a first one.
    pub(crate) fn listening(&self, limit: Duration) -> Vec<String> {
        let deadline = Instant::now() + limit;
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        while state.listening.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = self
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        state.listening.iter().map(ToString::to_string).collect()
    }
}

struct Running {
    tx: Sender<Control>,
    thread: JoinHandle<()>,
}

/// Starts the callback thread when there is something to watch and hands it work.
#[derive(Default)]
pub(crate) struct Dispatcher {
    running: Mutex<Option<Running>>,
    pub(crate) net: Arc<SharedNet>,
}

impl Dispatcher {
    /// Hands `control` to the thread, starting it if none runs.
    pub(crate) fn send(self: &Arc<Self>, control: Control) -> Result<(), XfError> {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = running.as_ref() {
            if r.thread.is_finished() {
                // It ended on its own (nothing to watch) after the last look: start anew.
                *running = None;
            }
        }
        let control = match running.as_ref() {
            Some(r) => match r.tx.send(control) {
                Ok(()) => return Ok(()),
                Err(e) => e.into_inner(),
            },
            None => control,
        };
        let (tx, rx) = unbounded();
        let _ = tx.send(control);
        let me = Arc::downgrade(self);
        let net = self.net.clone();
        let thread = std::thread::Builder::new()
            .name("xf-callbacks".into())
            .spawn(move || run(rx, net, me))
            .map_err(|e| XfError::Storage {
                detail: format!("cannot start the callback thread: {e}"),
            })?;
        *running = Some(Running { tx, thread });
        Ok(())
    }

    /// Hands `control` to the thread if one runs; without one there is nothing to tell.
    pub(crate) fn tell(&self, control: Control) {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = running.as_ref() {
            let _ = r.tx.send(control);
        }
    }

    /// Stops the thread and waits for it, unless this is the thread (a callback closing the
    /// node): then it ends once the callback returns.
    pub(crate) fn stop(&self) {
        let running = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(Running { tx, thread }) = running {
            drop(tx);
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}

struct Sub {
    id: u64,
    subscription: Box<Subscription>,
    listener: Arc<dyn EventListener>,
    cancelled: Arc<AtomicBool>,
}

struct Net {
    events: Receiver<xaeroflux::NetEvent>,
    me: PeerId,
    listener: Option<Arc<dyn NetListener>>,
}

/// The thread's loop: wait on every channel, serve what is ready.
fn run(rx: Receiver<Control>, shared: Arc<SharedNet>, owner: std::sync::Weak<Dispatcher>) {
    let mut subs: Vec<Sub> = Vec::new();
    let mut net: Option<Net> = None;
    // Subscriptions with more to deliver than one burst: served again before waiting.
    let mut busy = false;
    loop {
        let ready = {
            let mut select = Select::new();
            let control = select.recv(&rx);
            let net_index = net.as_ref().map(|n| select.recv(&n.events));
            let sub_indices: Vec<usize> = subs
                .iter()
                .map(|s| s.subscription.select_on(&mut select))
                .collect();
            let index = if busy {
                select.try_ready().ok()
            } else {
                Some(select.ready())
            };
            match index {
                Some(i) if i == control => Ready::Control,
                Some(i) if Some(i) == net_index => Ready::Net,
                Some(i) => sub_indices
                    .iter()
                    .position(|&s| s == i)
                    .map_or(Ready::Busy, Ready::Sub),
                None => Ready::Busy,
            }
        };
        match ready {
            Ready::Control => match rx.try_recv() {
                Ok(c) => apply(c, &mut subs, &mut net, &shared),
                Err(TryRecvError::Disconnected) => {
                    // The node dropped its sender: it is closing.
                    shared.update(|s| *s = NetState::default());
                    return;
                }
                Err(TryRecvError::Empty) => {}
            },
            Ready::Net => {
                if let Some(n) = net.as_mut() {
                    serve_net(n, &shared);
                }
            }
            Ready::Sub(i) => {
                if serve_sub(&mut subs[i]) {
                    subs.swap_remove(i);
                }
            }
            // Nothing signalled: serve the subscriptions with a backlog (dropping those that
            // ended).
            Ready::Busy => subs.retain_mut(|s| !(s.subscription.has_backlog() && serve_sub(s))),
        }
        // Drop the cancelled; serve again without waiting any that has more than its channel
        // shows (a lag being read from the log).
        subs.retain(|s| !s.cancelled.load(Ordering::Acquire));
        busy = subs.iter().any(|s| s.subscription.has_backlog());
        if subs.is_empty() && net.is_none() && rx.is_empty() {
            // Nothing to watch: end, unless work arrived meanwhile (checked under the lock
            // that senders take, so nothing sent is lost).
            let Some(owner) = owner.upgrade() else { return };
            let mut running = owner.running.lock().unwrap_or_else(|p| p.into_inner());
            if rx.is_empty() {
                if running
                    .as_ref()
                    .is_some_and(|r| r.thread.thread().id() == std::thread::current().id())
                {
                    *running = None;
                }
                return;
            }
        }
    }
}

enum Ready {
    Control,
    Net,
    Sub(usize),
    Busy,
}

fn apply(c: Control, subs: &mut Vec<Sub>, net: &mut Option<Net>, shared: &SharedNet) {
    match c {
        Control::Subscribe {
            id,
            subscription,
            listener,
            cancelled,
        } => subs.push(Sub {
            id,
            subscription,
            listener,
            cancelled,
        }),
        Control::Unsubscribe(id) => subs.retain(|s| s.id != id),
        Control::Network {
            events,
            me,
            listener,
        } => {
            shared.update(|s| *s = NetState::default());
            *net = Some(Net {
                events,
                me,
                listener,
            });
        }
        Control::NetworkGone => {
            *net = None;
            shared.update(|s| *s = NetState::default());
        }
    }
}

/// Delivers up to a burst of a subscription's events; true if it ended.
fn serve_sub(sub: &mut Sub) -> bool {
    for _ in 0..BURST_MAX {
        if sub.cancelled.load(Ordering::Acquire) {
            return true;
        }
        match sub.subscription.try_recv() {
            Ok(Some(stored)) => {
                let event = Event::from(&xaeroflux::Event::from_ref(&stored.event()));
                if let Err(e) = sub.listener.on_event(event) {
                    tracing::warn!(subscription = sub.id, "the event listener failed: {e}");
                }
            }
            Ok(None) => return false,
            Err(e) => {
                tracing::debug!(subscription = sub.id, "subscription ended: {e}");
                return true;
            }
        }
    }
    false
}

/// Takes the network's reports that are ready, keeps the state the node answers from, and
/// passes them to the host.
fn serve_net(net: &mut Net, shared: &SharedNet) {
    for _ in 0..BURST_MAX {
        let Ok(event) = net.events.try_recv() else {
            return;
        };
        match &event {
            xaeroflux::NetEvent::Listening(addr) => {
                let addr = xaeroflux::with_peer(addr.clone(), net.me);
                shared.update(|s| {
                    if !s.listening.contains(&addr) {
                        s.listening.push(addr)
                    }
                });
            }
            xaeroflux::NetEvent::Connected { peer, addr } => shared.update(|s| {
                let addrs = s.peers.entry(*peer).or_default();
                if !addrs.contains(addr) {
                    addrs.push(addr.clone());
                }
            }),
            xaeroflux::NetEvent::Disconnected { peer } => shared.update(|s| {
                s.peers.remove(peer);
            }),
            xaeroflux::NetEvent::Paused => shared.update(|s| *s = NetState::default()),
            _ => {}
        }
        if let (Some(listener), Some(event)) = (&net.listener, NetEvent::from_core(&event)) {
            if let Err(e) = listener.on_net_event(event) {
                tracing::warn!("the network listener failed: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(d: &Dispatcher) -> bool {
        d.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_some_and(|r| !r.thread.is_finished())
    }

    #[test]
    fn telling_an_idle_dispatcher_starts_no_thread() {
        let d = Arc::new(Dispatcher::default());
        d.tell(Control::Unsubscribe(1));
        d.tell(Control::NetworkGone);
        assert!(d.running.lock().unwrap().is_none());
    }

    #[test]
    fn the_thread_ends_when_it_has_nothing_to_watch() {
        let d = Arc::new(Dispatcher::default());
        // Something to do but nothing to keep: the thread starts, applies it, and ends.
        d.send(Control::NetworkGone).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while running(&d) {
            assert!(Instant::now() < deadline, "the callback thread did not end");
            std::thread::sleep(Duration::from_millis(5));
        }
        // A later send starts one again (which may end before `stop` looks).
        d.send(Control::NetworkGone).unwrap();
        d.stop();
        assert!(!running(&d));
    }
}
