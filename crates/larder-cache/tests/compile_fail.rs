//! `#[memoize]` refuses arguments that are not `StableKey`, and bad options, at compile time
//! with clear messages.
//!
//! Its own binary: trybuild compiles each case as a crate of its own and compares the output.

#[test]
fn compile_fail() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
