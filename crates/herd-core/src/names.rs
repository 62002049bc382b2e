//! Host names to values, matched the way nginx matches `server_name`: an exact name first,
//! then the longest `*.suffix` wildcard (which takes any number of leading labels), then the
//! longest `prefix.*` wildcard. Case does not matter and a trailing dot is ignored.
//!
//! One [`NameTable`] implementation serves both places that choose by name: herd-server's
//! virtual hosts (by the request's `Host`) and the TLS certificate resolver (by the SNI name
//! of the ClientHello), so a server block and its certificate are always chosen alike.

use std::collections::HashMap;

/// Names (`example.com`, `*.example.com`, `www.example.*`) to values.
///
/// ```
/// use herd_core::names::NameTable;
///
/// let mut t = NameTable::new();
/// t.insert("example.com", 1);
/// t.insert("*.example.com", 2);
/// t.insert("www.example.*", 3);
/// assert_eq!(t.get("Example.COM."), Some(&1));
/// assert_eq!(t.get("a.b.example.com"), Some(&2));
/// assert_eq!(t.get("www.example.org"), Some(&3));
/// assert_eq!(t.get("other.test"), None);
/// ```
#[derive(Debug, Clone)]
pub struct NameTable<T> {
    exact: HashMap<String, T>,
    /// `*.example.com` as (`.example.com`, value), longest first.
    leading: Vec<(String, T)>,
    /// `www.example.*` as (`www.example.`, value), longest first.
    trailing: Vec<(String, T)>,
}

impl<T> Default for NameTable<T> {
    fn default() -> Self {
        NameTable {
            exact: HashMap::new(),
            leading: Vec::new(),
            trailing: Vec::new(),
        }
    }
}

impl<T> NameTable<T> {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add `name` (exact, `*.suffix` or `prefix.*`). The first value given for a name stays;
    /// returns whether this one was added.
    pub fn insert(&mut self, name: &str, value: T) -> bool {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(suffix) = name.strip_prefix('*') {
            Self::insert_sorted(&mut self.leading, suffix, value)
        } else if let Some(prefix) = name.strip_suffix('*') {
            Self::insert_sorted(&mut self.trailing, prefix, value)
        } else {
            match self.exact.entry(name) {
                std::collections::hash_map::Entry::Occupied(_) => false,
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(value);
                    true
                }
            }
        }
    }

    /// Keep `list` longest first (equal lengths in insertion order).
    fn insert_sorted(list: &mut Vec<(String, T)>, key: &str, value: T) -> bool {
        if list.iter().any(|(k, _)| k == key) {
            return false;
        }
        let at = list.partition_point(|(k, _)| k.len() >= key.len());
        list.insert(at, (key.to_string(), value));
        true
    }

    /// The value for `host` (no port): exact, then `*.suffix`, then `prefix.*`.
    pub fn get(&self, host: &str) -> Option<&T> {
        let host = host.trim_end_matches('.');
        let lower;
        let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            lower = host.to_ascii_lowercase();
            lower.as_str()
        } else {
            host
        };
        if let Some(v) = self.exact.get(host) {
            return Some(v);
        }
        // `*.example.com` takes `a.example.com` and `a.b.example.com`, not `example.com`.
        if let Some((_, v)) = self
            .leading
            .iter()
            .find(|(s, _)| host.len() > s.len() && host.ends_with(s.as_str()))
        {
            return Some(v);
        }
        self.trailing
            .iter()
            .find(|(p, _)| host.len() > p.len() && host.starts_with(p.as_str()))
            .map(|(_, v)| v)
    }

    /// Whether no name was added.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.leading.is_empty() && self.trailing.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_then_longest_leading_then_longest_trailing() {
        let mut t = NameTable::new();
        assert!(t.is_empty());
        assert!(t.insert("*.test", 1));
        assert!(t.insert("*.b.test", 2));
        assert!(t.insert("www.*", 3));
        assert!(t.insert("www.b.*", 4));
        assert!(t.insert("www.b.test", 5));
        assert!(!t.insert("WWW.B.TEST.", 6), "the first value stays");
        assert!(!t.insert("*.b.test", 7));
        assert_eq!(t.get("www.b.test"), Some(&5));
        assert_eq!(t.get("x.b.test"), Some(&2), "the longer suffix wins");
        assert_eq!(t.get("x.y.b.test"), Some(&2));
        assert_eq!(t.get("x.test"), Some(&1));
        assert_eq!(t.get("test"), None, "`*.test` needs a label before it");
        assert_eq!(t.get("www.b.org"), Some(&4), "the longer prefix wins");
        assert_eq!(t.get("www.c.org"), Some(&3));
        assert_eq!(t.get("www.b.test.org"), Some(&4));
        assert_eq!(t.get("WWW.B.TEST"), Some(&5));
        assert_eq!(t.get(""), None);
    }

    #[test]
    fn leading_beats_trailing() {
        let mut t = NameTable::new();
        t.insert("www.example.*", 1);
        t.insert("*.example.com", 2);
        assert_eq!(t.get("www.example.com"), Some(&2));
        assert_eq!(t.get("www.example.net"), Some(&1));
    }
}
