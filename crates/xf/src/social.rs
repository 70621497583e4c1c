//! Commands that publish: init, post, react, follow, delete, profile.

use anyhow::Result;
use serde_json::json;
use xaeroflux::{IdPrefix, Outcome, Profile, PublicKey, Published};

use crate::cli::{open_node, parse_topic, Args, Opening::Existing};

pub fn init(args: &Args) -> Result<()> {
    let node = open_node(args, crate::cli::Opening::Init)?;
    let key = node.identity().expect("created").public_key();
    if args.json {
        println!(
            "{}",
            json!({ "data": node.store().path(), "public_key": key.to_string() })
        );
    } else {
        println!("store:      {}", node.store().path().display());
        println!("public key: {key}");
    }
    Ok(())
}

fn report(args: &Args, p: Published) -> Result<()> {
    let outcome = match p.outcome {
        Outcome::Stored { .. } => "stored",
        Outcome::Duplicate => "duplicate",
        Outcome::Deleted => "deleted",
        Outcome::Superseded => "superseded",
        _ => "other",
    };
    if args.json {
        println!("{}", json!({ "id": p.id.to_string(), "outcome": outcome }));
    } else {
        println!("{} ({outcome})", p.id);
    }
    Ok(())
}

pub fn post(
    args: &Args,
    text: &str,
    topic: Option<&str>,
    reply_to: Option<&IdPrefix>,
) -> Result<()> {
    let node = open_node(args, Existing)?;
    let topic = topic.map(|t| parse_topic(t).expect("infallible"));
    let reply_to = reply_to.map(|id| node.resolve_id(id)).transpose()?;
    report(args, node.post(text, topic, reply_to)?)
}

pub fn react(args: &Args, id: &IdPrefix, text: &str) -> Result<()> {
    let node = open_node(args, Existing)?;
    report(args, node.react(node.resolve_id(id)?, text)?)
}

pub fn follow(args: &Args, authors: &[PublicKey]) -> Result<()> {
    report(args, open_node(args, Existing)?.follow(authors)?)
}

pub fn delete(args: &Args, id: &IdPrefix, reason: &str) -> Result<()> {
    let node = open_node(args, Existing)?;
    report(args, node.delete(node.resolve_id(id)?, reason)?)
}

pub fn profile(args: &Args, name: &str, about: &str, picture: &str) -> Result<()> {
    let profile = Profile {
        name: name.into(),
        about: about.into(),
        picture: picture.into(),
    };
    report(args, open_node(args, Existing)?.set_profile(&profile)?)
}
