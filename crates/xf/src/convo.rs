//! Private conversations: `xf dm`, `xf inbox`, `xf group …`.

use anyhow::{bail, Result};
use serde_json::{json, Value};
use xaeroflux::{ConvoId, ConvoInfo, Message, Node, PublicKey};

use crate::cli::{open_node, Args, GroupCommand, Opening::Existing};
use crate::output::{hex, short, terminal_safe};

/// A conversation named on the command line: its id (64 hex digits or a unique prefix of 4 or
/// more), or a group's exact name when no other conversation has it.
fn resolve(node: &Node, name: &str) -> Result<ConvoInfo> {
    let all = node.conversations()?;
    let lower = name.to_ascii_lowercase();
    let by_id: Vec<&ConvoInfo> = if lower.len() >= 4 && lower.chars().all(|c| c.is_ascii_hexdigit())
    {
        all.iter()
            .filter(|c| hex(&c.id).starts_with(&lower))
            .collect()
    } else {
        Vec::new()
    };
    let by_name: Vec<&ConvoInfo> = all.iter().filter(|c| c.name == name).collect();
    match (by_id.as_slice(), by_name.as_slice()) {
        ([one], _) | ([], [one]) => Ok((*one).clone()),
        ([], []) => bail!("no conversation {name:?}: `xf group list` shows them"),
        _ => bail!("{name:?} names more than one conversation: give more of its id"),
    }
}

fn who(node: &Node, author: &[u8; 32]) -> String {
    let key = PublicKey(*author);
    match node.display_name(&key) {
        Ok(Some(name)) if !name.is_empty() => {
            format!("{} ({})", terminal_safe(&name), short(&key.to_string()))
        }
        _ => short(&key.to_string()).to_string(),
    }
}

fn message_json(m: &Message) -> Value {
    json!({
        "id": hex(&m.id),
        "conversation": hex(&m.convo),
        "author": PublicKey(m.author).to_string(),
        "sent_at": m.sent_at,
        "text": m.text,
    })
}

fn info_json(c: &ConvoInfo) -> Value {
    json!({
        "id": hex(&c.id),
        "kind": if c.direct.is_some() { "direct" } else { "group" },
        "name": c.name,
        "peer": c.direct.map(|p| PublicKey(p).to_string()),
        "members": c.members.iter().map(|m| PublicKey(*m).to_string()).collect::<Vec<_>>(),
        "admins": c.admins.iter().map(|m| PublicKey(*m).to_string()).collect::<Vec<_>>(),
        "member": c.member,
        "messages": c.messages,
    })
}

fn title(node: &Node, c: &ConvoInfo) -> String {
    let state = if c.member { "" } else { " · left or removed" };
    match c.direct {
        Some(peer) => format!(
            "direct with {}  [{}]{state}",
            who(node, &peer),
            short(&hex(&c.id))
        ),
        None => format!(
            "group {:?}  [{}]  {} members{state}",
            terminal_safe(&c.name),
            short(&hex(&c.id)),
            c.members.len()
        ),
    }
}

fn message_line(node: &Node, m: &Message) -> String {
    format!(
        "  {}  {}: {}",
        m.sent_at,
        who(node, &m.author),
        terminal_safe(&m.text)
    )
}

/// `xf dm AUTHOR TEXT`.
pub fn dm(args: &Args, author: &PublicKey, text: &str) -> Result<()> {
    let node = open_node(args, Existing)?;
    let convo = node.dm(author, text)?;
    if args.json {
        println!(
            "{}",
            json!({ "conversation": hex(&convo), "to": author.to_string(), "sent": true })
        );
    } else {
        println!(
            "sent to {} (end-to-end encrypted)  [{}]",
            who(&node, &author.0),
            short(&hex(&convo))
        );
    }
    Ok(())
}

/// `xf inbox`: every conversation, its newest messages, after reading what arrived.
pub fn inbox(args: &Args, last: usize) -> Result<()> {
    let node = open_node(args, Existing)?;
    let caught = node.conversations_catch_up()?;
    let all = node.conversations()?;
    let mut out = Vec::new();
    for c in &all {
        let messages = node.group_read(&c.id)?;
        let newest = &messages[messages.len().saturating_sub(last)..];
        if args.json {
            let mut v = info_json(c);
            v["newest"] = newest.iter().map(message_json).collect();
            out.push(v);
        } else {
            println!("{}", title(&node, c));
            for m in newest {
                println!("{}", message_line(&node, m));
            }
        }
    }
    if args.json {
        println!(
            "{}",
            json!({
                "conversations": out,
                "new": caught.accepted,
                "pending": caught.pending,
                "rejected": caught.rejected.len(),
            })
        );
    } else {
        if all.is_empty() {
            println!("no conversations yet");
        }
        if caught.pending > 0 {
            println!(
                "{} envelopes wait for a key bundle or a sender key: sync with a peer that has them",
                caught.pending
            );
        }
        if !caught.rejected.is_empty() {
            println!("{} envelopes refused:", caught.rejected.len());
            for (id, why) in &caught.rejected {
                println!("  {}  {why}", short(&id.to_string()));
            }
        }
    }
    Ok(())
}

/// `xf group …`.
pub fn group(args: &Args, command: &GroupCommand) -> Result<()> {
    let node = open_node(args, Existing)?;
    let done = |what: &str, c: &ConvoId| -> Result<()> {
        if args.json {
            println!("{}", json!({ "conversation": hex(c), "done": what }));
        } else {
            println!("{what}  [{}]", short(&hex(c)));
        }
        Ok(())
    };
    match command {
        GroupCommand::Create { name } => {
            let id = node.group_create(name)?;
            if args.json {
                println!("{}", json!({ "id": hex(&id), "name": name }));
            } else {
                println!("{}", hex(&id));
            }
            Ok(())
        }
        GroupCommand::Add {
            group,
            authors,
            admin,
        } => {
            let c = resolve(&node, group)?;
            node.group_add(&c.id, authors, *admin)?;
            done(&format!("added {}", authors.len()), &c.id)
        }
        GroupCommand::Remove { group, authors } => {
            let c = resolve(&node, group)?;
            node.group_remove(&c.id, authors)?;
            done(&format!("removed {}", authors.len()), &c.id)
        }
        GroupCommand::Leave { group } => {
            let c = resolve(&node, group)?;
            node.group_leave(&c.id)?;
            done("left", &c.id)
        }
        GroupCommand::Send { group, text } => {
            let c = resolve(&node, group)?;
            node.group_send(&c.id, text)?;
            done("sent", &c.id)
        }
        GroupCommand::Read { group } => {
            let c = resolve(&node, group)?;
            let messages = node.group_read(&c.id)?;
            if args.json {
                let list: Vec<Value> = messages.iter().map(message_json).collect();
                println!(
                    "{}",
                    json!({ "conversation": info_json(&c), "messages": list })
                );
            } else {
                println!("{}", title(&node, &c));
                for m in &messages {
                    println!("{}", message_line(&node, m));
                }
            }
            Ok(())
        }
        GroupCommand::List => {
            let all = node.conversations()?;
            if args.json {
                let list: Vec<Value> = all.iter().map(info_json).collect();
                println!("{}", json!(list));
            } else {
                if all.is_empty() {
                    println!("no conversations yet");
                }
                for c in &all {
                    println!("{}  · {} messages", title(&node, c), c.messages);
                }
            }
            Ok(())
        }
        GroupCommand::UpdateKeys => {
            node.conversations_update_keys()?;
            if args.json {
                println!("{}", json!({ "keys": "updated" }));
            } else {
                println!(
                    "conversation keys renewed: members rotate theirs when they read the update"
                );
            }
            Ok(())
        }
    }
}
