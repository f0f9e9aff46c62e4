//! Reading Rust sources as tokens for the workspace's own checks: comments and string
//! literals blanked out, `use` items parsed into full paths (`use a::{b, c::d}` gives `a::b`
//! and `a::c::d`), so a word in a comment, a string or a longer name never counts.

use std::path::{Path, PathBuf};

pub fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The source with comments, string and char literals replaced by spaces (line breaks
/// kept, so line numbers stay right).
pub fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    let blank = |out: &mut String, s: &[u8]| {
        for &c in s {
            out.push(if c == b'\n' { '\n' } else { ' ' });
        }
    };
    while i < b.len() {
        let rest = &b[i..];
        if rest.starts_with(b"//") {
            let end = rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len());
            blank(&mut out, &rest[..end]);
            i += end;
        } else if rest.starts_with(b"/*") {
            let end = src[i + 2..].find("*/").map_or(rest.len(), |e| e + 4);
            blank(&mut out, &rest[..end]);
            i += end;
        } else if rest.starts_with(b"r#\"") || rest.starts_with(b"r\"") {
            let hashes = rest[1..].iter().take_while(|&&c| c == b'#').count();
            let close = format!("\"{}", "#".repeat(hashes));
            let start = 2 + hashes;
            let end = src[i + start..]
                .find(&close)
                .map_or(rest.len(), |e| start + e + close.len());
            out.push('"');
            blank(&mut out, &rest[1..end - 1]);
            out.push('"');
            i += end;
        } else if rest[0] == b'"' {
            let mut j = 1;
            while j < rest.len() && rest[j] != b'"' {
                j += if rest[j] == b'\\' { 2 } else { 1 };
            }
            out.push('"');
            blank(&mut out, &rest[1..j.min(rest.len())]);
            out.push('"');
            i += (j + 1).min(rest.len());
        } else if rest[0] == b'\''
            && (rest.get(2) == Some(&b'\'') || (rest.get(1) == Some(&b'\\') && rest.len() > 3))
        {
            // A char literal ('x', '\n', '\''), not a lifetime.
            let end = if rest[1] == b'\\' {
                rest[2..]
                    .iter()
                    .position(|&c| c == b'\'')
                    .map_or(rest.len(), |e| e + 3)
            } else {
                3
            };
            blank(&mut out, &rest[..end]);
            i += end;
        } else {
            let ch = src[i..].chars().next().expect("not at the end");
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

/// Every full path a `use` item of `code` brings in.
pub fn use_paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let words: Vec<(usize, &str)> = code
        .match_indices(|c: char| !(c.is_alphanumeric() || c == '_'))
        .map(|(i, _)| i)
        .scan(0, |start, end| {
            let w = (*start, &code[*start..end]);
            *start = end + 1;
            Some(w)
        })
        .filter(|(_, w)| !w.is_empty())
        .collect();
    for (i, w) in words {
        if w != "use" {
            continue;
        }
        let tail = &code[i + 3..];
        let Some(end) = tail.find(';') else { continue };
        expand("", &tail[..end].replace(char::is_whitespace, ""), &mut out);
    }
    out
}

fn expand(prefix: &str, tree: &str, out: &mut Vec<String>) {
    let join = |p: &str, s: &str| {
        if p.is_empty() {
            s.to_owned()
        } else {
            format!("{p}::{s}")
        }
    };
    if let Some(open) = tree.find('{') {
        let head = tree[..open].trim_end_matches("::");
        let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
        let mut depth = 0;
        let mut part = String::new();
        for c in inner.chars() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand(&join(prefix, head), &part, out);
                    part.clear();
                    continue;
                }
                _ => {}
            }
            part.push(c);
        }
        if !part.is_empty() {
            expand(&join(prefix, head), &part, out);
        }
    } else if !tree.is_empty() {
        let name = tree
            .split(" as ")
            .next()
            .unwrap_or(tree)
            .split("as")
            .next()
            .unwrap_or(tree);
        out.push(join(prefix, name));
    }
}

/// True when `code` holds the token `name` followed by `!` (a macro call).
pub fn calls_macro(code: &str, name: &str) -> bool {
    code.match_indices(&format!("{name}!"))
        .any(|(i, _)| i == 0 || !code[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_'))
}

/// True when `code` holds the path `a::b` as tokens (whitespace allowed around `::`).
pub fn mentions_path(code: &str, path: &[&str]) -> bool {
    let squeezed: String = code.split_whitespace().collect::<Vec<_>>().join(" ");
    let squeezed = squeezed.replace(" ::", "::").replace(":: ", "::");
    let want = path.join("::");
    squeezed.match_indices(&want).any(|(i, _)| {
        let before_ok = i == 0
            || !squeezed[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':');
        let after = &squeezed[i + want.len()..];
        let after_ok = !after.starts_with(|c: char| c.is_alphanumeric() || c == '_');
        before_ok && after_ok
    })
}

/// Functions of `code` (tests left out) as (name, first line, lines).
pub fn functions(code: &str) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = code.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i].trim_start();
        if l.starts_with("#[cfg(test)]") {
            break; // test modules sit at the end of a file, by the house style
        }
        let words: Vec<&str> = l
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .filter(|w| !w.is_empty())
            .collect();
        if let Some(pos) = words.iter().position(|w| *w == "fn")
            && words[..pos].iter().all(|w| {
                [
                    "pub", "crate", "async", "const", "unsafe", "extern", "super", "self", "in",
                ]
                .contains(w)
            })
            && pos + 1 < words.len()
        {
            let name = words[pos + 1].to_owned();
            let (mut depth, mut started, mut j) = (0i32, false, i);
            'scan: while j < lines.len() {
                for c in lines[j].chars() {
                    match c {
                        '{' => {
                            depth += 1;
                            started = true;
                        }
                        '}' => depth -= 1,
                        ';' if !started && depth == 0 => break 'scan,
                        _ => {}
                    }
                    if started && depth == 0 {
                        break 'scan;
                    }
                }
                j += 1;
            }
            if started {
                out.push((name, i + 1, j - i + 1));
            }
        }
        i += 1;
    }
    out
}
