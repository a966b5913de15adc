//! Runs the host program of `examples/embed/` (in its own test binary: it starts, finalizes
//! and restarts the interpreter itself).

#[path = "../examples/embed/main.rs"]
mod host;

#[test]
fn the_embedding_example_computes_zero_copy_and_survives_reinitialisation() {
    let (first, second, tally_first, tally_second) = host::run().expect("the host program runs");
    assert_eq!((tally_first, tally_second), (10, 10));
    let expected: f64 = (0..1000).map(|i| f64::from(i) * 0.5).sum();
    assert_eq!(first.total, 2.0 * expected);
    assert_eq!(first.mean, expected / 1000.0);
    assert!(first.zero_copy, "numpy must read the Rust memory in place");
    assert_eq!(first.items_after, 1000);
    assert_eq!(second, expected);
}
