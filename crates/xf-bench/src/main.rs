//! `xf-bench`: Xaeroflux measured next to its baselines, each in the same process on the same
//! events. Not part of the shipped `xf`: the baselines (SQLite, plain heed, negentropy) and the
//! counting allocator live here.
#![forbid(unsafe_code)]

mod bench;
mod bench_convo;
mod bench_encrypted;
mod bench_lossy;
mod bench_mobile;
mod bench_net;
mod bench_sync;
mod bench_tor;

/// Counts allocations in the sections the benchmarks measure.
#[global_allocator]
static ALLOC: xaeroflux_bench::CountingAlloc = xaeroflux_bench::CountingAlloc;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

/// Benchmarks of Xaeroflux, each next to a baseline run in the same process.
#[derive(Debug, Parser)]
#[command(name = "xf-bench", version, about)]
pub struct Args {
    /// Machine-readable JSON output.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(flatten)]
    pub bench: bench::BenchArgs,
}

fn main() -> ExitCode {
    // clap exits with 2 on usage errors by itself.
    let args = Args::parse();
    match bench::run(&args, &args.bench) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", xaeroflux::error_line(e.as_ref()));
            ExitCode::from(1)
        }
    }
}

/// Logs to stderr, at the level `XF_LOG` names (error, warn, info, debug, trace; default info).
pub fn init_logging() {
    let level = std::env::var("XF_LOG")
        .ok()
        .and_then(|l| l.parse::<tracing::Level>().ok())
        .unwrap_or(tracing::Level::INFO);
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

/// Lowercase hex of a byte string (fingerprints).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
