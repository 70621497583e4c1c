//! A client of Tor's control protocol (control-spec.txt), as much of it as the node uses:
//! `PROTOCOLINFO`, `AUTHENTICATE` (no auth, cookie, password), `TAKEOWNERSHIP`, `GETINFO`,
//! `SETEVENTS`, `ADD_ONION` and `DEL_ONION`. One task reads the connection: replies go to
//! the command that waits for them (commands are answered in order), asynchronous events
//! (`650`) to every subscriber.

use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{broadcast, mpsc, oneshot, Mutex};

use super::TorError;

/// Longest line accepted from the control port (Tor's own are far shorter).
const LINE_BYTES_MAX: usize = 64 << 10;
/// Most lines in one reply.
const REPLY_LINES_MAX: usize = 4096;
/// Events buffered for a subscriber that lags (older ones are dropped for it).
const EVENTS_BUFFERED: usize = 256;

/// One reply: its status code and its lines (the text after the code and separator; a data
/// block's lines are joined to their line with `\n`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    fn ok(&self) -> bool {
        self.code == 250
    }

    /// The value of `KEY=value` in the reply's lines (the first such line), unquoted.
    pub fn value(&self, key: &str) -> Option<String> {
        self.lines.iter().find_map(|l| {
            let rest = l.strip_prefix(key)?.strip_prefix('=')?;
            Some(unquote(rest))
        })
    }
}

/// A connection to Tor's control port. Cloning shares it.
#[derive(Clone)]
pub(crate) struct Control {
    inner: Arc<Inner>,
}

struct Inner {
    /// The writer and the queue of replies, taken together so replies match commands.
    writer: Mutex<(
        tokio::net::tcp::OwnedWriteHalf,
        mpsc::Sender<oneshot::Sender<Reply>>,
    )>,
    events: broadcast::Sender<String>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Control {
    /// Connects to the control port at `addr`.
    pub async fn connect(addr: std::net::SocketAddr) -> Result<Control, TorError> {
        let stream = TcpStream::connect(addr).await.map_err(|e| {
            TorError::Control(format!("connecting to the control port {addr}: {e}"))
        })?;
        let _ = stream.set_nodelay(true);
        let (read, write) = stream.into_split();
        let (waiters_tx, waiters_rx) = mpsc::channel(64);
        let (events, _) = broadcast::channel(EVENTS_BUFFERED);
        let reader = tokio::spawn(read_loop(BufReader::new(read), waiters_rx, events.clone()));
        Ok(Control {
            inner: Arc::new(Inner {
                writer: Mutex::new((write, waiters_tx)),
                events,
                reader,
            }),
        })
    }

    /// Sends one command line and waits for its reply; a reply other than `250` is an error
    /// carrying Tor's own words.
    pub async fn command(&self, line: &str) -> Result<Reply, TorError> {
        let reply = self.send(line).await?;
        if reply.ok() {
            Ok(reply)
        } else {
            let verb = line.split(' ').next().unwrap_or(line);
            Err(TorError::Refused {
                command: verb.to_owned(),
                reply: format!("{} {}", reply.code, reply.lines.join(" ")),
            })
        }
    }

    async fn send(&self, line: &str) -> Result<Reply, TorError> {
        if line.contains(['\r', '\n']) {
            return Err(TorError::Control("a command may not span lines".into()));
        }
        let (tx, rx) = oneshot::channel();
        {
            let mut w = self.inner.writer.lock().await;
            w.1.send(tx).await.map_err(|_| closed())?;
            let mut bytes = Vec::with_capacity(line.len() + 2);
            bytes.extend_from_slice(line.as_bytes());
            bytes.extend_from_slice(b"\r\n");
            w.0.write_all(&bytes)
                .await
                .map_err(|e| TorError::Control(format!("writing to the control port: {e}")))?;
        }
        rx.await.map_err(|_| closed())
    }

    /// Asynchronous events (`650` lines, without the code) from now on.
    pub fn events(&self) -> broadcast::Receiver<String> {
        self.inner.events.subscribe()
    }

    /// Authenticates with whatever the port offers: no authentication, the cookie file it
    /// names, or `password`.
    pub async fn authenticate(&self, password: Option<&str>) -> Result<(), TorError> {
        let info = self.command("PROTOCOLINFO 1").await?;
        let auth = info
            .lines
            .iter()
            .find_map(|l| l.strip_prefix("AUTH "))
            .ok_or_else(|| TorError::Control("PROTOCOLINFO named no AUTH line".into()))?;
        let methods: Vec<&str> = field(auth, "METHODS")
            .map(|m| m.split(',').collect())
            .unwrap_or_default();
        let cookie_file = auth
            .split_once("COOKIEFILE=")
            .map(|(_, rest)| unquote(rest));
        let line = if methods.contains(&"NULL") {
            "AUTHENTICATE".to_owned()
        } else if let (Some(password), true) = (password, methods.contains(&"HASHEDPASSWORD")) {
            format!("AUTHENTICATE {}", quote(password))
        } else if let (Some(path), true) = (cookie_file, methods.contains(&"COOKIE")) {
            let cookie =
                zeroize::Zeroizing::new(std::fs::read(&path).map_err(|e| {
                    TorError::Auth(format!("reading the control cookie {path}: {e}"))
                })?);
            let mut line = String::from("AUTHENTICATE ");
            for b in cookie.iter() {
                line.push_str(&format!("{b:02x}"));
            }
            line
        } else {
            return Err(TorError::Auth(format!(
                "the control port offers {} and none of them can be used here (give a password \
                 for HASHEDPASSWORD, or enable CookieAuthentication)",
                methods.join(",")
            )));
        };
        let reply = self.send(&line).await?;
        if !reply.ok() {
            return Err(TorError::Auth(format!(
                "{} {}",
                reply.code,
                reply.lines.join(" ")
            )));
        }
        Ok(())
    }

    /// `GETINFO key`: its value.
    pub async fn getinfo(&self, key: &str) -> Result<String, TorError> {
        let reply = self.command(&format!("GETINFO {key}")).await?;
        reply
            .lines
            .iter()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('=').map(str::to_owned))
            .ok_or_else(|| TorError::Control(format!("GETINFO {key}: no value in the reply")))
    }
}

fn closed() -> TorError {
    TorError::Control("the control connection closed".into())
}

/// Reads replies and events until the connection ends.
async fn read_loop(
    mut read: BufReader<tokio::net::tcp::OwnedReadHalf>,
    mut waiters: mpsc::Receiver<oneshot::Sender<Reply>>,
    events: broadcast::Sender<String>,
) {
    let mut lines = Vec::new();
    loop {
        let Some((code, sep, text)) = next_line(&mut read).await else {
            return;
        };
        let text = if sep == '+' {
            let Some(block) = data_block(&mut read).await else {
                return;
            };
            format!("{text}\n{block}")
        } else {
            text
        };
        if lines.len() < REPLY_LINES_MAX {
            lines.push(text);
        }
        if sep != ' ' {
            continue;
        }
        let reply = Reply {
            code,
            lines: std::mem::take(&mut lines),
        };
        if (600..700).contains(&code) {
            for line in reply.lines {
                let _ = events.send(line);
            }
        } else {
            match waiters.recv().await {
                Some(waiter) => drop(waiter.send(reply)),
                None => return,
            }
        }
    }
}

/// One line: its code, separator (`-`, `+` or space) and text. `None` at the end of the
/// stream or on a line that breaks the protocol.
async fn next_line<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> Option<(u16, char, String)> {
    let line = read_line(r).await?;
    if line.len() < 4 || !line.is_char_boundary(3) || !line.is_char_boundary(4) {
        return None;
    }
    let code = line[..3].parse().ok()?;
    let sep = line[3..4].chars().next()?;
    if !matches!(sep, ' ' | '-' | '+') {
        return None;
    }
    Some((code, sep, line[4..].to_owned()))
}

/// The lines of a data block up to the lone `.`, with leading dots unstuffed.
async fn data_block<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> Option<String> {
    let mut out = Vec::new();
    loop {
        let line = read_line(r).await?;
        if line == "." {
            return Some(out.join("\n"));
        }
        if out.len() < REPLY_LINES_MAX {
            out.push(line.strip_prefix('.').unwrap_or(&line).to_owned());
        }
    }
}

/// One CRLF-terminated line, bounded in length.
async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> Option<String> {
    let mut buf = Vec::new();
    loop {
        let available = r.fill_buf().await.ok()?;
        if available.is_empty() {
            return None;
        }
        match available.iter().position(|b| *b == b'\n') {
            Some(i) => {
                buf.extend_from_slice(&available[..i]);
                r.consume(i + 1);
                break;
            }
            None => {
                let n = available.len();
                buf.extend_from_slice(available);
                r.consume(n);
            }
        }
        if buf.len() > LINE_BYTES_MAX {
            return None;
        }
    }
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    String::from_utf8(buf).ok()
}

/// The value of `KEY=value` among space-separated fields.
fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.split(' ')
        .find_map(|f| f.strip_prefix(key)?.strip_prefix('='))
}

/// A control-protocol quoted string.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// A value that may be a quoted string (up to its closing quote) or a bare word.
pub(crate) fn unquote(s: &str) -> String {
    let Some(rest) = s.strip_prefix('"') else {
        return s.split(' ').next().unwrap_or("").to_owned();
    };
    let mut out = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    out.push(match n {
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        other => other,
                    });
                }
            }
            '"' => break,
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_replies_and_data_blocks() {
        let text =
            b"250-version=0.4.9\r\n250+config-text=\r\nSocksPort 0\r\n..dot\r\n.\r\n250 OK\r\n";
        let mut r = BufReader::new(&text[..]);
        assert_eq!(
            next_line(&mut r).await,
            Some((250, '-', "version=0.4.9".into()))
        );
        assert_eq!(
            next_line(&mut r).await,
            Some((250, '+', "config-text=".into()))
        );
        assert_eq!(
            data_block(&mut r).await.as_deref(),
            Some("SocksPort 0\n.dot")
        );
        assert_eq!(next_line(&mut r).await, Some((250, ' ', "OK".into())));
        assert_eq!(next_line(&mut r).await, None);
    }

    #[tokio::test]
    async fn broken_lines_end_the_stream() {
        for bad in [
            &b"25\r\n"[..],
            b"abc OK\r\n",
            b"250?OK\r\n",
            b"250 \xff\r\n",
        ] {
            let mut r = BufReader::new(bad);
            assert_eq!(next_line(&mut r).await, None, "{bad:?}");
        }
        let long = vec![b'a'; LINE_BYTES_MAX + 10];
        let mut r = BufReader::new(&long[..]);
        assert_eq!(read_line(&mut r).await, None);
    }

    #[test]
    fn quoting_round_trips() {
        for s in ["plain", "with \"quotes\"", "back\\slash", ""] {
            assert_eq!(unquote(&quote(s)), s);
        }
        assert_eq!(unquote("\"/a b/c\" rest"), "/a b/c");
        assert_eq!(unquote("bare rest"), "bare");
        assert_eq!(
            field("METHODS=COOKIE,SAFECOOKIE COOKIEFILE=\"/x\"", "METHODS"),
            Some("COOKIE,SAFECOOKIE")
        );
    }
}
