//! How the crate being compiled names a larder crate, read from its `Cargo.toml`.
//!
//! The generated code must name `larder_key` / `larder_cache` the way the user's crate sees
//! them: a direct dependency (possibly renamed), or the `larder` facade. This reads the
//! manifest with a small scanner for the part of TOML that matters here (tables, dotted and
//! quoted keys, strings, inline tables, multi-line arrays and strings skipped correctly)
//! instead of a TOML library: `proc-macro-crate` brought `toml_edit`, `toml_parser`,
//! `toml_datetime`, `winnow` and `indexmap` into every build of the key and cache crates
//! (6 of the ≈ 45 crates a keys + local-cache build compiles).
//!
//! Rules (the same as `proc-macro-crate`'s): the package itself is found as
//! [`Found::Itself`] for its library and binaries and by its own name for its integration
//! tests and benches (`CARGO_TARGET_TMPDIR` is set only for those); a dependency in
//! `[dependencies]`, `[dev-dependencies]` or a `[target.*.…]` form of them is found by its
//! key, matched on `package = "…"` when renamed; `workspace = true` entries look the package
//! up in the workspace root's `[workspace.dependencies]`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where a crate is, as the compiled crate sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Found {
    /// The crate being compiled is that package's library (or binary).
    Itself,
    /// An extern crate name (`-` already replaced by `_`).
    Name(String),
}

/// Looks `package` up in the manifest of the crate being compiled (`CARGO_MANIFEST_DIR`).
/// `None` when it is neither the package itself nor one of its dependencies, or the manifest
/// cannot be read.
pub(crate) fn crate_name(package: &str) -> Option<Found> {
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR")?);
    let text = std::fs::read_to_string(dir.join("Cargo.toml")).ok()?;
    let manifest = Manifest::parse(&text);
    let integration_test = std::env::var_os("CARGO_TARGET_TMPDIR").is_some();
    manifest.find(package, integration_test, || workspace_dependencies(&dir))
}

/// `[workspace.dependencies]` key → package of the nearest enclosing workspace root.
fn workspace_dependencies(dir: &Path) -> BTreeMap<String, String> {
    for d in dir.ancestors() {
        let Ok(text) = std::fs::read_to_string(d.join("Cargo.toml")) else { continue };
        let m = Manifest::parse(&text);
        if m.is_workspace_root {
            return m.workspace_deps;
        }
    }
    BTreeMap::new()
}

/// The facts the macros need from one `Cargo.toml`.
#[derive(Debug, Default)]
pub(crate) struct Manifest {
    package_name: Option<String>,
    /// Dependency key → (`package = …` if given, `workspace = true`), in file order.
    deps: Vec<(String, Option<String>, bool)>,
    workspace_deps: BTreeMap<String, String>,
    is_workspace_root: bool,
}

impl Manifest {
    pub(crate) fn parse(text: &str) -> Manifest {
        let mut m = Manifest::default();
        let mut table: Vec<String> = Vec::new();
        for stmt in statements(text) {
            let stmt = stmt.trim();
            if let Some(rest) = stmt.strip_prefix("[[") {
                // An array of tables ([[bin]], [[test]]): never a dependency table.
                table = vec![format!("[[{}", rest)];
                continue;
            }
            if let Some(inner) = stmt.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
                table = split_key(inner);
                if table.first().map(String::as_str) == Some("workspace") {
                    m.is_workspace_root = true;
                }
                m.entry(&table, None);
                continue;
            }
            let Some(eq) = find_top_level(stmt, b'=') else { continue };
            let mut path = table.clone();
            path.extend(split_key(&stmt[..eq]));
            m.entry(&path, Some(stmt[eq + 1..].trim()));
        }
        m
    }

    /// Records one `path = value` (or a table header, `value` = `None`).
    fn entry(&mut self, path: &[String], value: Option<&str>) {
        let p: Vec<&str> = path.iter().map(String::as_str).collect();
        match p.as_slice() {
            ["package", "name"] => {
                if let Some(s) = value.and_then(string_value) {
                    self.package_name = Some(s);
                }
            }
            ["workspace", ..] => {
                if let ["workspace", "dependencies", name, rest @ ..] = p.as_slice() {
                    let (package, _) = dep_attrs(rest, value);
                    let slot =
                        self.workspace_deps.entry((*name).to_owned()).or_insert_with(|| (*name).to_owned());
                    if let Some(package) = package {
                        *slot = package;
                    }
                }
            }
            _ => {
                let after_table = match p.as_slice() {
                    ["dependencies" | "dev-dependencies", rest @ ..] => rest,
                    ["target", _, "dependencies" | "dev-dependencies", rest @ ..] => rest,
                    _ => return,
                };
                let Some((name, rest)) = after_table.split_first() else { return };
                let (package, workspace) = dep_attrs(rest, value);
                match self.deps.iter_mut().find(|d| d.0 == *name) {
                    Some(d) => {
                        d.1 = d.1.take().or(package);
                        d.2 |= workspace;
                    }
                    None => self.deps.push(((*name).to_owned(), package, workspace)),
                }
            }
        }
    }

    /// Where `package` is, seen from this manifest's crate.
    pub(crate) fn find(
        &self,
        package: &str,
        integration_test: bool,
        workspace_deps: impl FnOnce() -> BTreeMap<String, String>,
    ) -> Option<Found> {
        if self.package_name.as_deref() == Some(package) {
            return Some(if integration_test {
                Found::Name(package.replace('-', "_"))
            } else {
                Found::Itself
            });
        }
        let mut ws: Option<BTreeMap<String, String>> = None;
        let mut ws_deps = Some(workspace_deps);
        for (key, renamed, workspace) in &self.deps {
            let pkg = match (renamed, workspace) {
                (Some(p), _) => p.clone(),
                (None, true) => {
                    let map = ws.get_or_insert_with(|| ws_deps.take().map(|f| f()).unwrap_or_default());
                    map.get(key).cloned().unwrap_or_else(|| key.clone())
                }
                (None, false) => key.clone(),
            };
            if pkg == package {
                return Some(Found::Name(key.replace('-', "_")));
            }
        }
        None
    }
}

/// `package` and `workspace` of a dependency, from the path below its key and the value.
fn dep_attrs(rest: &[&str], value: Option<&str>) -> (Option<String>, bool) {
    match (rest, value) {
        ([], Some(v)) if v.starts_with('{') => {
            let inner = v.trim_start_matches('{').trim_end_matches('}');
            let (mut package, mut workspace) = (None, false);
            for part in split_top_level(inner, b',') {
                let Some(eq) = find_top_level(part, b'=') else { continue };
                let key = split_key(&part[..eq]);
                let val = part[eq + 1..].trim();
                match key.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
                    ["package"] => package = string_value(val),
                    ["workspace"] => workspace = val == "true",
                    _ => {}
                }
            }
            (package, workspace)
        }
        (["package"], Some(v)) => (string_value(v), false),
        (["workspace"], Some(v)) => (None, v == "true"),
        _ => (None, false),
    }
}

/// The content of a one-line TOML string (basic or literal); escapes are not expected in
/// package names, and a value with one is not a name this matches anyway.
fn string_value(v: &str) -> Option<String> {
    let v = v.trim();
    for q in ['"', '\''] {
        if let Some(s) = v.strip_prefix(q).and_then(|s| s.strip_suffix(q)) {
            if !s.contains(q) {
                return Some(s.to_owned());
            }
        }
    }
    None
}

/// `a.b."c.d".'e'` → `["a", "b", "c.d", "e"]`.
fn split_key(key: &str) -> Vec<String> {
    split_top_level(key, b'.')
        .into_iter()
        .map(|seg| {
            let seg = seg.trim();
            string_value(seg).unwrap_or_else(|| seg.to_owned())
        })
        .collect()
}

/// Splits at `sep` outside strings, brackets and braces.
fn split_top_level(s: &str, sep: u8) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut scan = Scanner::default();
    for (i, &b) in s.as_bytes().iter().enumerate() {
        if scan.at_top(b) && b == sep {
            out.push(&s[start..i]);
            start = i + 1;
        }
    }
    out.push(&s[start..]);
    out
}

/// The first `c` outside strings, brackets and braces.
fn find_top_level(s: &str, c: u8) -> Option<usize> {
    let mut scan = Scanner::default();
    s.as_bytes().iter().position(|&b| scan.at_top(b) && b == c)
}

/// Tracks strings (basic with escapes, literal, both multi-line forms) and nesting.
#[derive(Default)]
struct Scanner {
    /// The quote byte and whether it is a triple quote, while inside a string.
    string: Option<(u8, bool)>,
    escaped: bool,
    depth: usize,
    /// Quote bytes seen in a row (to recognise `"""` / `'''`).
    run: (u8, usize),
}

impl Scanner {
    /// Feeds one byte; true when it lies outside any string and at nesting depth 0 (the byte
    /// itself may open or close a bracket: `[` is reported at depth 0, `]` too).
    fn at_top(&mut self, b: u8) -> bool {
        let top_before = self.string.is_none() && self.depth == 0;
        if b == b'"' || b == b'\'' {
            self.run = if self.run.0 == b { (b, self.run.1 + 1) } else { (b, 1) };
        } else {
            self.run = (0, 0);
        }
        match self.string {
            Some((q, triple)) => {
                if self.escaped {
                    self.escaped = false;
                    self.run = (0, 0);
                } else if b == b'\\' && q == b'"' {
                    self.escaped = true;
                } else if b == q && triple && self.run.1 >= 3 {
                    self.string = None;
                    self.run = (0, 0);
                } else if b == q && !triple {
                    // The run is kept: an empty string followed by a third quote is the
                    // opening of a triple-quoted string.
                    self.string = None;
                }
                false
            }
            None => {
                match b {
                    b'"' | b'\'' => {
                        if self.run.1 == 3 {
                            // The first quote opened an empty-so-far string, the second closed
                            // it: a third makes it a triple-quoted string instead.
                            self.string = Some((b, true));
                            self.run = (0, 0);
                        } else if self.run.1 == 1 {
                            self.string = Some((b, false));
                        }
                    }
                    b'[' | b'{' => self.depth += 1,
                    b']' | b'}' => self.depth = self.depth.saturating_sub(1),
                    _ => {}
                }
                top_before
            }
        }
    }
}

/// Logical statements: lines joined while inside a string or a bracket, comments removed.
fn statements(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut scan = Scanner::default();
    let mut comment = false;
    for ch in text.chars() {
        if comment {
            if ch == '\n' {
                comment = false;
            } else {
                continue;
            }
        }
        let in_string = scan.string.is_some();
        if ch.is_ascii() {
            let b = ch as u8;
            if !in_string && b == b'#' {
                comment = true;
                continue;
            }
            scan.at_top(b);
        }
        if ch == '\n' && scan.string.is_none() && scan.depth == 0 {
            out.push(std::mem::take(&mut cur));
            continue;
        }
        cur.push(ch);
    }
    out.push(cur);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(toml: &str, pkg: &str) -> Option<Found> {
        Manifest::parse(toml).find(pkg, false, BTreeMap::new)
    }

    #[test]
    fn direct_renamed_dotted_and_table_forms() {
        let toml = r#"
[package]
name = "app"   # a comment with "quotes" and [brackets]
description = """
multi-line [dependencies]
larder-key = "1"
"""

[dependencies]
serde = { version = "1", features = [
    "derive", # = comment in an array
], package = "serde" }
keys = { package = "larder-key", version = "0.1" }
"larder-cache".workspace = true

[target.'cfg(unix)'.dev-dependencies.facade]
package = 'larder'
version = "0.1"

[[bin]]
name = "larder-key"
"#;
        assert_eq!(find(toml, "larder-key"), Some(Found::Name("keys".into())));
        assert_eq!(find(toml, "larder-cache"), Some(Found::Name("larder_cache".into())));
        assert_eq!(find(toml, "larder"), Some(Found::Name("facade".into())));
        assert_eq!(find(toml, "serde"), Some(Found::Name("serde".into())));
        assert_eq!(find(toml, "app"), Some(Found::Itself));
        assert_eq!(Manifest::parse(toml).find("app", true, BTreeMap::new), Some(Found::Name("app".into())));
        assert_eq!(find(toml, "tokio"), None);
    }

    #[test]
    fn strings_that_look_like_tables() {
        let toml = "[package]\nname = \"\"\nreadme = ''\ndescription = \"\"\"a \\\"\"\" \"\" [dependencies]\nlarder = \"1\"\n\"\"\"\nx = '''\n[dependencies]\nlarder-key = \"1\"'''\n[dependencies]\nk = { version = \"1\", package = \"larder\" } # larder-key = \"1\"\n";
        assert_eq!(find(toml, "larder"), Some(Found::Name("k".into())));
        assert_eq!(find(toml, "larder-key"), None);
    }

    #[test]
    fn only_dependency_tables_count() {
        let toml = "[package]\nname = \"x\"\n[features]\nlarder-key = []\n[build-dependencies]\nlarder = \"1\"\n[dev-dependencies]\nlarder = { path = \"../larder\" }\n";
        assert_eq!(find(toml, "larder-key"), None);
        assert_eq!(find(toml, "larder"), Some(Found::Name("larder".into())));
    }

    #[test]
    fn workspace_inherited_rename() {
        let m = Manifest::parse("[package]\nname = \"x\"\n[dependencies]\nk = { workspace = true }\n");
        let ws = Manifest::parse("[workspace]\nmembers = []\n[workspace.dependencies]\nk = { package = \"larder-key\", path = \"k\" }\n");
        assert!(ws.is_workspace_root);
        let wsd = ws.workspace_deps.clone();
        assert_eq!(m.find("larder-key", false, || wsd), Some(Found::Name("k".into())));
        assert_eq!(m.find("larder-key", false, BTreeMap::new), None);
    }

    #[test]
    fn this_workspace_manifests() {
        // The real manifests of the key and facade crates.
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let read =
            |c: &str| Manifest::parse(&std::fs::read_to_string(dir.join(c).join("Cargo.toml")).unwrap());
        assert_eq!(read("larder-key").find("larder-key", false, BTreeMap::new), Some(Found::Itself));
        assert_eq!(
            read("larder").find("larder-key", false, BTreeMap::new),
            Some(Found::Name("larder_key".into()))
        );
        assert_eq!(
            read("larder-cli").find("larder", false, BTreeMap::new),
            Some(Found::Name("larder".into()))
        );
    }
}
