//! Tor as a libp2p transport: dials go through Tor's SOCKS port, and the node's onion service
//! is a listener. Tor starts the first time either needs it, and again after a failure.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use futures::future::{BoxFuture, Shared};
use futures::{FutureExt, StreamExt};
use libp2p::core::transport::{DialOpts, ListenerId, TransportError, TransportEvent};
use libp2p::multiaddr::Protocol;
use libp2p::Multiaddr;
use tracing::{info, warn};

use super::{
    OnionKey, OnionService, Pinned, TorBackend, TorClient, TorError, TorStream, TorTarget,
};

/// What a Tor transport dials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialPolicy {
    /// Onion addresses only; every other address is left to the direct transports (the
    /// fallback: Tor for reachability).
    OnionOnly,
    /// Every TCP address (onion, DNS names resolved by Tor, IP addresses through an exit):
    /// anonymous mode, where nothing is dialed directly.
    All,
}

/// Where the node's onion key is kept between starts: loaded before the service starts, and
/// given the key Tor makes for a new service.
pub trait OnionKeySlot: Send + Sync {
    /// The key kept, if any.
    fn load(&self) -> Option<OnionKey>;
    /// Keeps a key Tor made.
    fn save(&self, key: &OnionKey);
}

/// The address that asks a [`TorTransport`] to listen on the node's onion service, on virtual
/// port `port` (its real address is reported once the service is published).
pub fn onion_listen_addr(port: u16) -> Multiaddr {
    Multiaddr::empty().with(Protocol::Onion3(([0u8; 35], port).into()))
}

type Starting = Shared<BoxFuture<'static, Result<Arc<dyn TorClient>, TorError>>>;

/// Tor as a libp2p transport. See the [module](super) for where Tor comes from.
pub struct TorTransport {
    backend: Arc<dyn TorBackend>,
    starting: Arc<Mutex<Option<Starting>>>,
    policy: DialPolicy,
    keys: Option<Arc<dyn OnionKeySlot>>,
    listeners: Vec<Listener>,
    events: VecDeque<TransportEvent<ReadyStream, TorError>>,
    waker: Option<Waker>,
}

/// An incoming stream, ready at once.
pub type ReadyStream = futures::future::Ready<Result<TorStream, TorError>>;

struct Listener {
    id: ListenerId,
    state: ListenState,
}

enum ListenState {
    Starting(Pinned<Result<OnionService, TorError>>),
    Serving {
        service: OnionService,
        /// Published and reported.
        announced: bool,
    },
}

impl TorTransport {
    /// A transport over `backend`, dialing what `policy` allows, keeping the onion service's
    /// key in `keys` (none: a new address each start).
    pub fn new(
        backend: Arc<dyn TorBackend>,
        policy: DialPolicy,
        keys: Option<Arc<dyn OnionKeySlot>>,
    ) -> TorTransport {
        TorTransport {
            backend,
            starting: Arc::new(Mutex::new(None)),
            policy,
            keys,
            listeners: Vec::new(),
            events: VecDeque::new(),
            waker: None,
        }
    }

    /// Tor, started (or being started); a start that failed is tried again.
    fn client(&self) -> Starting {
        let mut slot = self.starting.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = slot.as_ref() {
            if !matches!(s.peek(), Some(Err(_))) {
                return s.clone();
            }
        }
        let s = self.backend.start().shared();
        *slot = Some(s.clone());
        s
    }

    /// Where an address goes through Tor, if this transport dials it.
    fn target(&self, addr: &Multiaddr) -> Option<TorTarget> {
        let mut parts = addr.iter().filter(|p| !matches!(p, Protocol::P2p(_)));
        let first = parts.next()?;
        let target = match (first, self.policy) {
            (Protocol::Onion3(onion), _) => {
                let text = Protocol::Onion3(onion.clone()).to_string();
                let host = text.strip_prefix("/onion3/")?.split(':').next()?.to_owned();
                TorTarget::Name(format!("{host}.onion"), onion.port())
            }
            (Protocol::Dns(h) | Protocol::Dns4(h) | Protocol::Dns6(h), DialPolicy::All) => {
                match parts.next()? {
                    Protocol::Tcp(port) => TorTarget::Name(h.to_string(), port),
                    _ => return None,
                }
            }
            (Protocol::Ip4(ip), DialPolicy::All) => match parts.next()? {
                Protocol::Tcp(port) => TorTarget::Ip((ip, port).into()),
                _ => return None,
            },
            (Protocol::Ip6(ip), DialPolicy::All) => match parts.next()? {
                Protocol::Tcp(port) => TorTarget::Ip((ip, port).into()),
                _ => return None,
            },
            _ => return None,
        };
        // Nothing may follow (no `/ws`, no circuit): Tor carries plain TCP.
        parts.next().is_none().then_some(target)
    }

    fn wake(&mut self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
}

impl libp2p::core::Transport for TorTransport {
    type Output = TorStream;
    type Error = TorError;
    type ListenerUpgrade = ReadyStream;
    type Dial = BoxFuture<'static, Result<TorStream, TorError>>;

    fn listen_on(
        &mut self,
        id: ListenerId,
        addr: Multiaddr,
    ) -> Result<(), TransportError<Self::Error>> {
        let port = match addr.iter().collect::<Vec<_>>().as_slice() {
            [Protocol::Onion3(a)] if a.hash() == &[0u8; 35] => a.port(),
            _ => return Err(TransportError::MultiaddrNotSupported(addr)),
        };
        let client = self.client();
        let keys = self.keys.clone();
        let start = async move {
            let tor = client.await?;
            let key = keys.as_ref().and_then(|k| k.load());
            tor.serve(key, port).await
        }
        .boxed();
        self.listeners.push(Listener {
            id,
            state: ListenState::Starting(start),
        });
        self.wake();
        Ok(())
    }

    fn remove_listener(&mut self, id: ListenerId) -> bool {
        let before = self.listeners.len();
        self.listeners.retain(|l| l.id != id);
        if self.listeners.len() == before {
            return false;
        }
        self.events.push_back(TransportEvent::ListenerClosed {
            listener_id: id,
            reason: Ok(()),
        });
        self.wake();
        true
    }

    fn dial(
        &mut self,
        addr: Multiaddr,
        _opts: DialOpts,
    ) -> Result<Self::Dial, TransportError<Self::Error>> {
        let Some(target) = self.target(&addr) else {
            return Err(TransportError::MultiaddrNotSupported(addr));
        };
        let client = self.client();
        Ok(async move {
            let tor = client.await?;
            // Streams to different hosts never share a circuit.
            let isolation = target.to_string();
            tor.connect(target, &isolation).await
        }
        .boxed())
    }

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<TransportEvent<Self::ListenerUpgrade, Self::Error>> {
        if let Some(ev) = self.events.pop_front() {
            return Poll::Ready(ev);
        }
        let this = &mut *self;
        let mut i = 0;
        while i < this.listeners.len() {
            let id = this.listeners[i].id;
            match &mut this.listeners[i].state {
                ListenState::Starting(start) => match start.as_mut().poll(cx) {
                    Poll::Pending => {}
                    Poll::Ready(Ok(service)) => {
                        if service.new_key {
                            if let Some(keys) = &this.keys {
                                keys.save(&service.key);
                            }
                        }
                        this.listeners[i].state = ListenState::Serving {
                            service,
                            announced: false,
                        };
                        continue;
                    }
                    Poll::Ready(Err(error)) => {
                        warn!(%error, "onion service failed");
                        this.listeners.remove(i);
                        return Poll::Ready(TransportEvent::ListenerClosed {
                            listener_id: id,
                            reason: Err(error),
                        });
                    }
                },
                ListenState::Serving { service, announced } => {
                    if !*announced {
                        if let Poll::Ready(published) = service.published.as_mut().poll(cx) {
                            *announced = true;
                            if let Err(error) = published {
                                warn!(%error, "onion service publication not seen");
                            }
                            info!(address = %service.address, "onion service published");
                            return Poll::Ready(TransportEvent::NewAddress {
                                listener_id: id,
                                listen_addr: service.address.clone(),
                            });
                        }
                    }
                    match service.incoming.poll_next_unpin(cx) {
                        Poll::Ready(Some(Ok(stream))) => {
                            let addr = service.address.clone();
                            return Poll::Ready(TransportEvent::Incoming {
                                listener_id: id,
                                upgrade: futures::future::ready(Ok(stream)),
                                local_addr: addr.clone(),
                                // A stream through Tor has no address of its client's.
                                send_back_addr: addr,
                            });
                        }
                        Poll::Ready(Some(Err(e))) => {
                            return Poll::Ready(TransportEvent::ListenerError {
                                listener_id: id,
                                error: TorError::Io(format!("accepting an onion stream: {e}")),
                            })
                        }
                        Poll::Ready(None) => {
                            this.listeners.remove(i);
                            return Poll::Ready(TransportEvent::ListenerClosed {
                                listener_id: id,
                                reason: Ok(()),
                            });
                        }
                        Poll::Pending => {}
                    }
                }
            }
            i += 1;
        }
        this.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct NoTor;
    impl TorBackend for NoTor {
        fn start(&self) -> BoxFuture<'static, Result<Arc<dyn TorClient>, TorError>> {
            async { Err(TorError::Control("none".into())) }.boxed()
        }
    }

    fn addr(s: &str) -> Multiaddr {
        s.parse().unwrap()
    }

    #[test]
    fn what_each_policy_dials() {
        let onion = "/onion3/vww6ybal4bd7szmgncyruucpgfkqahzddi37ktceo3ah7ngmcopnpyyd:7464";
        let host = "vww6ybal4bd7szmgncyruucpgfkqahzddi37ktceo3ah7ngmcopnpyyd.onion";
        let peer = "/p2p/12D3KooWGBkDGtiJ2dbdkHaB7NoqTu3gKPMpaN2Lw3UJc6mqZ8NL";
        let fallback = TorTransport::new(Arc::new(NoTor), DialPolicy::OnionOnly, None);
        let anon = TorTransport::new(Arc::new(NoTor), DialPolicy::All, None);
        for t in [&fallback, &anon] {
            assert_eq!(
                t.target(&addr(onion)),
                Some(TorTarget::Name(host.into(), 7464))
            );
            assert_eq!(
                t.target(&addr(&format!("{onion}{peer}"))),
                Some(TorTarget::Name(host.into(), 7464))
            );
            assert_eq!(t.target(&addr("/ip4/1.2.3.4/udp/5/quic-v1")), None);
            assert_eq!(t.target(&addr(&format!("{onion}/ws"))), None);
        }
        assert_eq!(fallback.target(&addr("/ip4/1.2.3.4/tcp/5")), None);
        assert_eq!(fallback.target(&addr("/dns/example.org/tcp/5")), None);
        assert_eq!(
            anon.target(&addr("/dns/example.org/tcp/5")),
            Some(TorTarget::Name("example.org".into(), 5))
        );
        assert_eq!(
            anon.target(&addr("/ip6/::1/tcp/5")),
            Some(TorTarget::Ip("[::1]:5".parse().unwrap()))
        );
    }

    #[test]
    fn only_the_onion_placeholder_is_listened_on() {
        use libp2p::core::Transport as _;
        let mut t = TorTransport::new(Arc::new(NoTor), DialPolicy::All, None);
        let refused = t.listen_on(ListenerId::next(), addr("/ip4/127.0.0.1/tcp/0"));
        assert!(matches!(
            refused,
            Err(TransportError::MultiaddrNotSupported(_))
        ));
        assert!(t
            .listen_on(ListenerId::next(), onion_listen_addr(7464))
            .is_ok());
    }
}
