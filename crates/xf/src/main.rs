//! `xf`: the Xaeroflux command-line tool.
#![forbid(unsafe_code)]

mod bench;
mod bench_lossy;
mod bench_net;
mod bench_sync;
mod cli;
mod demo;
mod net;
mod netsim;
mod output;
mod port;
mod read;
mod social;
mod sync;

#[global_allocator]
static ALLOC: xaeroflux_bench::CountingAlloc = xaeroflux_bench::CountingAlloc;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // clap exits with 2 on usage errors by itself.
    let args = cli::Args::parse();
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
