//! The QUIC transport never writes TLS session secrets to the file `SSLKEYLOGFILE` names
//! (libp2p's TLS configuration would: it logs keys there whenever the variable is set). A
//! binary of its own, because the variable is set for the whole process.

use std::future::poll_fn;
use std::pin::Pin;
use std::time::Duration;

use libp2p::core::transport::{DialOpts, ListenerId, PortUse, Transport, TransportEvent};
use libp2p::core::{Endpoint, Multiaddr};
use libp2p::identity::Keypair;
use xaeroflux_net::{QuicConfig, QuicTransport};

/// The transport's next event (polling it drives its listeners).
async fn next_event(
    t: &mut QuicTransport,
) -> TransportEvent<
    <QuicTransport as Transport>::ListenerUpgrade,
    <QuicTransport as Transport>::Error,
> {
    poll_fn(|cx| Pin::new(&mut *t).poll(cx)).await
}

#[tokio::test]
async fn a_quic_handshake_writes_no_session_secret_to_sslkeylogfile() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("tls-keys.log");
    std::env::set_var("SSLKEYLOGFILE", &log);

    let (key_a, key_b) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
    let mut a = QuicTransport::new(&key_a, &QuicConfig::default()).unwrap();
    let mut b = QuicTransport::new(&key_b, &QuicConfig::default()).unwrap();
    let listen: Multiaddr = "/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap();
    a.listen_on(ListenerId::next(), listen).unwrap();
    let addr = loop {
        if let TransportEvent::NewAddress { listen_addr, .. } = next_event(&mut a).await {
            break listen_addr;
        }
    };
    let dial = b
        .dial(
            addr,
            DialOpts {
                role: Endpoint::Dialer,
                port_use: PortUse::New,
            },
        )
        .unwrap();
    // The dial must be polled for its first packet to leave while the listener waits for it.
    let accepted = async {
        let incoming = loop {
            if let TransportEvent::Incoming { upgrade, .. } = next_event(&mut a).await {
                break upgrade;
            }
        };
        incoming.await
    };
    let handshakes = futures::future::try_join(dial, accepted);
    let ((a_seen_by_b, _), (b_seen_by_a, _)) =
        tokio::time::timeout(Duration::from_secs(10), handshakes)
            .await
            .expect("the handshake finishes")
            .expect("the handshake succeeds");
    // Both handshakes are complete, so every secret TLS 1.3 derives has been derived: a key
    // log would hold them by now.
    assert_eq!(a_seen_by_b, key_a.public().to_peer_id());
    assert_eq!(b_seen_by_a, key_b.public().to_peer_id());
    let logged = std::fs::read(&log).unwrap_or_default();
    assert!(
        logged.is_empty(),
        "{} bytes of TLS secrets written to SSLKEYLOGFILE",
        logged.len()
    );
}
