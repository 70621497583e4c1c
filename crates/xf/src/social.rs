//! Commands that publish: init, post, react, follow, delete, profile.

use anyhow::Result;
use serde_json::json;
use xaeroflux::{IdPrefix, Outcome, Profile, PublicKey, Published};

use crate::cli::{open_node, parse_topic, Args, Opening::Existing};

pub fn init(args: &Args) -> Result<()> {
    let node = open_node(args, crate::cli::Opening::Init)?;
    let key = node.identity().expect("created").public_key();
    let encrypted = node.store().is_encrypted();
    if args.json {
        println!(
            "{}",
            json!({ "data": node.store().path(), "public_key": key.to_string(), "encrypted": encrypted })
        );
    } else {
        println!("store:      {}", node.store().path().display());
        println!("public key: {key}");
        println!("{}", crate::read::encryption_line(encrypted));
    }
    Ok(())
}

/// `xf passwd`: the data key rewrapped under a new passphrase.
pub fn passwd(args: &Args) -> Result<()> {
    use crate::secret::{self, Asking};
    let dir = crate::cli::data_dir(args);
    if !secret::is_encrypted(&dir) {
        anyhow::bail!(
            "the store in {} is not encrypted: it has no passphrase to change",
            dir.display()
        );
    }
    let prompt = |what: &str| format!("{what} for {}", dir.display());
    let old = secret::read(secret::PASSPHRASE_ENV, &prompt("Passphrase"), Asking::Open)?;
    let new = secret::read(
        secret::NEW_PASSPHRASE_ENV,
        &prompt("New passphrase"),
        Asking::New,
    )?;
    xaeroflux::keys::rewrap(&dir, &*secret::provider(old), &*secret::provider(new)).map_err(
        |e| match e {
            xaeroflux::KeyError::WrongKey => anyhow::anyhow!(
                "wrong passphrase for the store in {}: nothing was changed",
                dir.display()
            ),
            other => other.into(),
        },
    )?;
    if args.json {
        println!("{}", json!({ "data": dir, "passphrase": "changed" }));
    } else {
        println!(
            "passphrase changed for {} (no data rewritten)",
            dir.display()
        );
    }
    Ok(())
}

/// `xf rekey` (`rekey`: an encrypted store under a new data key) and `xf encrypt` (a plain
/// store made encrypted).
pub fn reseal(args: &Args, rekey: bool) -> Result<()> {
    use crate::secret::{self, Asking};
    let dir = crate::cli::data_dir(args);
    if !secret::has_store(&dir) {
        anyhow::bail!("there is no store in {}", dir.display());
    }
    let encrypted = secret::is_encrypted(&dir);
    let prompt = |what: &str| format!("{what} for {}", dir.display());
    let (old, new) = match (rekey, encrypted) {
        (true, true) => {
            let p = secret::provider(secret::read(
                secret::PASSPHRASE_ENV,
                &prompt("Passphrase"),
                Asking::Open,
            )?);
            (Some(p.clone()), p)
        }
        (false, false) => (
            None,
            secret::provider(secret::read(
                secret::PASSPHRASE_ENV,
                &prompt("New passphrase"),
                Asking::New,
            )?),
        ),
        (true, false) => anyhow::bail!(
            "the store in {} is not encrypted: `xf encrypt` encrypts it",
            dir.display()
        ),
        (false, true) => anyhow::bail!(
            "the store in {} is already encrypted: `xf rekey` gives it a new key",
            dir.display()
        ),
    };
    let done = xaeroflux::reseal(&dir, old.as_deref(), &*new, |_| {}).map_err(|e| match e {
        xaeroflux::ResealError::Key(xaeroflux::KeyError::WrongKey) => anyhow::anyhow!(
            "wrong passphrase for the store in {}: nothing was changed",
            dir.display()
        ),
        other => anyhow::Error::from(other).context(format!(
            "{} the store in {} (it is unchanged)",
            if rekey { "rekeying" } else { "encrypting" },
            dir.display()
        )),
    })?;
    let fingerprint: String = done
        .fingerprint
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if args.json {
        println!(
            "{}",
            json!({ "data": dir, "events": done.events, "fingerprint": fingerprint,
                    "encrypted": true, "was_encrypted": done.was_encrypted })
        );
    } else {
        println!(
            "{} {} events into a store under a new key; set {fingerprint} unchanged",
            if rekey { "rekeyed:" } else { "encrypted:" },
            done.events
        );
        println!(
            "note: the old files were deleted, but flash storage may keep their blocks until \
             they are overwritten"
        );
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
