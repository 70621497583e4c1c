//! `xf-netsim`: relays traffic to another address, dropping and delaying packets on purpose,
//! from one printed seed: the lossy link network tests put between nodes.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use xaeroflux_bench::netsim::{self, NetsimArgs};

/// A seeded loss-and-delay relay for UDP and TCP (a network simulator for tests).
#[derive(Debug, Parser)]
#[command(name = "xf-netsim", version, about)]
struct Args {
    #[command(flatten)]
    relay: NetsimArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match netsim::run(&args.relay) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", xaeroflux::error_line(e.as_ref()));
            ExitCode::from(1)
        }
    }
}
