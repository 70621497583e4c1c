//! The backends' work (built with the `tor` feature): starting or attaching to `tor`, and the
//! client that dials through its SOCKS port and serves onion services through its control
//! port.

use std::path::Path;
use std::pin::Pin;
use std::time::Instant;

use futures::{FutureExt, StreamExt};
use tokio_util::compat::TokioAsyncReadCompatExt;
use tracing::{debug, info};

use super::control::Control;
use super::*;

impl TorBackend for TorDaemon {
    fn start(&self) -> BoxFuture<'static, Result<Arc<dyn TorClient>, TorError>> {
        let cfg = self.clone();
        async move {
            let tor = start_daemon(cfg).await?;
            Ok(Arc::new(tor) as Arc<dyn TorClient>)
        }
        .boxed()
    }
}

impl TorBackend for TorAttach {
    fn start(&self) -> BoxFuture<'static, Result<Arc<dyn TorClient>, TorError>> {
        let cfg = self.clone();
        async move {
            let started = Instant::now();
            let control = Control::connect(cfg.control).await?;
            control
                .authenticate(cfg.password.as_deref().map(|p| p.as_str()))
                .await?;
            bootstrapped(&control, started, cfg.bootstrap_timeout, None).await?;
            let socks = match cfg.socks {
                Some(s) => s,
                None => socks_listener(&control).await?,
            };
            let tor = ControlTor::new(control, socks, None, None).await?;
            Ok(Arc::new(tor) as Arc<dyn TorClient>)
        }
        .boxed()
    }
}

/// A Tor driven through its control port: a child of this node's, or one it attached to.
struct ControlTor {
    control: Control,
    socks: SocketAddr,
    /// The child process, ended when this is dropped.
    _child: Option<tokio::process::Child>,
    /// Where onion services' sockets go (a child's data directory); `None`: loopback TCP
    /// (a Tor this node did not start may not be allowed to reach a socket file of ours).
    sockets: Option<PathBuf>,
    /// Keeps this run's circuits apart from any other run's (a SOCKS password).
    nonce: String,
}

impl ControlTor {
    async fn new(
        control: Control,
        socks: SocketAddr,
        child: Option<tokio::process::Child>,
        sockets: Option<PathBuf>,
    ) -> Result<ControlTor, TorError> {
        control.command("SETEVENTS HS_DESC").await?;
        let nonce = getrandom::u64()
            .map(|n| format!("{n:016x}"))
            .map_err(|e| TorError::Io(format!("no randomness: {e}")))?;
        Ok(ControlTor {
            control,
            socks,
            _child: child,
            sockets,
            nonce,
        })
    }
}

impl TorClient for ControlTor {
    fn connect(
        &self,
        target: TorTarget,
        isolation: &str,
    ) -> BoxFuture<'static, Result<TorStream, TorError>> {
        let (proxy, pass) = (self.socks, self.nonce.clone());
        let user = if isolation.is_empty() {
            "xf".to_owned()
        } else {
            isolation.chars().take(255).collect()
        };
        async move {
            let started = Instant::now();
            let t = match &target {
                TorTarget::Name(host, port) => socks::Target::Name(host.clone(), *port),
                TorTarget::Ip(addr) => socks::Target::Ip(*addr),
            };
            match socks::connect(proxy, &t, &user, &pass).await {
                Ok(stream) => Ok(Box::new(stream.compat()) as TorStream),
                Err(socks::SocksError::Reply(reply)) => Err(TorError::Unreachable {
                    target: target.to_string(),
                    reply,
                    waited_ms: started.elapsed().as_millis() as u64,
                }),
                Err(e) => Err(TorError::Socks(e.to_string())),
            }
        }
        .boxed()
    }

    fn serve(
        &self,
        key: Option<OnionKey>,
        port: u16,
    ) -> BoxFuture<'static, Result<OnionService, TorError>> {
        let control = self.control.clone();
        let sockets = self.sockets.clone();
        async move {
            let (target, incoming) = onion_target(sockets.as_deref(), port).await?;
            let mut events = control.events();
            let key_arg = match &key {
                Some(k) => Zeroizing::new(k.expose().to_owned()),
                None => Zeroizing::new("NEW:ED25519-V3".to_owned()),
            };
            let line = Zeroizing::new(format!("ADD_ONION {} Port={port},{target}", *key_arg));
            let reply = control.command(&line).await?;
            let id = reply
                .value("ServiceID")
                .filter(|id| id.len() == 56 && id.bytes().all(|b| b.is_ascii_alphanumeric()))
                .ok_or_else(|| TorError::Control("ADD_ONION gave no valid ServiceID".into()))?;
            let (key, new_key) = match key {
                Some(k) => (k, false),
                None => {
                    let made = reply.value("PrivateKey").map(Zeroizing::new);
                    let k = made
                        .as_deref()
                        .and_then(|k| OnionKey::parse(k))
                        .ok_or_else(|| TorError::Control("ADD_ONION gave no key".into()))?;
                    (k, true)
                }
            };
            let address: Multiaddr = format!("/onion3/{id}:{port}")
                .parse()
                .map_err(|e| TorError::Control(format!("ADD_ONION gave {id}: {e}")))?;
            info!(%address, "onion service added");
            let uploaded = format!("HS_DESC UPLOADED {id} ");
            let published = async move {
                loop {
                    match events.recv().await {
                        Ok(ev) if ev.starts_with(&uploaded) => return Ok(()),
                        Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                            return Err(TorError::Control("the control connection closed".into()))
                        }
                    }
                }
            }
            .boxed();
            Ok(OnionService {
                address,
                key,
                new_key,
                incoming,
                published,
                _guard: Box::new(OnionGuard { control, id }),
            })
        }
        .boxed()
    }
}

/// Removes an onion service when dropped (the control connection's end removes it too).
struct OnionGuard {
    control: Control,
    id: String,
}

impl Drop for OnionGuard {
    fn drop(&mut self) {
        let (control, line) = (self.control.clone(), format!("DEL_ONION {}", self.id));
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = control.command(&line).await;
            });
        }
    }
}

/// A listener for an onion service's streams and the target Tor is told to send them to:
/// a socket file in `sockets`, or a loopback TCP port.
async fn onion_target(
    sockets: Option<&Path>,
    port: u16,
) -> Result<(String, BoxStream<'static, std::io::Result<TorStream>>), TorError> {
    let io = |what: &str, e: std::io::Error| TorError::Io(format!("{what}: {e}"));
    if let Some(dir) = sockets {
        let path = dir.join(format!("onion-{port}.sock"));
        let text = path.to_string_lossy().into_owned();
        // Tor's `Port=` target is one word, and a socket path has a length limit.
        if text.len() < 100 && !text.contains([' ', '"', '\\', ',']) {
            let _ = std::fs::remove_file(&path);
            let l = tokio::net::UnixListener::bind(&path)
                .map_err(|e| io(&format!("listening on {text}"), e))?;
            let incoming = futures::stream::unfold(l, |l| async move {
                let next = l
                    .accept()
                    .await
                    .map(|(s, _)| Box::new(s.compat()) as TorStream);
                Some((next, l))
            })
            .boxed();
            return Ok((format!("unix:{text}"), incoming));
        }
        debug!(path = %text, "socket path unusable by Tor: onion service on loopback TCP");
    }
    let l = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(|e| io("listening on loopback", e))?;
    let local = l.local_addr().map_err(|e| io("listening on loopback", e))?;
    let incoming = futures::stream::unfold(l, |l| async move {
        let next = l.accept().await.map(|(s, _)| {
            let _ = s.set_nodelay(true);
            Box::new(s.compat()) as TorStream
        });
        Some((next, l))
    })
    .boxed();
    Ok((local.to_string(), incoming))
}

/// The first SOCKS listener Tor reports (a TCP one).
async fn socks_listener(control: &Control) -> Result<SocketAddr, TorError> {
    let listeners = control.getinfo("net/listeners/socks").await?;
    listeners
        .split(' ')
        .map(control::unquote)
        .find_map(|a| a.parse().ok())
        .ok_or_else(|| {
            TorError::Control(format!(
                "no TCP SOCKS port among {listeners:?}: give the SOCKS address"
            ))
        })
}

/// Waits until Tor reports bootstrap progress 100, polling every quarter second (only while
/// starting); a child that exits meanwhile ends the wait with its log.
async fn bootstrapped(
    control: &Control,
    started: Instant,
    limit: Duration,
    mut child: Option<(&mut tokio::process::Child, &Path)>,
) -> Result<(), TorError> {
    loop {
        if let Some((child, log)) = child.as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(exited(status, log, started));
            }
        }
        let phase = control.getinfo("status/bootstrap-phase").await?;
        let progress = phase
            .split(' ')
            .find_map(|f| f.strip_prefix("PROGRESS="))
            .and_then(|p| p.parse::<u8>().ok())
            .unwrap_or(0);
        if progress >= 100 {
            debug!(
                ms = started.elapsed().as_millis() as u64,
                "Tor bootstrapped"
            );
            return Ok(());
        }
        if started.elapsed() >= limit {
            let summary = phase
                .split_once("SUMMARY=")
                .map(|(_, s)| control::unquote(s))
                .unwrap_or_default();
            return Err(TorError::NotBootstrapped {
                progress,
                summary,
                waited_ms: started.elapsed().as_millis() as u64,
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn exited(status: std::process::ExitStatus, log: &Path, started: Instant) -> TorError {
    let mut text = std::fs::read_to_string(log).unwrap_or_default();
    if text.trim().is_empty() {
        text = std::fs::read_to_string(log.with_file_name("startup.log")).unwrap_or_default();
    }
    let tail: Vec<&str> = text.lines().rev().take(3).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    TorError::Exited {
        status: status.to_string(),
        log: if tail.is_empty() {
            "(empty)".into()
        } else {
            tail.join(" | ")
        },
        waited_ms: started.elapsed().as_millis() as u64,
    }
}

/// Starts a child `tor` and waits until it has bootstrapped.
async fn start_daemon(cfg: TorDaemon) -> Result<ControlTor, TorError> {
    let started = Instant::now();
    let dir = &cfg.data_dir;
    let io = |what: &str, e: std::io::Error| TorError::Io(format!("{what}: {e}"));
    create_private_dir(dir).map_err(|e| io(&format!("creating {}", dir.display()), e))?;
    let dir = std::fs::canonicalize(dir).map_err(|e| io(&format!("{}", dir.display()), e))?;
    // torrc values are single words here (Tor does not unquote every option's path).
    if dir
        .to_string_lossy()
        .contains(|c: char| c.is_whitespace() || c == '"' || c == '\\')
    {
        return Err(TorError::Io(format!(
            "Tor's data directory {} has a space, quote or backslash in its path",
            dir.display()
        )));
    }
    let port_file = dir.join("control-port");
    let log = dir.join("notice.log");
    let startup = dir.join("startup.log");
    let _ = std::fs::remove_file(&port_file);
    let _ = std::fs::remove_file(&log);
    let mut torrc = vec![
        format!("DataDirectory {}", dir.display()),
        "SocksPort 127.0.0.1:auto ExtendedErrors".to_owned(),
        "ControlPort 127.0.0.1:auto".to_owned(),
        format!("ControlPortWriteToFile {}", port_file.display()),
        "CookieAuthentication 1".to_owned(),
        format!("__OwningControllerProcess {}", std::process::id()),
        format!("Log notice file {}", log.display()),
        "AvoidDiskWrites 1".to_owned(),
        "RunAsDaemon 0".to_owned(),
    ];
    torrc.extend(cfg.torrc.iter().cloned());
    let torrc_path = dir.join("torrc");
    std::fs::write(&torrc_path, torrc.join("\n") + "\n")
        .map_err(|e| io(&format!("writing {}", torrc_path.display()), e))?;
    // What tor says before its log is open (a torrc it cannot parse) goes to its stdout.
    let early = std::fs::File::create(&startup)
        .map_err(|e| io(&format!("creating {}", startup.display()), e))?;
    let mut child = tokio::process::Command::new(&cfg.binary)
        .arg("-f")
        .arg(&torrc_path)
        .arg("--defaults-torrc")
        .arg(dir.join("torrc-defaults-none"))
        .arg("--ignore-missing-torrc")
        .stdin(std::process::Stdio::null())
        .stdout(early)
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| TorError::NotInstalled {
            binary: cfg.binary.display().to_string(),
            error: e.to_string(),
        })?;
    // Tor writes `PORT=127.0.0.1:N` once its control port listens.
    let control_addr = loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(exited(status, &log, started));
        }
        if let Some(addr) = std::fs::read_to_string(&port_file)
            .ok()
            .and_then(|t| t.trim().strip_prefix("PORT=")?.parse::<SocketAddr>().ok())
        {
            break addr;
        }
        if started.elapsed() >= cfg.bootstrap_timeout {
            return Err(TorError::NotBootstrapped {
                progress: 0,
                summary: "its control port never opened".into(),
                waited_ms: started.elapsed().as_millis() as u64,
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let control = Control::connect(control_addr).await?;
    control.authenticate(None).await?;
    // Tor exits when this connection closes, not only when this process does.
    control.command("TAKEOWNERSHIP").await?;
    control
        .command("RESETCONF __OwningControllerProcess")
        .await?;
    bootstrapped(
        &control,
        started,
        cfg.bootstrap_timeout,
        Some((&mut child, &log)),
    )
    .await?;
    let socks = socks_listener(&control).await?;
    info!(
        ms = started.elapsed().as_millis() as u64,
        %socks,
        "tor started"
    );
    ControlTor::new(control, socks, Some(child), Some(dir)).await
}

/// Creates a directory readable by this user alone (Tor refuses a data directory others can
/// read).
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Pins a boxed future (for fields that hold one).
pub(crate) type Pinned<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

/// The onion key in a file of the data directory, sealed when the store is.
pub(crate) struct OnionKeyFile {
    pub path: PathBuf,
    pub seal: Option<Arc<dyn crate::FileSeal>>,
}

impl transport::OnionKeySlot for OnionKeyFile {
    fn load(&self) -> Option<OnionKey> {
        let bytes = Zeroizing::new(std::fs::read(&self.path).ok()?);
        let plain = match &self.seal {
            Some(seal) => Zeroizing::new(seal.open(&bytes)?),
            None => bytes,
        };
        let key = OnionKey::parse(std::str::from_utf8(&plain).ok()?);
        if key.is_none() {
            tracing::warn!(path = %self.path.display(), "onion key unreadable: a new address is made");
        }
        key
    }

    fn save(&self, key: &OnionKey) {
        let plain = key.expose().as_bytes();
        let bytes = match &self.seal {
            Some(seal) => match seal.seal(plain) {
                Some(b) => b,
                None => {
                    tracing::warn!("sealing the onion key failed: not kept");
                    return;
                }
            },
            None => plain.to_vec(),
        };
        let bytes = Zeroizing::new(bytes);
        let tmp = self.path.with_extension("tmp");
        let written = (|| {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        })();
        if let Err(e) = written {
            tracing::warn!(error = %e, "keeping the onion key failed: the address changes at the next start");
        }
    }
}
