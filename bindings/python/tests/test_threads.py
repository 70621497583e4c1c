"""The threads the binding keeps: the callback thread lives while there is something to call
back for, and ends when there is not (read from /proc: Linux only)."""
import os
import sys
import time

import pytest
import xaeroflux as xf

from helpers import LOOPBACK, Collect

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def thread_names():
    names = []
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                names.append(f.read().strip())
        except FileNotFoundError:
            pass  # ended meanwhile
    return names


def wait_until(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"not within {timeout} s: {thread_names()}"
        time.sleep(0.02)


def test_the_callback_thread_lives_only_while_needed(tmp_path):
    node = xf.Node.open(str(tmp_path / "node"))
    assert "xf-callbacks" not in thread_names()

    handle = node.subscribe(xf.Filter(), Collect())
    wait_until(lambda: "xf-callbacks" in thread_names())
    handle.cancel()
    wait_until(lambda: "xf-callbacks" not in thread_names())

    node.start_network(LOOPBACK)
    wait_until(lambda: {"xf-callbacks", "xf-net"} <= set(thread_names()))
    node.stop_network()
    wait_until(lambda: not {"xf-callbacks", "xf-net"} & set(thread_names()))
    # The store's writer ("xaeroflux-writer", cut to Linux's 15 characters) ends with close.
    writer = "xaeroflux-write"
    assert writer in thread_names()
    node.close()
    wait_until(lambda: writer not in thread_names())

