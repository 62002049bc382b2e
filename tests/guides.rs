//! The guides cannot drift from the code or from the README:
//!
//! - a guide in `docs/` that says "The runnable example is `examples/NAME.rs`" shows code only
//!   from that example: every line of every ```rust block in it, trimmed, must be a line of
//!   the example's source (trimmed), so a renamed method or a changed signature in the
//!   example fails here until the guide follows;
//! - the README's `## Guides` section links every `docs/*.md` file, and every `docs/` link in
//!   that section names a file that exists (save the few listed in [`ARRIVING`]).
//!
//! Reads files only; no server is started.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

/// The sentence that names a guide's example.
const MARKER: &str = "The runnable example is `examples/";

/// Guides that must carry the marker (the per-API guides whose code is the example's).
const CHECKED: [&str; 4] = ["frame.md", "pool.md", "handles.md", "websocket.md"];

/// Guides the README may list before they exist in this branch: they arrive with another
/// branch (docs/vhosts.md comes with the virtual-hosts work).
const ARRIVING: [&str; 1] = ["docs/vhosts.md"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn guides() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    v.sort();
    v
}

/// The example a guide names with [`MARKER`], if it does.
fn example_of(guide: &str) -> Option<String> {
    let at = guide.find(MARKER)? + MARKER.len();
    let name = &guide[at..];
    let end = name.find('`')?;
    Some(format!("examples/{}", &name[..end]))
}

/// The ```rust blocks of a Markdown text, each as (line number of its fence, lines).
fn rust_blocks(text: &str) -> Vec<(usize, Vec<&str>)> {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, Vec<&str>)> = None;
    for (i, line) in text.lines().enumerate() {
        let fence = line.trim_start();
        match current.take() {
            None if fence.starts_with("```rust") => current = Some((i + 1, Vec::new())),
            None => {}
            Some(block) if fence.starts_with("```") => blocks.push(block),
            Some((at, mut lines)) => {
                lines.push(line);
                current = Some((at, lines));
            }
        }
    }
    assert!(current.is_none(), "an unclosed ```rust block");
    blocks
}

#[test]
fn guide_code_blocks_are_lines_of_their_example() {
    let mut checked = Vec::new();
    for path in guides() {
        let text = fs::read_to_string(&path).unwrap();
        let Some(example) = example_of(&text) else {
            continue;
        };
        let guide = path.file_name().unwrap().to_string_lossy().into_owned();
        let source = fs::read_to_string(root().join(&example))
            .unwrap_or_else(|e| panic!("docs/{guide} names {example}: {e}"));
        let lines: HashSet<&str> = source.lines().map(str::trim).collect();
        let blocks = rust_blocks(&text);
        assert!(
            !blocks.is_empty(),
            "docs/{guide} shows no code of {example}"
        );
        let mut missing = Vec::new();
        for (fence, block) in blocks {
            for (k, line) in block.iter().enumerate() {
                let line = line.trim();
                if !line.is_empty() && !lines.contains(line) {
                    missing.push(format!("  docs/{guide}:{}: {line}", fence + 1 + k));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "lines in docs/{guide}'s rust blocks that are not in {example}:\n{}",
            missing.join("\n")
        );
        checked.push(guide);
    }
    for guide in CHECKED {
        assert!(
            checked.iter().any(|c| c == guide),
            "docs/{guide} must name its example with {MARKER:?}NAME.rs`"
        );
    }
}

/// The `docs/...md` link targets in the README's `## Guides` section.
fn readme_guide_links() -> Vec<String> {
    let readme = fs::read_to_string(root().join("README.md")).unwrap();
    let start = readme
        .find("\n## Guides\n")
        .expect("README.md has a \"## Guides\" section");
    let section = &readme[start + 1..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |e| e + 3)];
    section
        .split("](")
        .skip(1)
        .filter_map(|rest| rest.split(')').next())
        .filter(|target| target.starts_with("docs/") && target.ends_with(".md"))
        .map(str::to_string)
        .collect()
}

#[test]
fn readme_guides_section_links_every_guide() {
    let links = readme_guide_links();
    let missing: Vec<String> = guides()
        .iter()
        .map(|p| format!("docs/{}", p.file_name().unwrap().to_string_lossy()))
        .filter(|g| !links.contains(g))
        .collect();
    assert!(
        missing.is_empty(),
        "README.md's ## Guides section does not link: {}",
        missing.join(", ")
    );
    let dangling: Vec<&String> = links
        .iter()
        .filter(|l| !root().join(l).is_file() && !ARRIVING.contains(&l.as_str()))
        .collect();
    assert!(
        dangling.is_empty(),
        "README.md's ## Guides section links missing files: {dangling:?}"
    );
    let mut seen = HashSet::new();
    let twice: Vec<&String> = links.iter().filter(|l| !seen.insert(*l)).collect();
    assert!(twice.is_empty(), "linked twice: {twice:?}");
    assert!(Path::new(&root().join("docs")).is_dir());
}
