pub fn phone(s: &str) -> Option<String> {
    let _ = s;
    None
}
