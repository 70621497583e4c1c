"""The store through the binding: publish, read, query, threads, subscriptions, files."""
import sys
import threading
import time

import pytest
import xaeroflux as xf

from helpers import Collect


@pytest.fixture
def node(tmp_path):
    n = xf.Node.open(str(tmp_path / "node"))
    yield n
    n.close()


def test_open_post_get_query(node):
    me = node.author()
    assert me is not None and len(me) == 64
    first = node.post("hello", topic="rust")
    assert first.outcome == "stored" and first.seq is not None
    second = node.post("world")

    got = node.get(first.id)
    assert got.text == "hello"
    assert got.author == me
    assert got.kind == "post" and got.kind_code == 1
    assert got.topic == xf.topic_id("rust")
    assert got.reference is None

    posts = node.query(xf.Filter(kinds=["post"]))
    assert [e.id for e in posts] == [second.id, first.id]  # newest first
    in_topic = node.query(xf.Filter(topics=["rust"]))
    assert [e.id for e in in_topic] == [first.id]
    assert node.query(xf.Filter(authors=["00" * 32])) == []
    assert node.get("ab" * 32) is None


def test_reply_react_thread_delete_profile_follow(node, tmp_path):
    root = node.post("root")
    reply = node.reply(root.id, "a reply")
    deeper = node.post("deeper", reply_to=reply.id)
    reaction = node.react(root.id, "+")

    thread = node.thread(root.id)
    assert thread.root.id == root.id
    assert {(e.depth, e.event.id) for e in thread.entries} == {
        (1, reply.id), (2, deeper.id), (1, reaction.id)}
    assert not thread.truncated
    assert node.thread(root.id, limit=1).truncated

    deletion = node.delete(deeper.id, reason="typo")
    assert deletion.outcome == "stored"
    assert node.get(deeper.id) is None

    node.set_profile(xf.Profile(name="Ada", about="engines"))
    assert node.profile(node.author()) == xf.Profile(name="Ada", about="engines", picture="")

    other = xf.Node.open(str(tmp_path / "other"))
    try:
        node.follow([other.author()])
        assert node.follows(node.author()) == [other.author()]
    finally:
        other.close()
    assert node.feed() == []  # the one followed has posted nothing here


def test_short_ids_resolve(node):
    published = node.post("short")
    assert node.resolve_id(published.id[:12]) == published.id
    with pytest.raises(xf.XfError.NotFound):
        node.resolve_id("0000" if not published.id.startswith("0000") else "ffff")


def test_bad_input_is_a_typed_error(node):
    with pytest.raises(xf.XfError.InvalidArgument) as e:
        node.get("not an id")
    assert "64 hex digits" in e.value.detail
    with pytest.raises(xf.XfError.InvalidArgument):
        node.query(xf.Filter(limit=1_000_000))
    with pytest.raises(xf.XfError.InvalidArgument):
        node.query(xf.Filter(kinds=["no-such-kind"]))
    with pytest.raises(xf.XfError.InvalidArgument):
        node.query(xf.Filter(since_ms=10, until_ms=5))
    with pytest.raises(xf.XfError.Rejected):
        node.post("x" * (70 * 1024))
    with pytest.raises(xf.XfError.NoNetwork):
        node.sync_with("/ip4/127.0.0.1/udp/1/quic-v1")
    # None of it changed the store.
    assert node.query(xf.Filter()) == []


def test_subscribe_delivers_and_cancel_stops(node):
    posts = Collect()
    handle = node.subscribe(xf.Filter(kinds=["post"]), posts)
    everything = Collect()
    keep = node.subscribe(xf.Filter(), everything)

    a = node.post("one")
    node.react(a.id, "+")  # not a post: the first subscription does not see it
    b = node.post("two")
    assert [e.id for e in posts.take(2)] == [a.id, b.id]
    assert len(everything.take(3)) == 3
    # Callbacks run on the binding's own thread, not the caller's.
    assert threading.get_ident() not in posts.threads

    handle.cancel()
    assert handle.is_cancelled()
    c = node.post("three")
    # The other subscription is still served, so the thread has passed this event by.
    assert everything.take(1)[0].id == c.id
    d = node.post("four")
    assert everything.take(1)[0].id == d.id
    assert posts.events.empty(), "a cancelled subscription delivered an event"
    keep.cancel()


def test_a_listener_that_throws_does_not_end_its_subscription(node):
    class Flaky(xf.EventListener):
        def __init__(self):
            self.seen = []
            self.done = threading.Event()

        def on_event(self, event):
            self.seen.append(event.text)
            if len(self.seen) == 1:
                raise RuntimeError("the app's bug")
            self.done.set()

    flaky = Flaky()
    handle = node.subscribe(xf.Filter(), flaky)
    node.post("first")
    node.post("second")
    assert flaky.done.wait(10)
    assert flaky.seen == ["first", "second"]
    handle.cancel()


def test_a_burst_larger_than_the_channel_loses_nothing(node):
    class Stalled(Collect):
        """Holds the callback thread on the first event until the burst is stored, so the
        subscription's channel (1,024 events) overflows and it must catch up from the log."""

        def __init__(self):
            super().__init__()
            self.go = threading.Event()

        def on_event(self, event):
            self.go.wait(60)
            super().on_event(event)

    seen = Stalled()
    handle = node.subscribe(xf.Filter(kinds=["post"]), seen)
    ids = [node.post(f"burst {i}").id for i in range(3000)]
    seen.go.set()
    assert [e.id for e in seen.take(len(ids), timeout=60)] == ids
    handle.cancel()


def test_close_then_calls_fail_and_reopen_keeps_everything(tmp_path):
    path = str(tmp_path / "node")
    node = xf.Node.open(path)
    me = node.author()
    published = node.post("kept")
    node.close()
    node.close()  # twice: nothing
    with pytest.raises(xf.XfError.Closed):
        node.post("after close")
    with pytest.raises(xf.XfError.Closed):
        node.get(published.id)

    again = xf.Node.open(path)
    assert again.author() == me
    assert again.get(published.id).text == "kept"
    again.close()


def test_export_import_and_a_tampered_file(tmp_path):
    source = xf.Node.open(str(tmp_path / "a"))
    ids = [source.post(f"event {i}").id for i in range(25)]
    export = tmp_path / "events.xfe"
    assert source.export_to(str(export)) == 25
    source.close()

    target = xf.Node.open(str(tmp_path / "b"), xf.OpenOptions(create_identity=False))
    assert target.author() is None
    report = target.import_from(str(export))
    assert (report.seen, report.stored, report.rejected) == (25, 25, 0)
    assert {e.id for e in target.query(xf.Filter())} == set(ids)
    again = target.import_from(str(export))
    assert (again.stored, again.duplicates) == (0, 25)
    with pytest.raises(xf.XfError.NoIdentity):
        target.post("no identity")

    data = bytearray(export.read_bytes())
    cut = tmp_path / "cut.xfe"
    cut.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(xf.XfError.Corrupt):
        target.import_from(str(cut))
    data[40] ^= 0xFF  # inside the first event: its signature no longer verifies
    forged = tmp_path / "forged.xfe"
    forged.write_bytes(bytes(data))
    fresh = xf.Node.open(str(tmp_path / "c"))
    with pytest.raises(xf.XfError.Corrupt):
        fresh.import_from(str(forged))  # the trailer's checksum catches it
    target.close()
    fresh.close()


def test_stats_say_what_the_map_reserves(node):
    for i in range(10):
        node.post(f"counted {i}")
    stats = node.stats()
    assert stats.events == 10
    assert stats.file_bytes > 0
    # Address space, reserved up front (the default: 1 GiB on 64-bit, 256 MiB on 32-bit
    # targets), and at least the file.
    assert stats.map_bytes >= stats.file_bytes
    assert stats.map_bytes == (1 << 30 if sys.maxsize > 2**32 else 256 << 20)
