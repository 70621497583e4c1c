//! Showing events as text or JSON.

use std::borrow::Cow;
use std::fmt::Write as _;

use serde_json::{json, Value};
use xaeroflux::{EventRef, Kind};
use xaeroflux_event::{ArchivedFollowList, ArchivedProfile};

/// The payload in readable form.
pub fn content(ev: &EventRef<'_>) -> Value {
    match ev.text() {
        Some(Ok(text)) => return Value::String(text.to_owned()),
        Some(Err(e)) => return json!({ "unreadable": e.to_string() }),
        None => {}
    }
    match ev.kind() {
        Kind::PROFILE => match ev.payload_as::<ArchivedProfile>() {
            Ok(p) => {
                json!({ "name": p.name.as_str(), "about": p.about.as_str(), "picture": p.picture.as_str() })
            }
            Err(e) => json!({ "unreadable": e.to_string() }),
        },
        Kind::FOLLOW_LIST => match ev.payload_as::<ArchivedFollowList>() {
            Ok(f) => Value::Array(
                f.follows
                    .iter()
                    .map(|k| Value::String(xaeroflux::PublicKey(*k).to_string()))
                    .collect(),
            ),
            Err(e) => json!({ "unreadable": e.to_string() }),
        },
        _ => json!({ "bytes": ev.payload().len() }),
    }
}

pub fn event_json(ev: &EventRef<'_>) -> Value {
    let opt = |zero: bool, s: String| if zero { Value::Null } else { Value::String(s) };
    json!({
        "id": ev.id().to_string(),
        "kind": ev.kind().to_string(),
        "created_at": ev.created_at(),
        "author": ev.author().to_string(),
        "topic": opt(ev.topic().is_zero(), ev.topic().to_string()),
        "reference": opt(ev.reference().is_zero(), ev.reference().to_string()),
        "payload_bytes": ev.payload().len(),
        "content": content(ev),
    })
}

/// Text from other people made safe for a terminal: control characters (C0 with newline,
/// carriage return and escape, DEL, C1) and the bidirectional embeddings, overrides and
/// isolates become visible escapes (`\n`, `\u{1b}`), so a post can neither move the cursor,
/// recolour or clear the screen, nor pass for several lines or reorder what it shows. JSON
/// output needs none of this: its strings are escaped by JSON's own rules.
pub fn terminal_safe(text: &str) -> Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() || is_bidi_control(c);
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if unsafe_char(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Bidirectional embeddings, overrides and isolates: invisible, they reorder what follows them
/// up to the end of the line (what "Trojan Source" used). Joiners and marks stay: emoji
/// sequences and right-to-left scripts need them, and they reorder nothing beyond themselves.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// One line for a terminal: `time  author…  kind  content  [id…]`; the content is escaped
/// ([`terminal_safe`]).
pub fn event_line(ev: &EventRef<'_>) -> String {
    let content = match content(ev) {
        Value::String(s) => terminal_safe(&s).into_owned(),
        other => terminal_safe(&other.to_string()).into_owned(),
    };
    let reference = if ev.reference().is_zero() {
        String::new()
    } else {
        format!(" → {}", short(&ev.reference().to_string()))
    };
    format!(
        "{}  {}  {:<11} {}{}  [{}]",
        ev.created_at(),
        short(&ev.author().to_string()),
        ev.kind().to_string(),
        content,
        reference,
        short(&ev.id().to_string())
    )
}

pub fn short(hex: &str) -> &str {
    &hex[..hex.len().min(12)]
}

pub fn print_events(json: bool, events: &[EventRef<'_>]) {
    if json {
        let all: Vec<Value> = events.iter().map(event_json).collect();
        println!("{}", Value::Array(all));
    } else {
        for ev in events {
            println!("{}", event_line(ev));
        }
    }
}

/// Lowercase hex of a byte string (fingerprints).
pub fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// The Merkle index's root: the set's name and the index's shape.
pub fn set_root_json(root: &xaeroflux::SetRoot) -> Value {
    json!({
        "fingerprint": hex(&root.fingerprint),
        "events": root.accum.count,
        "height": root.height,
        "leaf_pages": root.leaf_pages,
        "branch_pages": root.branch_pages,
    })
}
