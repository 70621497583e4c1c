//! How QUIC connections recover from loss: a plain setting of [`NetConfig`](crate::NetConfig),
//! there whether or not this build has QUIC (feature `quic`).

use std::time::Duration;

/// The congestion controller of every QUIC connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Congestion {
    /// CUBIC (RFC 9438), quinn's default: cuts its window by 30% on each loss event.
    Cubic,
    /// BBR (version 1, quinn's implementation, marked experimental there): paces at the
    /// bottleneck bandwidth it measures and ignores isolated loss, so random loss on a radio
    /// link costs the lost packets, not the rate.
    Bbr,
    /// NewReno (RFC 9002's reference controller).
    NewReno,
}

/// How QUIC connections detect loss and control congestion.
#[derive(Clone, Debug)]
pub struct QuicConfig {
    /// The congestion controller.
    pub congestion: Congestion,
    /// A packet counts as lost when this many packets sent after it are acknowledged
    /// (RFC 9002 recommends 3). Paths that reorder defeat a small threshold; a huge one leaves
    /// loss to the time threshold alone. At least 3.
    pub packet_threshold: u32,
    /// A packet counts as lost when this multiple of the round-trip time has passed since a later
    /// packet was acknowledged (RFC 9002 recommends 9/8). Larger tolerates more reordering and
    /// recovers real loss later. At least 1.
    pub time_threshold: f32,
    /// How long a handshake may take.
    pub handshake_timeout: Duration,
    /// A connection on which nothing arrived for this long is closed.
    pub idle_timeout: Duration,
    /// Period of keep-alive packets on an otherwise idle connection (shorter than the peer's idle
    /// timeout).
    pub keep_alive: Duration,
}

impl Default for QuicConfig {
    fn default() -> Self {
        QuicConfig {
            congestion: Congestion::Bbr,
            packet_threshold: u32::MAX,
            time_threshold: 1.5,
            handshake_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(10),
            keep_alive: Duration::from_secs(5),
        }
    }
}
