"""The network through the binding: two nodes on loopback, pause and resume, stop."""
import time

import pytest
import xaeroflux as xf

from helpers import LOOPBACK, Collect, NetLog, quic_address


@pytest.fixture
def pair(tmp_path):
    a = xf.Node.open(str(tmp_path / "a"))
    b = xf.Node.open(str(tmp_path / "b"))
    yield a, b
    a.close()
    b.close()


def test_two_nodes_on_loopback_converge(pair):
    a, b = pair
    ids = {a.post(f"from a {i}").id for i in range(50)}
    ids |= {b.post(f"from b {i}").id for i in range(30)}

    a.start_network(LOOPBACK)
    log = NetLog()
    b.start_network(LOOPBACK, listener=log)
    address = quic_address(a)
    assert address.endswith("/p2p/" + a.peer_id())

    summary = b.sync_with(address, timeout_ms=30_000)
    assert summary.peer_id == a.peer_id()
    assert (summary.events_received, summary.events_sent) == (50, 30)
    assert {e.id for e in a.query(xf.Filter())} == ids
    assert {e.id for e in b.query(xf.Filter())} == ids
    assert log.wait_for(xf.NetEvent.CONNECTED).peer_id == a.peer_id()
    assert [p.peer_id for p in b.peers()] == [a.peer_id()]

    # Connected, a new post reaches the other by gossip.
    seen = Collect()
    handle = b.subscribe(xf.Filter(kinds=["post"]), seen)
    fresh = a.post("gossiped")
    assert seen.take(1, timeout=20)[0].id == fresh.id
    handle.cancel()

    # A second sync moves nothing: only what the other lacks.
    again = b.sync_with(address, timeout_ms=30_000)
    assert (again.events_received, again.events_sent) == (0, 0)


def test_pause_and_resume(pair):
    a, b = pair
    a.start_network(LOOPBACK)
    log = NetLog()
    b.start_network(LOOPBACK, listener=log)
    b.sync_with(quic_address(a), timeout_ms=30_000)
    # The peer list follows the reports, read on the callback thread.
    assert log.wait_for(xf.NetEvent.CONNECTED).peer_id == a.peer_id()
    assert [p.peer_id for p in b.peers()] == [a.peer_id()]

    b.pause()
    assert log.wait_for(xf.NetEvent.PAUSED)
    assert b.peers() == [] and b.listen_addresses() == []
    with pytest.raises(xf.XfError.Paused):
        b.sync_with(quic_address(a), timeout_ms=5_000)
    # The store stays open while paused.
    written = b.post("while paused").id
    a_posted = a.post("while b slept").id

    b.resume()
    assert log.wait_for(xf.NetEvent.RESUMED)
    assert quic_address(b)
    # Resuming redials a, and the sync round of a new connection may carry both events
    # before this one asks: what it moves is what is left.
    b.sync_with(quic_address(a), timeout_ms=30_000)
    assert a.get(written) is not None and b.get(a_posted) is not None


def test_stop_and_start_again(pair):
    a, b = pair
    a.start_network(LOOPBACK)
    with pytest.raises(xf.XfError.Network):
        a.start_network(LOOPBACK)  # running already
    first = a.peer_id()
    a.stop_network()
    with pytest.raises(xf.XfError.NoNetwork):
        a.peers()
    a.stop_network()  # twice: nothing
    a.start_network(LOOPBACK)
    assert a.peer_id() == first  # the stored network key, not a new one
    assert a.peer_id() != a.author()
    b.start_network(LOOPBACK)
    a.post("after a restart")
    assert b.sync_with(quic_address(a), timeout_ms=30_000).events_received == 1


def test_bad_network_input_is_typed(pair):
    a, _ = pair
    with pytest.raises(xf.XfError.InvalidArgument):
        a.start_network(xf.NetOptions(listen=["not a multiaddr"]))
    a.start_network(LOOPBACK)
    with pytest.raises(xf.XfError.InvalidArgument):
        a.sync_with("nowhere")
    started = time.monotonic()
    with pytest.raises((xf.XfError.SyncFailed, xf.XfError.Timeout)):
        # Nobody listens there.
        a.sync_with("/ip4/127.0.0.1/tcp/9/p2p/" + a.peer_id(), timeout_ms=15_000)
    assert time.monotonic() - started < 16
