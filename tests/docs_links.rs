//! No dead relative links in the docs: every relative link of `README.md` and `docs/*.md`
//! points at a file or folder of the repository, and a `#anchor` into a Markdown page names
//! one of its headings (GitHub's anchor rules). Links to other sites are not fetched.
//!
//! Markdown is parsed with `pulldown-cmark` (links in code blocks and inline code are not
//! links); only GitHub's heading-to-anchor rule is written here, since no crate does it.

use pulldown_cmark::{Event, Parser, Tag, TagEnd};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The pages checked: README.md and every Markdown file directly in docs/.
fn pages() -> Vec<PathBuf> {
    let mut pages = vec![repo().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .expect("docs/")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    pages.extend(docs);
    pages
}

/// GitHub's anchor of a heading: lower case, punctuation other than `-` and `_` removed,
/// spaces turned into `-`; a repeated heading gets `-1`, `-2`, ...
fn anchors(markdown: &str) -> HashSet<String> {
    let mut out = HashSet::new();
    let mut text: Option<String> = None;
    for ev in Parser::new(markdown) {
        match ev {
            Event::Start(Tag::Heading { .. }) => text = Some(String::new()),
            Event::Text(t) | Event::Code(t) if text.is_some() => text.as_mut().unwrap().push_str(&t),
            Event::End(TagEnd::Heading(_)) => {
                let t = text.take().unwrap_or_default();
                let slug: String = t
                    .to_lowercase()
                    .chars()
                    .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
                    .map(|c| if c == ' ' { '-' } else { c })
                    .collect();
                let mut candidate = slug.clone();
                let mut n = 0;
                while out.contains(&candidate) {
                    n += 1;
                    candidate = format!("{slug}-{n}");
                }
                out.insert(candidate);
            }
            _ => {}
        }
    }
    out
}

/// (link target, line) of every link and image of `markdown`.
fn links(markdown: &str) -> Vec<(String, usize)> {
    let line_of = |offset: usize| markdown[..offset].matches('\n').count() + 1;
    Parser::new(markdown)
        .into_offset_iter()
        .filter_map(|(ev, range)| match ev {
            Event::Start(Tag::Link { dest_url, .. }) | Event::Start(Tag::Image { dest_url, .. }) => {
                Some((dest_url.to_string(), line_of(range.start)))
            }
            _ => None,
        })
        .collect()
}

/// What is wrong with `target` as a link of `page`, if anything.
fn problem(page: &Path, target: &str) -> Option<String> {
    if target.contains("://") || target.starts_with("mailto:") {
        return None;
    }
    let (path, anchor) = match target.split_once('#') {
        Some((p, a)) => (p, Some(a)),
        None => (target, None),
    };
    let file = if path.is_empty() { page.to_path_buf() } else { page.parent().unwrap().join(path) };
    if !file.exists() {
        return Some(format!("{} does not exist", file.display()));
    }
    let file = file.canonicalize().unwrap();
    if !file.starts_with(repo().canonicalize().unwrap()) {
        return Some("points outside the repository".into());
    }
    match anchor {
        Some(a) if file.extension().is_some_and(|x| x == "md") => {
            let known = anchors(&std::fs::read_to_string(&file).unwrap());
            (!known.contains(a)).then(|| format!("{} has no heading with anchor #{a}", file.display()))
        }
        _ => None,
    }
}

#[test]
fn relative_links_of_the_docs_resolve() {
    let mut dead = Vec::new();
    let mut checked = 0;
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        for (target, line) in links(&text) {
            checked += 1;
            if let Some(p) = problem(&page, &target) {
                dead.push(format!("{}:{line}: ({target}): {p}", page.strip_prefix(repo()).unwrap().display()));
            }
        }
    }
    println!("{checked} links checked");
    assert!(dead.is_empty(), "dead links:\n{}", dead.join("\n"));
}

#[test]
fn anchors_follow_github() {
    let a = anchors("# Deploy next to your VMS\n## `frame_number` & co.\n## Deploy next to your VMS\n");
    assert!(a.contains("deploy-next-to-your-vms"), "{a:?}");
    assert!(a.contains("frame_number--co"), "{a:?}");
    assert!(a.contains("deploy-next-to-your-vms-1"), "{a:?}");
}

#[test]
fn a_dead_link_is_found() {
    let page = repo().join("README.md");
    assert!(problem(&page, "docs/no-such-page.md").is_some());
    assert!(problem(&page, "README.md#no-such-heading").is_some());
    assert!(problem(&page, "https://example.com/x").is_none());
    assert!(problem(&page, "../../etc/passwd").is_some());
}
