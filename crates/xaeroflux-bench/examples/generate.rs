//! Generates a synthetic graph and prints its shape and how long it took.
//!
//! `cargo run --release -p xaeroflux-bench --example generate -- [events] [authors] [seed]`

use xaeroflux_bench::{generate, GenParams, Timer};
use xaeroflux_event::Kind;

fn main() {
    let mut args = std::env::args()
        .skip(1)
        .map(|a| a.parse::<u64>().expect("arguments are numbers"));
    let events = args.next().unwrap_or(100_000);
    let authors = u32::try_from(args.next().unwrap_or(1000)).expect("authors fit in u32");
    let seed = args.next().unwrap_or(1);

    let timer = Timer::start();
    let (mut count, mut bytes, mut in_topic) = (0u64, 0u64, 0u64);
    let mut kinds = [0u64; 6];
    let mut kind_bytes = [0u64; 6];
    for event in generate(&GenParams::new(events, authors, seed)) {
        let e = event.as_ref();
        let len = event.as_bytes().len() as u64;
        count += 1;
        bytes += len;
        in_topic += u64::from(!e.topic().is_zero());
        kinds[e.kind().get() as usize] += 1;
        kind_bytes[e.kind().get() as usize] += len;
    }
    let ms = timer.elapsed_ns() as f64 / 1e6;

    println!(
        "{count} events by {authors} authors, seed {seed}: {ms:.0} ms ({:.0} events/s)",
        count as f64 / ms * 1e3
    );
    println!(
        "average encoded size {:.1} bytes",
        bytes as f64 / count.max(1) as f64
    );
    println!(
        "in a topic: {:.2} %",
        100.0 * in_topic as f64 / count.max(1) as f64
    );
    for (k, (&n, &b)) in kinds.iter().zip(&kind_bytes).enumerate() {
        let name = Kind(k as u32).to_string();
        let share = 100.0 * n as f64 / count.max(1) as f64;
        println!(
            "{name:>12}: {n:>8} ({share:5.2} %), average {:.0} bytes",
            b as f64 / n.max(1) as f64
        );
    }
}
