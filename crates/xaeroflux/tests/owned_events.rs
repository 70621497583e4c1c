//! Owned events: what `Node::get`, `query` and `feed` hand out outlives the read transaction
//! and carries the same bytes as the zero-copy view.

use xaeroflux::{Event, Filter, Identity, Kind, Node, Topic};

#[test]
fn owned_events_carry_what_was_stored() {
    let dir = tempfile::tempdir().unwrap();
    let me = Identity::from_seed(&[7; 32]);
    let key = me.public_key();
    let node = Node::builder()
        .data_dir(dir.path())
        .identity(me)
        .open()
        .unwrap();
    let topic = Topic::named("rust");
    let post = node.post("first", Some(topic), None).unwrap().id;
    let reply = node.post("second", None, Some(post)).unwrap().id;
    node.react(post, "+").unwrap();
    node.follow(&[key]).unwrap();

    let got: Event = node.get(&post).unwrap().expect("stored");
    assert_eq!(got.id(), &post);
    assert_eq!(got.kind(), Kind::POST);
    assert_eq!(got.author(), key);
    assert_eq!(got.topic(), Some(topic));
    assert_eq!(got.reference(), None);
    assert_eq!(got.text(), Some("first"));
    // The same bytes as the view, and they verify as what was signed.
    let view = node.store().read().unwrap();
    assert_eq!(got.to_bytes(), view.get(&post).unwrap().unwrap().to_vec());
    drop(view);
    let verified = xaeroflux_event::verify(
        got.to_bytes(),
        &xaeroflux_event::Limits::at(xaeroflux::now_ms()),
    );
    assert_eq!(verified.unwrap().id(), &post);

    let replies = node
        .query(&Filter {
            references: vec![post],
            kinds: vec![Kind::REPLY],
            ..Filter::default()
        })
        .unwrap();
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].id(), &reply);
    assert_eq!(replies[0].reference(), Some(post));
    let feed = node.feed(&key, 10, None).unwrap();
    let texts: Vec<_> = feed.iter().map(|e| e.text().unwrap()).collect();
    assert_eq!(texts, vec!["second", "first"]);
    assert!(node.get(&xaeroflux::EventId([9; 32])).unwrap().is_none());
}
