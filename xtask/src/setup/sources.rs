//! The host's Debian release and the mirrors it is configured with, read from `/etc` (a mirror host
//! name is never hard-coded: build machines point at local mirrors or proxies).

use std::path::Path;

use anyhow::{Context, Result, bail};

/// Keyring used when a source names none (or carries its key inline).
const DEFAULT_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// A Debian archive: where it is and which key signs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    /// Base URI, e.g. `http://deb.debian.org/debian`.
    pub uri: String,
    /// Keyring file for `signed-by`, if one is known.
    pub keyring: Option<String>,
}

/// The host's release: its codename and the mirrors serving its suites.
#[derive(Debug, Clone)]
pub struct Release {
    /// e.g. `bookworm`.
    pub codename: String,
    /// Serves `<codename>`, `<codename>-updates` and `<codename>-backports`.
    pub main: Mirror,
    /// Serves `<codename>-security`, when the host has it configured.
    pub security: Option<Mirror>,
}

impl Release {
    /// Read `/etc/os-release` and the host's apt sources.
    pub fn detect() -> Result<Release> {
        let os = std::fs::read_to_string("/etc/os-release").context("cannot read /etc/os-release")?;
        let (id, codename) = parse_os_release(&os);
        if id.as_deref() != Some("debian") {
            bail!(
                "setup supports Debian hosts (measured on Debian 12 bookworm); this is `{}`: \
                 use docker/Dockerfile",
                id.unwrap_or_default()
            );
        }
        let codename = codename.context("/etc/os-release has no VERSION_CODENAME")?;
        let mut entries = Vec::new();
        for (path, deb822) in
            [("/etc/apt/sources.list.d/debian.sources", true), ("/etc/apt/sources.list", false)]
        {
            if Path::new(path).exists() {
                let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?;
                entries.extend(if deb822 { parse_deb822(&text) } else { parse_one_line(&text) });
            }
        }
        let main = mirror_for(&entries, &codename).with_context(|| {
            format!(
                "no apt source for suite `{codename}` in /etc/apt/sources.list.d/debian.sources \
                 or /etc/apt/sources.list"
            )
        })?;
        let security = mirror_for(&entries, &format!("{codename}-security"));
        Ok(Release { codename, main, security })
    }
}

/// One `deb` source: its URIs, suites and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Archive base URIs.
    pub uris: Vec<String>,
    /// Suites (`bookworm`, `bookworm-updates`, ...).
    pub suites: Vec<String>,
    /// `Signed-By` when it names a file.
    pub keyring: Option<String>,
}

/// The mirror of the first entry serving `suite`.
pub fn mirror_for(entries: &[Entry], suite: &str) -> Option<Mirror> {
    let entry = entries.iter().find(|e| e.suites.iter().any(|s| s == suite))?;
    let uri = entry.uris.first()?.trim_end_matches('/').to_owned();
    let keyring = entry
        .keyring
        .clone()
        .or_else(|| Path::new(DEFAULT_KEYRING).exists().then(|| DEFAULT_KEYRING.to_owned()));
    Some(Mirror { uri, keyring })
}

/// `(ID, VERSION_CODENAME)` from os-release text.
pub fn parse_os_release(text: &str) -> (Option<String>, Option<String>) {
    let get = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(|v| v.trim().trim_matches('"').to_owned())
            .filter(|v| !v.is_empty())
    };
    (get("ID"), get("VERSION_CODENAME"))
}

/// Parse deb822 `.sources` text: enabled `deb` stanzas only.
pub fn parse_deb822(text: &str) -> Vec<Entry> {
    let mut entries = Vec::new();
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza
                .lines()
                .filter(|l| !l.starts_with('#') && !l.starts_with([' ', '\t']))
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
                })
                .unwrap_or_default()
        };
        let words = |v: String| v.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
        let types = words(field("Types"));
        if !types.iter().any(|t| t == "deb") || field("Enabled").eq_ignore_ascii_case("no") {
            continue;
        }
        let signed_by = field("Signed-By");
        let keyring = signed_by.starts_with('/').then_some(signed_by);
        let (uris, suites) = (words(field("URIs")), words(field("Suites")));
        if !uris.is_empty() && !suites.is_empty() {
            entries.push(Entry { uris, suites, keyring });
        }
    }
    entries
}

/// Parse one-line `sources.list` text (`deb [options] uri suite components...`).
pub fn parse_one_line(text: &str) -> Vec<Entry> {
    let mut entries = Vec::new();
    for line in text.lines().map(str::trim) {
        let Some(rest) = line.strip_prefix("deb ") else { continue };
        let mut rest = rest.trim_start();
        let mut keyring = None;
        if let Some(opts) = rest.strip_prefix('[') {
            let Some((opts, after)) = opts.split_once(']') else { continue };
            keyring = opts.split_whitespace().find_map(|o| o.strip_prefix("signed-by=").map(str::to_owned));
            rest = after;
        }
        let mut words = rest.split_whitespace();
        if let (Some(uri), Some(suite)) = (words.next(), words.next()) {
            entries.push(Entry { uris: vec![uri.to_owned()], suites: vec![suite.to_owned()], keyring });
        }
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCES: &str = "Types: deb\n# http://snapshot.debian.org/archive/debian/20250520T000000Z\n\
        URIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\
        Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n\
        Types: deb-src\nURIs: http://src.example/debian\nSuites: bookworm-security\nComponents: main\n\n\
        Types: deb\nURIs: http://mirror.example/debian-security/\nSuites: bookworm-security\n\
        Components: main\nSigned-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n";

    #[test]
    fn deb822_mirrors() {
        let entries = parse_deb822(SOURCES);
        assert_eq!(entries.len(), 2, "{entries:?}");
        let main = mirror_for(&entries, "bookworm").unwrap();
        assert_eq!(main.uri, "http://mirror.example/debian");
        assert_eq!(main.keyring.as_deref(), Some("/usr/share/keyrings/debian-archive-keyring.gpg"));
        let sec = mirror_for(&entries, "bookworm-security").unwrap();
        assert_eq!(sec.uri, "http://mirror.example/debian-security");
        assert!(mirror_for(&entries, "bookworm-backports").is_none());
    }

    #[test]
    fn one_line_sources() {
        let e = parse_one_line(
            "# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://m.example/debian bookworm main\n\
             deb-src http://m.example/debian bookworm main\ndeb http://s.example/ds bookworm-security main\n",
        );
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].keyring.as_deref(), Some("/k.gpg"));
        assert_eq!(e[1].suites, ["bookworm-security"]);
    }

    #[test]
    fn os_release_fields() {
        let (id, code) = parse_os_release(
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n\
             VERSION_CODENAME=bookworm\n",
        );
        assert_eq!(id.as_deref(), Some("debian"));
        assert_eq!(code.as_deref(), Some("bookworm"));
    }
}
