//! Identifier grammars and generators.

use crate::error::{Error, Result};

/// Longest registration or group ID.
pub const MAX_ID_LEN: usize = 128;

/// Check a registration ID or enrollment group ID: 1..=128 of alphanumerics and `-._:`, ending in an
/// alphanumeric or `-`, starting with an alphanumeric.
pub fn validate_id(what: &str, id: &str) -> Result<()> {
    let bad = |why: &str| Error::invalid(format!("Invalid {what} '{}': {why}", printable(id)));
    if id.is_empty() {
        return Err(bad("it is empty"));
    }
    if id.len() > MAX_ID_LEN {
        return Err(bad("it is longer than 128 characters"));
    }
    if !id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':')) {
        return Err(bad("only letters, digits and - . _ : are allowed"));
    }
    let first = id.as_bytes()[0];
    let last = id.as_bytes()[id.len() - 1];
    if !first.is_ascii_alphanumeric() {
        return Err(bad("it must start with a letter or digit"));
    }
    if !(last.is_ascii_alphanumeric() || last == b'-') {
        return Err(bad("it must end with a letter, digit or -"));
    }
    Ok(())
}

/// Check a hub or service host name: DNS labels of letters, digits and `-`, at most 253 characters.
pub fn validate_host_name(host: &str) -> Result<()> {
    let ok = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if ok { Ok(()) } else { Err(Error::invalid(format!("Invalid host name '{}'", printable(host)))) }
}

/// Check an instance name or access policy name: 1..=64 of alphanumerics and `-_.`.
pub fn validate_name(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok { Ok(()) } else { Err(Error::invalid(format!("Invalid {what} '{}'", printable(name)))) }
}

/// A new ID scope: `0ne` followed by 8 upper-case hex digits.
pub fn new_id_scope() -> String {
    format!("0ne{:08X}", rand::random::<u32>())
}

/// Whether `scope` looks like an ID scope (cheap check before any lookup).
pub fn is_id_scope(scope: &str) -> bool {
    (3..=32).contains(&scope.len()) && scope.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A bounded, printable excerpt of caller input for error messages.
pub fn printable(s: &str) -> String {
    s.chars().take(64).map(|c| if c.is_control() { '?' } else { c }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_id_grammar() {
        for ok in ["a", "dev-1", "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6", "A.b_c:d-", &"x".repeat(128)] {
            assert!(validate_id("registration ID", ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a.", "a_", "a:", "a b", "a/b", "é", &"x".repeat(129)] {
            assert!(validate_id("registration ID", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn host_names() {
        assert!(validate_host_name("hub-1.azure-devices.net").is_ok());
        assert!(validate_host_name("localhost").is_ok());
        for bad in ["", "a..b", "-a.b", "a_b.c", "a b"] {
            assert!(validate_host_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn scopes_look_like_azure() {
        let s = new_id_scope();
        assert_eq!(s.len(), 11);
        assert!(s.starts_with("0ne") && is_id_scope(&s));
    }
}
