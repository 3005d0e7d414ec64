//! "Did you mean" suggestions for names that are not in the kernel.

/// Up to three names closest to `name` (edit distance), best first.
pub(crate) fn closest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Vec<String> {
    let limit = (name.len() / 3).max(2);
    let mut scored: Vec<(usize, &str)> = candidates
        .filter(|c| c.len().abs_diff(name.len()) <= limit)
        .map(|c| (strsim::levenshtein(name, c), c))
        .filter(|(d, _)| *d <= limit)
        .collect();
    scored.sort();
    scored.into_iter().take(3).map(|(_, c)| c.to_owned()).collect()
}

pub(crate) fn did_you_mean(names: Vec<String>) -> String {
    match names.as_slice() {
        [] => String::new(),
        _ => format!(
            ": did you mean {}?",
            names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
        ),
    }
}
