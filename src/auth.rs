//! API key checking.
//!
//! The key in `x-api-key` is compared with every configured key in constant
//! time, so the response time tells an attacker nothing about how much of a
//! guess was right. Keys are never logged: [`KeySet`]'s `Debug` prints only
//! how many keys it holds.

use subtle::{Choice, ConstantTimeEq};

/// The set of accepted API keys.
#[derive(Clone)]
pub struct KeySet {
    keys: Vec<Vec<u8>>,
}

impl KeySet {
    pub fn new(keys: &[String]) -> KeySet {
        KeySet {
            keys: keys.iter().map(|k| k.as_bytes().to_vec()).collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Checks a presented key against every configured key.
    ///
    /// Every key is compared in full whatever the outcome, and the work done
    /// depends only on the configured keys' lengths, not on the guess.
    pub fn accepts(&self, presented: Option<&str>) -> bool {
        let Some(presented) = presented else {
            return false;
        };
        let presented = presented.as_bytes();
        let mut matched = Choice::from(0);
        for key in &self.keys {
            matched |= equal_padded(presented, key);
        }
        matched.into()
    }
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeySet({} keys)", self.keys.len())
    }
}

/// Compares `presented` with `key` in time that depends only on `key.len()`.
fn equal_padded(presented: &[u8], key: &[u8]) -> Choice {
    let mut equal = (presented.len() as u64).ct_eq(&(key.len() as u64));
    for (i, expected) in key.iter().enumerate() {
        let byte = presented.get(i).copied().unwrap_or(0);
        equal &= byte.ct_eq(expected);
    }
    equal
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> KeySet {
        KeySet::new(&["rust_is_fast_123".to_string(), "demo_user_007".to_string()])
    }

    #[test]
    fn accepts_each_configured_key() {
        assert!(keys().accepts(Some("rust_is_fast_123")));
        assert!(keys().accepts(Some("demo_user_007")));
    }

    #[test]
    fn rejects_missing_wrong_prefix_and_longer_keys() {
        let keys = keys();
        assert!(!keys.accepts(None));
        assert!(!keys.accepts(Some("")));
        assert!(!keys.accepts(Some("rust_is_fast_12")));
        assert!(!keys.accepts(Some("rust_is_fast_1234")));
        assert!(!keys.accepts(Some("RUST_IS_FAST_123")));
        assert!(!keys.accepts(Some("demo_user_007\0")));
    }

    #[test]
    fn debug_output_hides_keys() {
        let text = format!("{:?}", keys());
        assert_eq!(text, "KeySet(2 keys)");
    }
}
