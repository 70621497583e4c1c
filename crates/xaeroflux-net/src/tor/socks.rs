//! The SOCKS5 `CONNECT` (RFC 1928) with username and password (RFC 1929) that reaches a host
//! through Tor. Names are sent to Tor as names: nothing is resolved on this machine. Tor's
//! own replies for onion services (`ExtendedErrors`, socks-extensions.txt) are told apart,
//! so an unreachable onion address says why.

use std::net::{IpAddr, SocketAddr};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Why Tor did not connect a stream, from its SOCKS reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SocksReply {
    /// Reply 1.
    #[error("general failure")]
    General,
    /// Reply 2: Tor's exit policy (or this client's) does not allow it.
    #[error("not allowed by the exit policy")]
    NotAllowed,
    /// Reply 3.
    #[error("network unreachable")]
    NetworkUnreachable,
    /// Reply 4: the name did not resolve, or the host was not reached.
    #[error("host unreachable")]
    HostUnreachable,
    /// Reply 5.
    #[error("connection refused")]
    Refused,
    /// Reply 6: the circuit or stream timed out.
    #[error("timed out (TTL expired)")]
    TtlExpired,
    /// Reply 7 or 8: this SOCKS request is not supported.
    #[error("request not supported")]
    NotSupported,
    /// Reply F0: no descriptor for the onion service (it is not running, or not yet published).
    #[error("onion service descriptor not found (is it running and published?)")]
    OnionDescriptorNotFound,
    /// Reply F1: the onion service's descriptor does not parse or verify.
    #[error("onion service descriptor invalid")]
    OnionDescriptorInvalid,
    /// Reply F2: every introduction point failed.
    #[error("onion service introduction failed")]
    OnionIntroFailed,
    /// Reply F3: the rendezvous failed.
    #[error("onion service rendezvous failed")]
    OnionRendezvousFailed,
    /// Reply F4: the service wants client authorization.
    #[error("onion service needs client authorization")]
    OnionAuthMissing,
    /// Reply F5: the client authorization given is wrong.
    #[error("onion service client authorization is wrong")]
    OnionAuthWrong,
    /// Reply F6: the onion address is malformed.
    #[error("bad onion address")]
    OnionBadAddress,
    /// Reply F7: the introduction timed out.
    #[error("onion service introduction timed out")]
    OnionIntroTimeout,
    /// Any other reply code.
    #[error("reply {0:#04x}")]
    Other(u8),
}

impl SocksReply {
    fn from_code(code: u8) -> SocksReply {
        match code {
            1 => SocksReply::General,
            2 => SocksReply::NotAllowed,
            3 => SocksReply::NetworkUnreachable,
            4 => SocksReply::HostUnreachable,
            5 => SocksReply::Refused,
            6 => SocksReply::TtlExpired,
            7 | 8 => SocksReply::NotSupported,
            0xf0 => SocksReply::OnionDescriptorNotFound,
            0xf1 => SocksReply::OnionDescriptorInvalid,
            0xf2 => SocksReply::OnionIntroFailed,
            0xf3 => SocksReply::OnionRendezvousFailed,
            0xf4 => SocksReply::OnionAuthMissing,
            0xf5 => SocksReply::OnionAuthWrong,
            0xf6 => SocksReply::OnionBadAddress,
            0xf7 => SocksReply::OnionIntroTimeout,
            other => SocksReply::Other(other),
        }
    }
}

/// How a SOCKS connect failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SocksError {
    #[error("the SOCKS port {proxy}: {error}")]
    Io {
        proxy: SocketAddr,
        error: std::io::Error,
    },
    #[error("the SOCKS port broke the protocol: {0}")]
    Protocol(&'static str),
    #[error("Tor could not connect: {0}")]
    Reply(SocksReply),
}

/// Where a stream goes: a name (resolved by Tor) or an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    Name(String, u16),
    Ip(SocketAddr),
}

/// Opens a stream to `target` through the SOCKS port at `proxy`. Tor keeps streams with
/// different credentials on different circuits (`IsolateSOCKSAuth`, on by default): the
/// caller picks them to keep unrelated destinations apart.
pub(crate) async fn connect(
    proxy: SocketAddr,
    target: &Target,
    user: &str,
    pass: &str,
) -> Result<TcpStream, SocksError> {
    let io = |error| SocksError::Io { proxy, error };
    let mut s = TcpStream::connect(proxy).await.map_err(io)?;
    let _ = s.set_nodelay(true);
    if user.is_empty() || user.len() > 255 || pass.is_empty() || pass.len() > 255 {
        return Err(SocksError::Protocol("credentials must be 1 to 255 bytes"));
    }
    // Greeting: version 5, one method: username and password.
    s.write_all(&[5, 1, 2]).await.map_err(io)?;
    let mut choice = [0u8; 2];
    s.read_exact(&mut choice).await.map_err(io)?;
    match choice {
        [5, 2] => {
            let mut auth = vec![1, user.len() as u8];
            auth.extend_from_slice(user.as_bytes());
            auth.push(pass.len() as u8);
            auth.extend_from_slice(pass.as_bytes());
            s.write_all(&auth).await.map_err(io)?;
            let mut status = [0u8; 2];
            s.read_exact(&mut status).await.map_err(io)?;
            if status[1] != 0 {
                return Err(SocksError::Protocol("username and password refused"));
            }
        }
        [5, 0xff] => return Err(SocksError::Protocol("no acceptable authentication method")),
        [5, _] => return Err(SocksError::Protocol("the proxy chose a method not offered")),
        _ => return Err(SocksError::Protocol("not a SOCKS5 proxy")),
    }
    let mut request = vec![5, 1, 0];
    let port = match target {
        Target::Name(name, port) => {
            if name.is_empty() || name.len() > 255 {
                return Err(SocksError::Protocol("a host name must be 1 to 255 bytes"));
            }
            request.push(3);
            request.push(name.len() as u8);
            request.extend_from_slice(name.as_bytes());
            *port
        }
        Target::Ip(addr) => {
            match addr.ip() {
                IpAddr::V4(ip) => {
                    request.push(1);
                    request.extend_from_slice(&ip.octets());
                }
                IpAddr::V6(ip) => {
                    request.push(4);
                    request.extend_from_slice(&ip.octets());
                }
            }
            addr.port()
        }
    };
    request.extend_from_slice(&port.to_be_bytes());
    s.write_all(&request).await.map_err(io)?;
    let mut head = [0u8; 4];
    s.read_exact(&mut head).await.map_err(io)?;
    if head[0] != 5 {
        return Err(SocksError::Protocol("reply of another version"));
    }
    if head[1] != 0 {
        return Err(SocksError::Reply(SocksReply::from_code(head[1])));
    }
    // The bound address, which Tor fills with zeros: read and dropped.
    let rest = match head[3] {
        1 => 4 + 2,
        4 => 16 + 2,
        3 => {
            let mut len = [0u8; 1];
            s.read_exact(&mut len).await.map_err(io)?;
            len[0] as usize + 2
        }
        _ => return Err(SocksError::Protocol("reply with an unknown address type")),
    };
    let mut bound = vec![0u8; rest];
    s.read_exact(&mut bound).await.map_err(io)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A SOCKS server that checks the request it gets and answers `reply`.
    async fn server(reply: u8) -> (SocketAddr, tokio::task::JoinHandle<Vec<u8>>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut greet = [0u8; 3];
            s.read_exact(&mut greet).await.unwrap();
            assert_eq!(greet, [5, 1, 2]);
            s.write_all(&[5, 2]).await.unwrap();
            let mut h = [0u8; 2];
            s.read_exact(&mut h).await.unwrap();
            let mut user = vec![0u8; h[1] as usize + 1];
            s.read_exact(&mut user).await.unwrap();
            let mut pass = vec![0u8; user[user.len() - 1] as usize];
            s.read_exact(&mut pass).await.unwrap();
            s.write_all(&[1, 0]).await.unwrap();
            let mut req = [0u8; 5];
            s.read_exact(&mut req).await.unwrap();
            let mut name = vec![0u8; req[4] as usize + 2];
            s.read_exact(&mut name).await.unwrap();
            s.write_all(&[5, reply, 0, 1, 0, 0, 0, 0, 0, 0])
                .await
                .unwrap();
            s.write_all(b"hello").await.unwrap();
            name
        });
        (addr, task)
    }

    #[tokio::test]
    async fn names_go_to_tor_unresolved() {
        let (addr, task) = server(0).await;
        let target = Target::Name("example.onion".into(), 7000);
        let mut s = connect(addr, &target, "u", "p").await.unwrap();
        let mut hello = [0u8; 5];
        s.read_exact(&mut hello).await.unwrap();
        assert_eq!(&hello, b"hello");
        let name = task.await.unwrap();
        assert_eq!(&name[..13], b"example.onion");
        assert_eq!(&name[13..], &7000u16.to_be_bytes());
    }

    #[tokio::test]
    async fn tor_onion_replies_are_named() {
        let (addr, _task) = server(0xf0).await;
        let target = Target::Name("example.onion".into(), 7000);
        match connect(addr, &target, "u", "p").await {
            Err(SocksError::Reply(SocksReply::OnionDescriptorNotFound)) => {}
            other => panic!("{other:?}"),
        }
    }
}
