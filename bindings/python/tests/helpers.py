import os
import queue
import threading
import time

import xaeroflux as xf


class FakeKeystore(xf.KeyProvider):
    """A stand-in for a platform keystore (the iOS Keychain, the Android Keystore): the data
    key stays inside it, and what the store keeps is an opaque handle. Another keystore (a
    new install, another device) does not know the handle: that is a wrong key."""

    def __init__(self):
        self._keys = {}
        self.calls = 0

    def kind(self):
        return "test-keystore"

    def wrap(self, data_key):
        self.calls += 1
        handle = os.urandom(16)
        self._keys[handle] = bytes(data_key)
        return handle

    def unwrap(self, wrapped):
        self.calls += 1
        key = self._keys.get(bytes(wrapped))
        if key is None:
            raise xf.XfError.WrongKey("this keystore holds no such key")
        return key


class Collect(xf.EventListener):
    """Collects what a subscription delivers, and which thread delivered it."""

    def __init__(self):
        self.events = queue.Queue()
        self.threads = set()

    def on_event(self, event):
        self.threads.add(threading.current_thread().ident)
        self.events.put(event)

    def take(self, count, timeout=10.0):
        got = []
        deadline = time.monotonic() + timeout
        while len(got) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{len(got)} of {count} events within {timeout} s: {got}")
            got.append(self.events.get(timeout=left))
        return got


class NetLog(xf.NetListener):
    def __init__(self):
        self.events = queue.Queue()

    def on_net_event(self, event):
        self.events.put(event)

    def wait_for(self, kind, timeout=20.0):
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {kind.__name__} within {timeout} s; saw {seen}")
            event = self.events.get(timeout=left)
            if isinstance(event, kind):
                return event
            seen.append(event)


LOOPBACK = xf.NetOptions(listen=["/ip4/127.0.0.1/udp/0/quic-v1", "/ip4/127.0.0.1/tcp/0"],
                         mdns=False)


def quic_address(node, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        addrs = node.listen_addresses(timeout_ms=1_000)
        quic = [a for a in addrs if "/quic-v1/" in a]
        if quic:
            return quic[0]
        assert time.monotonic() < deadline, f"no QUIC listen address in {addrs}"
        time.sleep(0.05)
