"""Encryption at rest through the binding: the host's keystore, a passphrase, wrong keys."""
import pytest
import xaeroflux as xf

from helpers import FakeKeystore


def test_host_keystore_opens_and_another_is_refused(tmp_path):
    path = str(tmp_path / "node")
    keystore = FakeKeystore()
    node = xf.Node.open(path, key_provider=keystore)
    assert node.is_encrypted()
    assert keystore.calls >= 1  # the new data key was wrapped (and checked)
    kept = node.post("sealed").id
    node.close()

    with pytest.raises(xf.XfError.WrongKey):
        xf.Node.open(path, key_provider=FakeKeystore())
    with pytest.raises(xf.XfError.KeyRequired):
        xf.Node.open(path)

    again = xf.Node.open(path, key_provider=keystore)
    assert again.get(kept).text == "sealed"
    again.close()


def test_a_keystore_that_fails_is_a_provider_error(tmp_path):
    path = str(tmp_path / "node")
    keystore = FakeKeystore()
    xf.Node.open(path, key_provider=keystore).close()

    class Locked(FakeKeystore):
        def unwrap(self, wrapped):
            raise xf.XfError.KeyProvider("the device is locked")

    class Broken(FakeKeystore):
        def unwrap(self, wrapped):
            raise ValueError("a bug in the app")

    class Short(FakeKeystore):
        def unwrap(self, wrapped):
            return b"too short"

    for provider in (Locked(), Broken(), Short()):
        with pytest.raises(xf.XfError.KeyProvider):
            xf.Node.open(path, key_provider=provider)
    xf.Node.open(path, key_provider=keystore).close()


def test_passphrase_right_and_wrong(tmp_path):
    path = str(tmp_path / "node")
    node = xf.Node.open_with_passphrase(path, "correct horse battery staple")
    kept = node.post("by passphrase").id
    node.close()
    with pytest.raises(xf.XfError.WrongKey):
        xf.Node.open_with_passphrase(path, "wrong")
    node = xf.Node.open_with_passphrase(path, "correct horse battery staple")
    assert node.get(kept).text == "by passphrase"
    node.close()
