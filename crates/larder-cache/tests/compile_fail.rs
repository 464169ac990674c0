//! `#[memoize]` refuses arguments that are not `StableKey`, and bad options, at compile time
//! with clear messages.

#[test]
fn compile_fail() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
