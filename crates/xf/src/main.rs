//! `xf`: the Xaeroflux command-line tool.
#![forbid(unsafe_code)]

mod cli;
mod convo;
mod demo;
mod net;
mod output;
mod port;
mod read;
mod secret;
mod social;
mod sync;
mod tor;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // clap exits with 2 on usage errors by itself.
    let args = cli::Args::parse();
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", xaeroflux::error_line(e.as_ref()));
            ExitCode::from(1)
        }
    }
}
