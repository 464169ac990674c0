//! Every subcommand has `--help` with an example, and usage mistakes exit with code 2.

use crate::common;

use common::{stdout_text, Sandbox};

#[test]
fn every_subcommand_has_help_with_an_example() {
    let sb = Sandbox::new();
    for sub in [&["demo"][..], &["keys"], &["encrypt"], &["decrypt"], &["inspect"], &["mask"], &["key"]] {
        let out = sb.larder().args(sub).arg("--help").output().unwrap();
        assert!(out.status.success(), "{sub:?} --help");
        let text = stdout_text(&out);
        assert!(text.contains("Example"), "{sub:?} --help has no example:\n{text}");
        assert!(text.contains("larder "), "{sub:?} --help example does not show a command:\n{text}");
    }
    let top = stdout_text(&sb.larder().arg("--help").output().unwrap());
    assert!(top.contains("larder demo") && top.contains("Exit codes"), "{top}");
    assert!(!top.contains("__worker"), "the internal worker mode is hidden");
}

#[test]
fn unknown_commands_and_flags_exit_2() {
    let sb = Sandbox::new();
    sb.larder().arg("frobnicate").assert().code(2);
    sb.larder().args(["encrypt", "--frobnicate"]).assert().code(2);
    sb.larder().args(["key", "--namespace", "Bad Namespace", "--json", "1"]).assert().code(2);
}
