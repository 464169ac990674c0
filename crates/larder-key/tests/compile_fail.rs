//! What a user sees when a value cannot be a key. The `.stderr` files next to each case are
//! the exact compiler output on the project's toolchain (rustc 1.95); regenerate them with
//! `TRYBUILD=overwrite cargo test -p larder-key --test compile_fail` after a toolchain change
//! and read the new messages before committing them.

#[test]
fn keys_refuse_what_cannot_be_keyed() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
