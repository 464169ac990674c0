//! `larder mask phone|email|name`.

use crate::common;

use common::{stderr_text, stdout_text, Sandbox};

#[test]
fn masks_phone_numbers_names_and_emails() {
    let sb = Sandbox::new();
    let out = sb.larder().args(["mask", "phone", "010-1234-5678", "01012345678"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr_text(&out));
    let lines: Vec<String> = stdout_text(&out).lines().map(str::to_string).collect();
    assert_eq!(lines[0], "010-****-5678");
    assert_eq!(lines.len(), 2);
    assert!(!lines[1].contains("1234"), "{}", lines[1]);

    let out = sb.larder().args(["mask", "name", "홍길동", "남궁민수"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr_text(&out));
    assert_eq!(stdout_text(&out), "홍*동\n남**수\n");

    let out = sb.larder().args(["mask", "email", "hong.gildong@example.com"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr_text(&out));
    let masked = stdout_text(&out);
    assert!(masked.trim_end().ends_with("@example.com") && masked.contains('*'), "{masked}");
    assert!(!masked.contains("gildong"), "{masked}");
}

#[test]
fn unrecognised_values_are_reported_not_printed() {
    let sb = Sandbox::new();
    let out = sb.larder().args(["mask", "phone", "010-1234-5678", "not a phone"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout_text(&out), "010-****-5678\n");
    assert!(stderr_text(&out).contains("not a phone"), "{}", stderr_text(&out));
    let out = sb.larder().args(["mask", "email", "no-at-sign"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
}

#[test]
fn usage() {
    let sb = Sandbox::new();
    sb.larder().args(["mask", "ssn", "123"]).assert().code(2);
    sb.larder().args(["mask", "phone"]).assert().code(2);
}
