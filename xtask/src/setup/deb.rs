//! Debian control data as apt prints it: `Field: value` stanzas and `Depends:` lists.

use std::collections::BTreeMap;

/// One control stanza (`apt-cache show`, `dpkg-deb -f`): field name -> value, continuation lines joined.
#[derive(Debug, Default)]
pub struct Stanza(BTreeMap<String, String>);

impl Stanza {
    /// Parse the first stanza of `text`.
    pub fn parse(text: &str) -> Stanza {
        let mut fields: BTreeMap<String, String> = BTreeMap::new();
        let mut last: Option<String> = None;
        for line in text.lines() {
            if line.trim().is_empty() {
                if fields.is_empty() {
                    continue;
                }
                break;
            }
            if line.starts_with([' ', '\t']) {
                if let Some(v) = last.as_ref().and_then(|k| fields.get_mut(k)) {
                    v.push('\n');
                    v.push_str(line.trim());
                }
                continue;
            }
            if let Some((key, value)) = line.split_once(':') {
                let key = key.trim().to_owned();
                fields.insert(key.clone(), value.trim().to_owned());
                last = Some(key);
            }
        }
        Stanza(fields)
    }

    /// A field's value.
    pub fn get(&self, field: &str) -> Option<&str> {
        self.0.get(field).map(String::as_str)
    }

    /// Whether the stanza is empty (nothing was found).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The parsed `Depends:` field.
    pub fn depends(&self) -> Vec<Dep> {
        self.get("Depends").map(parse_depends).unwrap_or_default()
    }
}

/// One dependency: the first alternative of a `Depends:` entry.
#[derive(Debug, PartialEq, Eq)]
pub struct Dep {
    /// Package name, without an `:arch` qualifier.
    pub name: String,
    /// Version relation and version, e.g. `("=", "6.1.176-1")`.
    pub version: Option<(String, String)>,
}

/// Parse a `Depends:` value; alternatives after `|` are ignored.
pub fn parse_depends(value: &str) -> Vec<Dep> {
    value
        .split(',')
        .filter_map(|entry| {
            let first = entry.split('|').next()?.trim();
            if first.is_empty() {
                return None;
            }
            let (name, rest) = match first.split_once('(') {
                Some((n, r)) => (n.trim(), Some(r.trim_end_matches(')').trim())),
                None => (first, None),
            };
            let name = name.split(':').next().unwrap_or(name).to_owned();
            let version = rest.and_then(|r| {
                let (op, ver) = r.split_once(char::is_whitespace)?;
                Some((op.trim().to_owned(), ver.trim().to_owned()))
            });
            Some(Dep { name, version })
        })
        .collect()
}

/// The `Candidate:` line of `apt-cache policy <pkg>`; `None` for `(none)` or an unknown package.
pub fn policy_candidate(policy: &str) -> Option<String> {
    let value = policy.lines().find_map(|l| l.trim().strip_prefix("Candidate:"))?.trim();
    (value != "(none)" && !value.is_empty()).then(|| value.to_owned())
}

/// Whether a Debian version is a backport (`1:10.0.2+ds-2+deb13u1~bpo12+1`).
pub fn is_backport(version: &str) -> bool {
    version.contains("~bpo")
}

#[cfg(test)]
mod tests {
    use super::*;

    const META: &str = "Package: linux-image-armmp\nSource: linux\nVersion: 6.1.176-1\n\
        Depends: linux-image-6.1.0-50-armmp (= 6.1.176-1)\nDescription: Linux for ARMv7\n \
        more text\n\nPackage: next\n";

    #[test]
    fn stanza_fields_and_depends() {
        let s = Stanza::parse(META);
        assert_eq!(s.get("Version"), Some("6.1.176-1"));
        assert_eq!(s.get("Description"), Some("Linux for ARMv7\nmore text"));
        assert_eq!(s.get("Package"), Some("linux-image-armmp"));
        assert_eq!(
            s.depends(),
            vec![Dep {
                name: "linux-image-6.1.0-50-armmp".into(),
                version: Some(("=".into(), "6.1.176-1".into()))
            }]
        );
    }

    #[test]
    fn depends_with_alternatives_and_arch() {
        let d = parse_depends(
            "linux-headers-6.1.0-50-common (= 6.1.176-1), linux-kbuild-6.1 (>= 6.1.176-1), \
             linux-compiler-gcc-12-arm, libc6:armhf | libc6-udeb",
        );
        let names: Vec<_> = d.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(
            names,
            ["linux-headers-6.1.0-50-common", "linux-kbuild-6.1", "linux-compiler-gcc-12-arm", "libc6"]
        );
        assert_eq!(d[1].version, Some((">=".into(), "6.1.176-1".into())));
        assert_eq!(d[2].version, None);
    }

    #[test]
    fn candidate_and_backport() {
        let p = "qemu-system-arm:\n  Installed: (none)\n  Candidate: 1:7.2+dfsg-7\n  Version table:\n";
        assert_eq!(policy_candidate(p).as_deref(), Some("1:7.2+dfsg-7"));
        assert_eq!(policy_candidate("lld-99:\n  Installed: (none)\n  Candidate: (none)\n"), None);
        assert_eq!(policy_candidate(""), None);
        assert!(is_backport("1:10.0.2+ds-2+deb13u1~bpo12+1"));
        assert!(!is_backport("1:7.2+dfsg-7+deb12u18+b3"));
    }
}
