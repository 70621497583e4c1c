//! A store written by the release before encryption (format 2, plain; the fixture was made by
//! that release's own `xf`, see `fixtures/release-plain/README.md`) opens as it is, and
//! `xf encrypt` makes it encrypted with every event, the same set, and the same author.

use std::path::Path;

mod common;
use common::{ok_json, xf_cmd};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/release-plain");

/// A copy of the fixture's store, to change.
fn copy_fixture(to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for name in ["data.mdb", "identity.key"] {
        std::fs::copy(Path::new(FIXTURE).join(name), to.join(name)).unwrap();
    }
    // The key file's mode is not kept by git: it is the owner's alone, as `xf init` made it.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            to.join("identity.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
    }
}

fn expected() -> serde_json::Value {
    let text = std::fs::read_to_string(Path::new(FIXTURE).join("stats.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn a_store_of_the_release_before_opens_and_is_encrypted_with_every_event() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("old");
    copy_fixture(&data);
    let want = expected();
    let init = {
        let text = std::fs::read_to_string(Path::new(FIXTURE).join("init.json")).unwrap();
        serde_json::from_str::<serde_json::Value>(&text).unwrap()
    };

    // It opens as it is, with or without a passphrase set.
    let stats = ok_json(&data, &["stats"]);
    assert_eq!(stats["encrypted"], false);
    assert_eq!(stats["events"], want["events"]);
    assert_eq!(stats["set"]["fingerprint"], want["set"]["fingerprint"]);
    let out = xf_cmd()
        .env_remove("XF_PASSPHRASE")
        .arg("--data")
        .arg(&data)
        .args(["--json", "stats"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // `xf encrypt`: every event, the same set, verified, and nothing of it in the clear.
    let done = ok_json(&data, &["encrypt"]);
    assert_eq!(done["events"], want["events"]);
    assert_eq!(done["was_encrypted"], false);
    let after = ok_json(&data, &["stats"]);
    assert_eq!(after["encrypted"], true);
    assert_eq!(after["events"], want["events"]);
    assert_eq!(after["set"]["fingerprint"], want["set"]["fingerprint"]);
    assert_eq!(ok_json(&data, &["verify"])["ok"], true);
    let post_text = std::fs::read_to_string(Path::new(FIXTURE).join("post.txt")).unwrap();
    let post_text = post_text.trim_end();
    let feed = ok_json(&data, &["query", "--kind", "post", "--limit", "10000"]);
    assert!(
        feed.as_array()
            .unwrap()
            .iter()
            .any(|e| e["content"] == post_text),
        "the release's post is still there"
    );
    for entry in std::fs::read_dir(&data).unwrap().flatten() {
        let bytes = std::fs::read(entry.path()).unwrap();
        assert!(
            !bytes
                .windows(post_text.len())
                .any(|w| w == post_text.as_bytes()),
            "{} holds the post in the clear",
            entry.file_name().to_string_lossy()
        );
    }
    // The same author publishes on.
    let post = ok_json(&data, &["post", "after the upgrade"]);
    let got = ok_json(&data, &["get", post["id"].as_str().unwrap()]);
    assert_eq!(got["author"], init["public_key"]);
}
