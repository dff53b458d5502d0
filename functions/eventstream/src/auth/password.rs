use std::sync::LazyLock;

use argon2::{
    Argon2, PasswordHash, PasswordHasher, PasswordVerifier,
    password_hash::{SaltString, rand_core::OsRng},
};

/// Hashing failed for a reason other than a wrong password.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("password must be between 8 and 1024 characters long")]
    Unacceptable,
    #[error("password hashing failed: {0}")]
    Hash(argon2::password_hash::Error),
}

/// Hashes a password into an argon2id PHC string with a fresh salt.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    if !(8..=1024).contains(&password.chars().count()) {
        return Err(PasswordError::Unacceptable);
    }
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(PasswordError::Hash)
}

/// A hash of a password nobody knows, checked when the user does not exist so that a login for
/// an unknown name costs as long as one with a wrong password.
static DECOY_HASH: LazyLock<String> =
    LazyLock::new(|| hash_password("decoy password for unknown users").expect("hashing a fixed password works"));

/// Whether `password` matches `stored_hash`; `None` stands for an unknown user and is always false.
///
/// CPU-bound (tens of milliseconds): call it from a blocking task.
pub fn verify_password(password: &str, stored_hash: Option<&str>) -> bool {
    let (hash, known_user) = match stored_hash {
        Some(hash) => (hash, true),
        None => (DECOY_HASH.as_str(), false),
    };
    let Ok(parsed) = PasswordHash::new(hash) else {
        tracing::error!("stored password hash is not a PHC string");
        return false;
    };
    Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok() && known_user
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_and_nothing_else() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", Some(&hash)));
        assert!(!verify_password("correct horsf", Some(&hash)));
        assert_ne!(hash, hash_password("correct horse").unwrap(), "each hash has its own salt");
    }

    #[test]
    fn an_unknown_user_never_verifies() {
        assert!(!verify_password("decoy password for unknown users", None));
    }

    #[test]
    fn short_passwords_are_refused() {
        assert!(matches!(hash_password("short"), Err(PasswordError::Unacceptable)));
    }

    #[test]
    fn a_corrupt_stored_hash_fails_closed() {
        assert!(!verify_password("anything", Some("not a hash")));
    }
}
