//! The rooms of each crate (the top-level modules under `src/`) depend on
//! each other in one direction only: no import cycles. A room's
//! dependencies are the `crate::<room>` paths its non-test code names.
//! ARCHITECTURE.md draws the resulting layers.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The workspace root (this test belongs to its root package).
fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Room name → the rooms it names.
type Graph = BTreeMap<String, BTreeSet<String>>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without its unit tests (by convention the last item,
/// behind `#[cfg(test)]`) and without comments.
fn code_of(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    text.lines()
        .map(|line| line.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every room named by `crate::room` or inside `use crate::{room::…, …}`.
fn named_rooms(code: &str) -> BTreeSet<String> {
    let mut rooms = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find(';').unwrap_or(group.len())];
            // Top-level entries of the group: split at commas outside braces.
            let mut depth = 0;
            let mut start = 0;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        rooms.insert(ident(group[start..i].trim()));
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        rooms.insert(ident(group[start..i].trim()));
                        start = i + 1;
                    }
                    _ => {}
                }
            }
        } else {
            rooms.insert(ident(rest));
        }
    }
    rooms.retain(|r| !r.is_empty());
    rooms
}

fn graph(crate_dir: &str) -> Graph {
    let src = workspace().join(crate_dir).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph = Graph::new();
    for file in files {
        let rel = file.strip_prefix(&src).expect("file under src");
        let first = rel.components().next().expect("a path component");
        let room = Path::new(first.as_os_str())
            .file_stem()
            .expect("a name")
            .to_string_lossy()
            .into_owned();
        // The crate roots declare the rooms; the fuzzing entry points and
        // the binary's main may reach into every room and nothing reaches
        // them.
        if matches!(room.as_str(), "lib" | "main" | "fuzzing" | "testkit") {
            continue;
        }
        let text = fs::read_to_string(&file).expect("readable source");
        let deps = graph.entry(room.clone()).or_default();
        deps.extend(
            named_rooms(&code_of(&text))
                .into_iter()
                .filter(|r| *r != room),
        );
    }
    graph
}

/// A cycle through `start`, if there is one, as the rooms along it.
fn cycle_from(graph: &Graph, start: &str) -> Option<Vec<String>> {
    let mut stack = vec![(start.to_owned(), vec![start.to_owned()])];
    let mut seen = BTreeSet::new();
    while let Some((room, path)) = stack.pop() {
        for next in graph.get(&room).into_iter().flatten() {
            if next == start {
                let mut cycle = path.clone();
                cycle.push(start.to_owned());
                return Some(cycle);
            }
            if seen.insert(next.clone()) {
                let mut longer = path.clone();
                longer.push(next.clone());
                stack.push((next.clone(), longer));
            }
        }
    }
    None
}

fn assert_acyclic(crate_dir: &str) {
    let graph = graph(crate_dir);
    assert!(graph.len() > 3, "{crate_dir}: rooms not found: {graph:?}");
    let cycles: Vec<String> = graph
        .keys()
        .filter_map(|room| cycle_from(&graph, room))
        .map(|cycle| cycle.join(" → "))
        .collect();
    assert!(
        cycles.is_empty(),
        "{crate_dir}: import cycles between rooms:\n  {}",
        cycles.join("\n  ")
    );
}

#[test]
fn origin_rooms_have_no_import_cycles() {
    assert_acyclic("origin");
}

#[test]
fn edge_rooms_have_no_import_cycles() {
    assert_acyclic("edge");
}

#[test]
fn shared_rooms_have_no_import_cycles() {
    assert_acyclic("shared");
}

#[test]
fn rooms_are_read_from_imports() {
    let code = code_of(
        "use crate::a::X;\nuse crate::{b::Y, c::{self, Z}, d};\n// crate::e::W\nfn f() { crate::g::h(); }\n#[cfg(test)]\nmod tests { use crate::t; }",
    );
    let rooms: Vec<_> = named_rooms(&code).into_iter().collect();
    assert_eq!(rooms, ["a", "b", "c", "d", "g"]);
}

/// The group of a top-level `use`: the standard library, other crates, or
/// this crate (`crate`, `super`, `self` and the file's own `mod`s).
fn import_group(statement: &str, local_modules: &BTreeSet<String>) -> u8 {
    let path = statement
        .trim_start_matches("use ")
        .trim_start_matches("::");
    let first: String = path
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    match first.as_str() {
        "std" | "core" | "alloc" => 0,
        "crate" | "super" | "self" => 2,
        name if local_modules.contains(name) => 2,
        _ => 1,
    }
}

/// Where a file's top-level imports break the layout: standard library,
/// then other crates, then this crate, each group behind a blank line.
/// (rustfmt sorts inside a group; grouping itself is unstable in rustfmt.)
fn import_layout_faults(text: &str) -> Vec<String> {
    let local_modules: BTreeSet<String> = text
        .lines()
        .filter_map(|line| {
            let line = line.trim_start();
            let line = line
                .strip_prefix("pub(crate) ")
                .or_else(|| line.strip_prefix("pub "))
                .unwrap_or(line);
            let name = line.strip_prefix("mod ")?;
            Some(name.trim_end_matches([';', '{', ' ']).to_owned())
        })
        .collect();
    let mut faults = Vec::new();
    let mut previous: Option<u8> = None;
    let mut blank_before = true;
    let mut lines = text.lines().enumerate();
    while let Some((number, line)) = lines.next() {
        if line.starts_with("use ") {
            let mut statement = line.to_owned();
            while !statement.trim_end().ends_with(';') {
                match lines.next() {
                    Some((_, more)) => statement.push_str(more),
                    None => break,
                }
            }
            let group = import_group(&statement, &local_modules);
            if let Some(previous) = previous {
                if group < previous {
                    faults.push(format!("line {}: group out of order", number + 1));
                } else if group != previous && !blank_before {
                    faults.push(format!("line {}: no blank line before", number + 1));
                }
            }
            previous = Some(group);
            blank_before = false;
        } else if line.trim().is_empty() {
            blank_before = true;
        } else if !(line.starts_with("#[") || line.starts_with("//") || line.contains(" use ")) {
            blank_before = false;
            if !line.starts_with(char::is_whitespace) {
                previous = None;
            }
        }
    }
    faults
}

#[test]
fn imports_are_grouped_std_external_crate() {
    let mut files = Vec::new();
    for krate in ["", "origin", "edge", "shared"] {
        for dir in ["src", "tests", "benches", "examples"] {
            let dir = workspace().join(krate).join(dir);
            if dir.is_dir() {
                rust_files(&dir, &mut files);
            }
        }
    }
    assert!(files.len() > 50, "sources not found");
    files.retain(|f| !f.starts_with(workspace().join("tests/python")));
    let faults: Vec<String> = files
        .iter()
        .flat_map(|file| {
            let text = fs::read_to_string(file).expect("readable source");
            import_layout_faults(&text)
                .into_iter()
                .map(move |fault| format!("{}: {fault}", file.display()))
        })
        .collect();
    assert!(
        faults.is_empty(),
        "imports out of layout:\n  {}",
        faults.join("\n  ")
    );
}

#[test]
fn import_layout_is_read_from_the_file() {
    let good =
        "mod support;\n\nuse std::fs;\n\nuse serde::Serialize;\n\nuse crate::a;\nuse support::b;\n";
    assert!(import_layout_faults(good).is_empty());
    let unseparated = "use std::fs;\nuse serde::Serialize;\n";
    assert_eq!(
        import_layout_faults(unseparated),
        ["line 2: no blank line before"]
    );
    let reversed = "use crate::a;\n\nuse std::fs;\n";
    assert_eq!(
        import_layout_faults(reversed),
        ["line 3: group out of order"]
    );
}

#[test]
fn unsafe_code_is_forbidden_in_every_product_crate() {
    for root in [
        "src/main.rs",
        "origin/src/lib.rs",
        "origin/src/main.rs",
        "edge/src/lib.rs",
        "edge/src/main.rs",
        "shared/src/lib.rs",
    ] {
        let text = fs::read_to_string(workspace().join(root)).expect("crate root");
        assert!(
            text.lines().any(|l| l == "#![forbid(unsafe_code)]"),
            "{root} does not forbid unsafe code"
        );
    }
    let mut files = Vec::new();
    for dir in ["src", "tests", "benches", "origin", "edge", "shared"] {
        rust_files(&workspace().join(dir), &mut files);
    }
    let allowing: Vec<String> = files
        .iter()
        .filter(|f| !f.starts_with(workspace().join("tests/architecture.rs")))
        .filter(|f| {
            fs::read_to_string(f).is_ok_and(|t| t.contains(&["allow(", "unsafe_code)"].concat()))
        })
        .map(|f| {
            f.strip_prefix(workspace())
                .unwrap_or(f)
                .display()
                .to_string()
        })
        .collect();
    assert_eq!(
        allowing,
        ["benches/pool.rs"],
        "only the counting allocator may use unsafe"
    );
}
