"""Private messages through the binding: a direct message between two authors."""
import xaeroflux as xf


def move(source, target, path):
    source.export_to(str(path))
    return target.import_from(str(path))


def test_a_direct_message_reaches_its_peer_only(tmp_path):
    alice = xf.Node.open(str(tmp_path / "alice"))
    bob = xf.Node.open(str(tmp_path / "bob"))
    eve = xf.Node.open(str(tmp_path / "eve"))
    # Bob publishes his key bundle; Alice gets it the way any event travels.
    bob.conversations()
    bob.update_keys()
    move(bob, alice, tmp_path / "bob.xfe")

    convo = alice.dm(bob.author(), "hello bob")
    move(alice, bob, tmp_path / "alice.xfe")
    move(alice, eve, tmp_path / "alice-to-eve.xfe")

    caught = bob.conversations_catch_up()
    assert caught.accepted >= 1 and caught.rejected == 0
    [talk] = bob.conversations()
    assert talk.id == convo and talk.direct_peer == alice.author()
    [message] = bob.messages(convo)
    assert (message.text, message.author) == ("hello bob", alice.author())

    # Eve stores the envelope but reads nothing of it.
    eve.conversations_catch_up()
    assert eve.conversations() == []
    # The envelope in the clear says nothing of its text.
    envelopes = eve.query(xf.Filter(kinds=["envelope"]))
    assert envelopes and all(e.text is None for e in envelopes)
    assert all(b"hello bob" not in e.payload for e in envelopes)
    for n in (alice, bob, eve):
        n.close()
