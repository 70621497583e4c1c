//! The in-memory network: nodes in one process joined by channels, implementing the same
//! [`Transport`] as libp2p. Tests and the benchmark run the engine over it to tell what the
//! real network costs. Gossip goes to directly connected subscribers only (no forwarding);
//! control events use unbounded channels, which is fine for a network that exists only inside
//! a test.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use libp2p::multiaddr::Protocol;
use tokio::sync::mpsc;

use crate::transport::{
    DialId, GossipToken, LinkError, Multiaddr, OpenFuture, PeerId, SyncLink, Transport,
    TransportEvent, Verdict,
};

#[derive(Default)]
struct Hub {
    nodes: HashMap<PeerId, Slot>,
    by_port: HashMap<u64, PeerId>,
    links: HashSet<(PeerId, PeerId)>,
    next_port: u64,
}

struct Slot {
    inbox: mpsc::UnboundedSender<TransportEvent>,
    port: u64,
    topics: HashSet<String>,
    blocked: HashSet<PeerId>,
}

/// A network of in-process nodes. Cheap to clone.
#[derive(Clone, Default)]
pub struct MemoryHub {
    inner: Arc<Mutex<Hub>>,
}

impl std::fmt::Debug for MemoryHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryHub").finish_non_exhaustive()
    }
}

fn ordered(a: PeerId, b: PeerId) -> (PeerId, PeerId) {
    if a < b {
        (a, b)
    } else {
        (b, a)
    }
}

impl MemoryHub {
    /// A new, empty network.
    pub fn new() -> MemoryHub {
        MemoryHub::default()
    }

    /// Joins a node; its address is `/memory/N`.
    pub fn join(&self, peer: PeerId) -> MemoryTransport {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut hub = self.inner.lock().expect("hub lock");
        hub.next_port += 1;
        let port = hub.next_port;
        hub.by_port.insert(port, peer);
        hub.nodes.insert(
            peer,
            Slot {
                inbox: tx,
                port,
                topics: HashSet::new(),
                blocked: HashSet::new(),
            },
        );
        let _ = hub.nodes[&peer].inbox.send(TransportEvent::Listening(
            Multiaddr::empty().with(Protocol::Memory(port)),
        ));
        MemoryTransport {
            hub: self.clone(),
            me: peer,
            inbox: rx,
        }
    }

    /// Cuts every link of a node (as a network failure would), telling both ends.
    pub fn cut(&self, peer: PeerId) {
        let mut hub = self.inner.lock().expect("hub lock");
        let gone: Vec<_> = hub
            .links
            .iter()
            .filter(|(a, b)| *a == peer || *b == peer)
            .copied()
            .collect();
        for (a, b) in gone {
            hub.links.remove(&(a, b));
            for (me, other) in [(a, b), (b, a)] {
                if let Some(slot) = hub.nodes.get(&me) {
                    let _ = slot
                        .inbox
                        .send(TransportEvent::Disconnected { peer: other });
                }
            }
        }
    }
}

/// One node's end of a [`MemoryHub`].
pub struct MemoryTransport {
    hub: MemoryHub,
    me: PeerId,
    inbox: mpsc::UnboundedReceiver<TransportEvent>,
}

impl Drop for MemoryTransport {
    fn drop(&mut self) {
        self.hub.cut(self.me);
        let mut hub = self.hub.inner.lock().expect("hub lock");
        if let Some(slot) = hub.nodes.remove(&self.me) {
            hub.by_port.remove(&slot.port);
        }
    }
}

impl Transport for MemoryTransport {
    fn local_peer(&self) -> PeerId {
        self.me
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<TransportEvent> {
        match self.inbox.poll_recv(cx) {
            Poll::Ready(Some(ev)) => Poll::Ready(ev),
            // The hub holds a sender for as long as this node is joined.
            Poll::Ready(None) | Poll::Pending => Poll::Pending,
        }
    }

    fn dial(&mut self, addr: Multiaddr, dial: DialId) -> Result<(), String> {
        let Some(Protocol::Memory(port)) = addr.iter().next() else {
            return Err(format!("not a memory address: {addr}"));
        };
        let mut hub = self.hub.inner.lock().expect("hub lock");
        let Some(&other) = hub.by_port.get(&port) else {
            let _ = hub.nodes[&self.me].inbox.send(TransportEvent::DialFailed {
                peer: None,
                error: format!("nobody at {addr}"),
                dial: Some(dial),
            });
            return Ok(());
        };
        if other == self.me {
            return Err(format!("{addr} is this node"));
        }
        if hub.links.contains(&ordered(self.me, other)) {
            let _ = hub.nodes[&self.me]
                .inbox
                .send(TransportEvent::Dialed { dial, peer: other });
            return Ok(());
        }
        if hub.nodes[&other].blocked.contains(&self.me)
            || hub.nodes[&self.me].blocked.contains(&other)
        {
            let _ = hub.nodes[&self.me].inbox.send(TransportEvent::DialFailed {
                peer: Some(other),
                error: "blocked".into(),
                dial: Some(dial),
            });
            return Ok(());
        }
        hub.links.insert(ordered(self.me, other));
        let my_addr = Multiaddr::empty().with(Protocol::Memory(hub.nodes[&self.me].port));
        let _ = hub.nodes[&self.me].inbox.send(TransportEvent::Connected {
            peer: other,
            addr,
            dialer: true,
            dial: Some(dial),
        });
        let _ = hub.nodes[&other].inbox.send(TransportEvent::Connected {
            peer: self.me,
            addr: my_addr,
            dialer: false,
            dial: None,
        });
        Ok(())
    }

    fn open_sync(&mut self, peer: PeerId) -> OpenFuture {
        let hub = self.hub.inner.lock().expect("hub lock");
        let result = if !hub.links.contains(&ordered(self.me, peer)) {
            Err(LinkError::Open("not connected".into()))
        } else {
            let (mine, theirs) = SyncLink::pair();
            match hub.nodes.get(&peer) {
                Some(slot) => {
                    let _ = slot.inbox.send(TransportEvent::InboundSync {
                        peer: self.me,
                        link: theirs,
                    });
                    Ok(mine)
                }
                None => Err(LinkError::Open("peer left".into())),
            }
        };
        Box::pin(async move { result })
    }

    fn subscribe(&mut self, topic: &str) {
        let mut hub = self.hub.inner.lock().expect("hub lock");
        if let Some(slot) = hub.nodes.get_mut(&self.me) {
            slot.topics.insert(topic.to_owned());
        }
    }

    fn publish(&mut self, topic: &str, data: Vec<u8>) {
        let hub = self.hub.inner.lock().expect("hub lock");
        for (a, b) in &hub.links {
            let other = if *a == self.me {
                *b
            } else if *b == self.me {
                *a
            } else {
                continue;
            };
            if let Some(slot) = hub.nodes.get(&other) {
                if slot.topics.contains(topic) {
                    let _ = slot.inbox.send(TransportEvent::Gossip {
                        topic: topic.to_owned(),
                        data: data.clone(),
                        token: GossipToken {
                            source: self.me,
                            message: Vec::new(),
                        },
                    });
                }
            }
        }
    }

    fn validated(&mut self, _token: GossipToken, _verdict: Verdict) {
        // Nothing is forwarded here, so there is nothing to stop.
    }

    fn disconnect(&mut self, peer: PeerId) {
        let mut hub = self.hub.inner.lock().expect("hub lock");
        if hub.links.remove(&ordered(self.me, peer)) {
            for (me, other) in [(self.me, peer), (peer, self.me)] {
                if let Some(slot) = hub.nodes.get(&me) {
                    let _ = slot
                        .inbox
                        .send(TransportEvent::Disconnected { peer: other });
                }
            }
        }
    }

    fn block(&mut self, peer: PeerId) {
        self.disconnect(peer);
        let mut hub = self.hub.inner.lock().expect("hub lock");
        if let Some(slot) = hub.nodes.get_mut(&self.me) {
            slot.blocked.insert(peer);
        }
    }

    fn unblock(&mut self, peer: PeerId) {
        let mut hub = self.hub.inner.lock().expect("hub lock");
        if let Some(slot) = hub.nodes.get_mut(&self.me) {
            slot.blocked.remove(&peer);
        }
    }

    fn listen_addrs(&self) -> Vec<Multiaddr> {
        let hub = self.hub.inner.lock().expect("hub lock");
        hub.nodes
            .get(&self.me)
            .map(|s| vec![Multiaddr::empty().with(Protocol::Memory(s.port))])
            .unwrap_or_default()
    }
}
