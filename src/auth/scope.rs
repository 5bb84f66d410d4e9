//! Scopes: colon-separated segments such as `orders:read`. A held scope whose
//! last segment is `*` grants everything under it; the scope `*` grants all.

pub const MAX_SCOPE_LEN: usize = 128;

/// Why a scope string is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("scope is empty")]
    Empty,
    #[error("scope is longer than {MAX_SCOPE_LEN} characters")]
    TooLong,
    #[error("scope {0:?} has an empty segment")]
    EmptySegment(String),
    #[error(
        "scope {0:?} may only contain lowercase letters, digits, '_', '-', '.' and ':' separators"
    )]
    BadChar(String),
    #[error("scope {0:?}: '*' is only allowed as the whole last segment")]
    MisplacedWildcard(String),
    #[error("scope {0:?}: a route cannot require a wildcard scope")]
    WildcardNotAllowed(String),
}

fn segment_ok(seg: &str) -> bool {
    seg.bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.'))
}

/// Checks a scope's syntax. Key scopes may end in a wildcard; route scopes may not.
pub fn validate(scope: &str, allow_wildcard: bool) -> Result<(), ScopeError> {
    if scope.is_empty() {
        return Err(ScopeError::Empty);
    }
    if scope.len() > MAX_SCOPE_LEN {
        return Err(ScopeError::TooLong);
    }
    let segments: Vec<&str> = scope.split(':').collect();
    let last = segments.len() - 1;
    for (i, seg) in segments.iter().enumerate() {
        if seg.is_empty() {
            return Err(ScopeError::EmptySegment(scope.to_owned()));
        }
        if *seg == "*" {
            if i != last {
                return Err(ScopeError::MisplacedWildcard(scope.to_owned()));
            }
            if !allow_wildcard {
                return Err(ScopeError::WildcardNotAllowed(scope.to_owned()));
            }
        } else if seg.contains('*') {
            return Err(ScopeError::MisplacedWildcard(scope.to_owned()));
        } else if !segment_ok(seg) {
            return Err(ScopeError::BadChar(scope.to_owned()));
        }
    }
    Ok(())
}

/// Whether the held scope grants the required one.
pub fn grants(held: &str, required: &str) -> bool {
    if held == required || held == "*" {
        return true;
    }
    match held.strip_suffix('*') {
        // `orders:*` → prefix `orders:`; the required scope must go deeper.
        Some(prefix) if prefix.ends_with(':') => {
            required.len() > prefix.len() && required.starts_with(prefix)
        }
        _ => false,
    }
}

/// The first required scope that none of the held scopes grants.
pub fn first_missing<'r, H: AsRef<str>>(held: &[H], required: &'r [String]) -> Option<&'r str> {
    required
        .iter()
        .find(|r| !held.iter().any(|h| grants(h.as_ref(), r)))
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_wildcards() {
        assert!(grants("orders:read", "orders:read"));
        assert!(!grants("orders:read", "orders:write"));
        assert!(grants("orders:*", "orders:read"));
        assert!(grants("orders:*", "orders:items:write"));
        assert!(!grants("orders:*", "orders"));
        assert!(!grants("orders:*", "ordersx:read"));
        assert!(!grants("order*", "orders:read"));
        assert!(grants("*", "anything:at:all"));
        assert!(!grants("orders:read", "orders:read:extra"));
    }

    #[test]
    fn missing_scope_is_reported() {
        let held = vec!["orders:*".to_string(), "users:read".to_string()];
        let req = vec!["orders:write".to_string(), "users:read".to_string()];
        assert_eq!(first_missing(&held, &req), None);
        let req = vec!["users:write".to_string()];
        assert_eq!(first_missing(&held, &req), Some("users:write"));
        let none: Vec<String> = vec![];
        assert_eq!(first_missing(&none, &req), Some("users:write"));
        assert_eq!(first_missing(&none, &[]), None);
    }

    #[test]
    fn syntax() {
        assert!(validate("orders:read", false).is_ok());
        assert!(validate("a.b-c_d:e", false).is_ok());
        assert!(validate("orders:*", true).is_ok());
        assert!(validate("*", true).is_ok());
        assert_eq!(
            validate("orders:*", false),
            Err(ScopeError::WildcardNotAllowed("orders:*".into()))
        );
        assert!(matches!(
            validate("*:read", true),
            Err(ScopeError::MisplacedWildcard(_))
        ));
        assert!(matches!(
            validate("ord*", true),
            Err(ScopeError::MisplacedWildcard(_))
        ));
        assert!(matches!(
            validate("orders::read", true),
            Err(ScopeError::EmptySegment(_))
        ));
        assert!(matches!(
            validate("Orders", true),
            Err(ScopeError::BadChar(_))
        ));
        assert!(matches!(validate("a b", true), Err(ScopeError::BadChar(_))));
        assert_eq!(validate("", true), Err(ScopeError::Empty));
        assert_eq!(validate(&"a".repeat(129), true), Err(ScopeError::TooLong));
    }
}
