//! The network lab itself: hosts reach each other over IPv4 and IPv6, a partition cuts exactly
//! the pairs it names, healing restores them, and dropping the lab leaves nothing behind.
//!
//! Needs root and iproute2. The listener and the client are this test binary run again inside a
//! host's namespace (see `lab_helper`), so the test needs no other network tool.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

mod lab;
use lab::Lab;

/// Port the listener serves on every address of its host.
const PORT: u16 = 7077;
/// Set in a re-run of this binary to make `lab_helper` listen on the given address.
const LISTEN: &str = "XF_LAB_HELPER_LISTEN";
/// Set in a re-run of this binary to make `lab_helper` connect to the given address.
const CONNECT: &str = "XF_LAB_HELPER_CONNECT";

#[test]
fn hosts_connect_partition_heal_and_clean_up() {
    let lab = Lab::new(3);
    let names: Vec<String> = (0..3).map(|i| lab.ns(i).to_owned()).collect();
    let mut listener = listen(&lab, 2);

    for v6 in [false, true] {
        assert_eq!(connect(&lab, 0, 2, v6), Ok(()), "0 reaches 2 (IPv6: {v6})");
    }

    lab.partition(&[0], &[1, 2]);
    for v6 in [false, true] {
        // Timed out, not refused or unreachable: the partition is silent.
        assert_eq!(
            connect(&lab, 0, 2, v6),
            Err("TimedOut".into()),
            "0 cut from 2 (IPv6: {v6})"
        );
        assert_eq!(
            connect(&lab, 1, 2, v6),
            Ok(()),
            "1 still reaches 2 (IPv6: {v6})"
        );
    }

    lab.heal();
    for v6 in [false, true] {
        assert_eq!(
            connect(&lab, 0, 2, v6),
            Ok(()),
            "0 reaches 2 after heal (IPv6: {v6})"
        );
    }

    drop(lab);
    // The listener was still running on host 2: dropping the lab killed it.
    let deadline = Instant::now() + Duration::from_secs(5);
    while listener.try_wait().expect("listener status").is_none() {
        assert!(Instant::now() < deadline, "listener survived the lab");
        thread::sleep(Duration::from_millis(20));
    }
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let list = String::from_utf8_lossy(&out.stdout);
    for name in &names {
        assert!(
            !list
                .lines()
                .any(|line| line.split_whitespace().next() == Some(name)),
            "namespace {name} outlived the lab:\n{list}"
        );
    }
}

/// Starts the listener on host `i` and returns once it accepts connections.
fn listen(lab: &Lab, i: usize) -> Child {
    let mut child = helper(lab, i)
        .env(
            LISTEN,
            SocketAddr::new("::".parse().unwrap(), PORT).to_string(),
        )
        .stdout(Stdio::piped())
        .spawn()
        .expect("listener starts");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    loop {
        match lines.next() {
            // libtest prints the test name on the same line first.
            Some(Ok(line)) if line.ends_with("LAB_READY") => break,
            Some(Ok(_)) => {}
            other => panic!("listener on host {i} failed to start: {other:?}"),
        }
    }
    // Keep draining so the listener never blocks on a full pipe.
    thread::spawn(move || lines.for_each(drop));
    child
}

/// Connects from host `from` to the listener on host `to` and exchanges a byte: `Ok` or the
/// error kind.
fn connect(lab: &Lab, from: usize, to: usize, v6: bool) -> Result<(), String> {
    let ip: IpAddr = if v6 { lab.addr6(to) } else { lab.addr(to) };
    let out = helper(lab, from)
        .env(CONNECT, SocketAddr::new(ip, PORT).to_string())
        .output()
        .expect("client runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let result = stdout
        .lines()
        .find_map(|line| line.split_once("LAB_RESULT ").map(|(_, result)| result))
        .unwrap_or_else(|| panic!("client printed no result: {stdout}"));
    match result {
        "ok" => Ok(()),
        kind => Err(kind.to_owned()),
    }
}

/// This test binary, running only `lab_helper`, on host `i`.
fn helper(lab: &Lab, i: usize) -> Command {
    let mut command = lab.command(i, std::env::current_exe().expect("test binary path"));
    command.args([
        "lab_helper",
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ]);
    command
}

/// Not a test: the listener or client role when this binary is re-run inside a host. Does
/// nothing in an ordinary run.
#[test]
#[ignore = "helper run by hosts_connect_partition_heal_and_clean_up"]
fn lab_helper() {
    if let Ok(addr) = std::env::var(LISTEN) {
        // `[::]` also accepts IPv4 (as mapped addresses), so one listener serves both.
        let listener = TcpListener::bind(&addr).expect("listener binds");
        println!("LAB_READY");
        std::io::stdout().flush().unwrap();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            thread::spawn(move || {
                let mut byte = [0];
                if stream.read_exact(&mut byte).is_ok() {
                    let _ = stream.write_all(&byte);
                }
            });
        }
    } else if let Ok(addr) = std::env::var(CONNECT) {
        let addr: SocketAddr = addr.parse().expect("socket address");
        let result = exchange(addr);
        println!(
            "LAB_RESULT {}",
            result.map_or_else(|kind| format!("{kind:?}"), |()| "ok".into())
        );
    }
}

/// One byte there and back, within a second per step.
fn exchange(addr: SocketAddr) -> Result<(), std::io::ErrorKind> {
    let timeout = Duration::from_secs(1);
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.kind())?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.kind())?;
    stream.write_all(b"x").map_err(|e| e.kind())?;
    let mut byte = [0];
    stream.read_exact(&mut byte).map_err(|e| e.kind())?;
    if &byte == b"x" {
        Ok(())
    } else {
        Err(std::io::ErrorKind::InvalidData)
    }
}
