//! The network identity is apart from the author: what a LAN observer hears (mDNS) and what a
//! connected peer learns (its peer id, identify, the sync session, its peer table) hold the
//! node's network key and never its author key, in any form: raw bytes, hex, or the libp2p peer
//! id the author key would make. Two hosts in network namespaces; needs root, iproute2 and
//! python3 (the observer's mDNS capture).

mod common;
mod lab;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use common::{ok_json, NodeProc};
use lab::Lab;

const XF: &str = env!("CARGO_BIN_EXE_xf");

/// Listens on the mDNS group on `addr` for `secs` seconds, asks once for libp2p peers, and
/// prints every packet heard as one line of hex.
const MDNS_OBSERVER: &str = r#"
import socket, struct, sys, time
addr, secs = sys.argv[1], float(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("", 5353))
s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
             struct.pack("4s4s", socket.inet_aton("224.0.0.251"), socket.inet_aton(addr)))
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(addr))
s.settimeout(0.2)
# A PTR question for _p2p._udp.local: every libp2p node on the link answers it.
name = b"".join(bytes([len(p)]) + p for p in [b"_p2p", b"_udp", b"local"]) + b"\0"
query = struct.pack(">HHHHHH", 0, 0, 1, 0, 0, 0) + name + struct.pack(">HH", 12, 1)
end, asked = time.time() + secs, 0
while time.time() < end:
    if time.time() > end - secs + 0.5 * asked and asked < 4:
        s.sendto(query, ("224.0.0.251", 5353))
        asked += 1
    try:
        data, _ = s.recvfrom(65535)
        print(data.hex(), flush=True)
    except socket.timeout:
        pass
"#;

/// Base58 (Bitcoin alphabet), as libp2p prints peer ids.
fn base58(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    let mut digits: Vec<u8> = Vec::new();
    for &b in bytes {
        let mut carry = u32::from(b);
        for d in digits.iter_mut() {
            carry += u32::from(*d) << 8;
            *d = (carry % 58) as u8;
            carry /= 58;
        }
        while carry > 0 {
            digits.push((carry % 58) as u8);
            carry /= 58;
        }
    }
    let zeros = bytes.iter().take_while(|&&b| b == 0).count();
    std::iter::repeat_n('1', zeros)
        .chain(digits.iter().rev().map(|&d| ALPHABET[d as usize] as char))
        .collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len() / 2)
        .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// Every form an ed25519 public key takes on the wire or in text.
fn forms(key_hex: &str) -> Vec<(&'static str, Vec<u8>)> {
    let raw = unhex(key_hex);
    // A libp2p peer id of an ed25519 key: the identity multihash of its protobuf encoding.
    let mut peer_id = vec![0x00, 0x24, 0x08, 0x01, 0x12, 0x20];
    peer_id.extend_from_slice(&raw);
    vec![
        ("raw bytes", raw),
        ("hex", key_hex.as_bytes().to_vec()),
        ("peer id bytes", peer_id.clone()),
        ("peer id text", base58(&peer_id).into_bytes()),
    ]
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn neither_a_lan_observer_nor_a_connected_peer_learns_the_author_key() {
    let lab = Lab::new(2);
    let base = tempfile::tempdir().unwrap();
    let (here, there) = (base.path().join("h0"), base.path().join("h1"));
    let author = ok_json(&here, &["init"])["public_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let author_forms = forms(&author);
    // The base58 checker itself: the author's peer id text has the shape of every peer id.
    let author_peer = String::from_utf8(author_forms[3].1.clone()).unwrap();
    assert!(author_peer.starts_with("12D3KooW"), "{author_peer}");

    // Host 0 runs a node with LAN discovery (and nothing of its own to publish).
    let mut cmd = lab.command(0, XF);
    cmd.arg("--data").arg(&here).args([
        "node",
        "--listen",
        &format!("/ip4/{}/udp/4001/quic-v1", lab.addr(0)),
    ]);
    let node = NodeProc::spawn(cmd, true);
    assert_ne!(node.peer, author_peer, "the peer id is the author key");

    // Host 1 listens to the LAN's mDNS traffic and asks for libp2p peers.
    let mut observer = lab
        .command(1, "python3")
        .args(["-c", MDNS_OBSERVER, &lab.addr(1).to_string(), "4"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs the mDNS observer");
    let packets: Vec<Vec<u8>> = BufReader::new(observer.stdout.take().expect("piped"))
        .lines()
        .map_while(Result::ok)
        .map(|l| unhex(l.trim()))
        .collect();
    assert!(observer.wait().unwrap().success(), "the observer failed");
    let heard: Vec<u8> = packets.concat();
    eprintln!("the observer heard {} mDNS packets", packets.len());
    // The capture works: the node's own (network) peer id is in its answer.
    assert!(
        contains(&heard, node.peer.as_bytes()),
        "the node's mDNS answer was not heard ({} packets)",
        packets.len()
    );
    for (form, bytes) in &author_forms {
        assert!(
            !contains(&heard, bytes),
            "a LAN observer heard the author key as {form}"
        );
    }

    // Host 1 connects and syncs: what it prints and what it keeps name the network key only.
    let out = lab
        .command(1, XF)
        .arg("--json")
        .arg("--data")
        .arg(&there)
        .args(["sync", &node.quic, "--timeout-secs", "30"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["peer"], node.peer.as_str());
    let mut seen = out.stdout.clone();
    seen.extend_from_slice(&out.stderr);
    for entry in std::fs::read_dir(&there).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            seen.extend(std::fs::read(&path).unwrap());
        }
    }
    assert!(
        contains(&seen, node.peer.as_bytes()),
        "the peer table names the peer"
    );
    for (form, bytes) in &author_forms {
        assert!(
            !contains(&seen, bytes),
            "a connected peer learned the author key as {form}"
        );
    }
    let peer = node.peer.clone();
    drop(node);
    // Restarted, the node keeps its network id; asked to, it takes a new one.
    let mut restarted = lab.command(0, XF);
    restarted.arg("--data").arg(&here).args([
        "node",
        "--no-mdns",
        "--listen",
        &format!("/ip4/{}/udp/4002/quic-v1", lab.addr(0)),
    ]);
    let again = NodeProc::spawn(restarted, true);
    let first = again.peer.clone();
    drop(again);
    let mut cmd = lab.command(0, XF);
    cmd.arg("--data").arg(&here).args([
        "node",
        "--no-mdns",
        "--new-peer-id",
        "--listen",
        &format!("/ip4/{}/udp/4003/quic-v1", lab.addr(0)),
    ]);
    let rotated = NodeProc::spawn(cmd, true);
    assert_eq!(first, peer, "a restart keeps the stored network id");
    assert_ne!(rotated.peer, peer, "--new-peer-id takes a new id");
    assert_ne!(rotated.peer, author_peer);
}
