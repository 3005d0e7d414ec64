//! Tidy checks over the whole tree, run by `cargo test -p xtask`: every Rust file starts with module
//! docs (`//!`), no test is silently skipped (the `ignore` attribute) or passes by panicking (the
//! `should_panic` attribute), and no source line ends in whitespace.

#[cfg(test)]
mod tests {
    use std::process::Command;

    use crate::paths;

    fn tracked(patterns: &[&str]) -> Vec<String> {
        let out = Command::new("git")
            .current_dir(paths::workspace())
            .args(["ls-files", "--"])
            .args(patterns)
            .output()
            .expect("git ls-files");
        assert!(out.status.success(), "git ls-files failed");
        String::from_utf8(out.stdout).unwrap().lines().map(str::to_owned).collect()
    }

    fn read(path: &str) -> String {
        std::fs::read_to_string(paths::workspace().join(path)).unwrap_or_default()
    }

    #[test]
    fn rust_files_have_module_docs_and_no_skipped_tests() {
        let mut problems = Vec::new();
        let files = tracked(&["*.rs"]);
        assert!(files.len() > 50, "found only {} Rust files", files.len());
        for f in files {
            let text = read(&f);
            if !text.lines().find(|l| !l.trim().is_empty()).is_some_and(|l| l.starts_with("//!")) {
                problems.push(format!("{f}: does not start with module docs (//!)"));
            }
            // the attribute names are split so this file does not match itself
            for attr in [concat!("#[", "ignore"), concat!("#[", "should_panic")] {
                if text.contains(attr) {
                    problems.push(format!("{f}: uses {attr}]"));
                }
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn no_trailing_whitespace_in_sources() {
        let mut problems = Vec::new();
        for f in tracked(&["*.rs", "*.c", "*.h", "*.toml", "*.md", "*.kp", "Kbuild", "Makefile"]) {
            for (i, line) in read(&f).lines().enumerate() {
                if line.ends_with(' ') || line.ends_with('\t') {
                    problems.push(format!("{f}:{}: trailing whitespace", i + 1));
                }
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }
}
