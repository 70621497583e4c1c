//! The counting allocator counts allocations made while it is installed.

use xaeroflux_bench::{allocated_bytes, allocations, counting, CountingAlloc};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

#[test]
fn counts_a_measured_section() {
    assert!(counting());
    let (count, bytes) = (allocations(), allocated_bytes());
    let boxes: Vec<Box<[u8; 64]>> = (0..100).map(|_| Box::new([0u8; 64])).collect();
    std::hint::black_box(&boxes);
    assert!(allocations() - count >= 101, "100 boxes and a vector");
    assert!(allocated_bytes() - bytes >= 100 * 64);

    let before = allocations();
    let sum: u64 = boxes.iter().map(|b| u64::from(b[0])).sum();
    std::hint::black_box(sum);
    // Other test-harness threads may allocate meanwhile; this thread itself made none.
    assert!(allocations() - before < 10);
}
