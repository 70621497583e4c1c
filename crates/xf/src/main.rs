//! `xf`: the Xaeroflux command-line tool.
#![forbid(unsafe_code)]

mod cli;
mod demo;
mod net;
mod output;
mod port;
mod read;
mod social;
mod sync;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // clap exits with 2 on usage errors by itself.
    let args = cli::Args::parse();
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::from(1)
        }
    }
}

/// The error and its causes on one line, each said once: a cause whose text its wrapper
/// already quotes is left out, and so is an empty one.
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        let text = text.trim();
        if text.is_empty() || line.contains(text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(text);
    }
    // Reasons from the operating system or a library may span lines.
    line.replace('\n', " ")
}
