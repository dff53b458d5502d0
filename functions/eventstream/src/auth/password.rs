use std::sync::{LazyLock, Mutex};

use argon2::{
    Algorithm, Argon2, Block, Params, PasswordHash, PasswordHasher, Version,
    password_hash::{
        Output, SaltString,
        rand_core::{OsRng, RngCore},
    },
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use secrecy::SecretString;

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

/// Random bytes in a generated password: 144 bits, 24 characters once encoded.
const GENERATED_PASSWORD_BYTES: usize = 18;

/// A new password from the operating system's CSPRNG, URL-safe base64 (A-Z a-z 0-9 - _), for an
/// operator who must not choose one where it could be logged (the admin function).
pub fn generate_password() -> SecretString {
    let mut bytes = [0; GENERATED_PASSWORD_BYTES];
    OsRng.fill_bytes(&mut bytes);
    SecretString::from(URL_SAFE_NO_PAD.encode(bytes))
}

/// A hash of a password nobody knows, checked when the user does not exist so that a login for
/// an unknown name costs as long as one with a wrong password.
static DECOY_HASH: LazyLock<String> =
    LazyLock::new(|| hash_password("decoy password for unknown users").expect("hashing a fixed password works"));

/// The memory every check works in, kept for the life of the process.
///
/// argon2 fills m KiB per check (19 MiB at the default cost). Allocated per check, as
/// `PasswordVerifier` does, the freed block stayed in the malloc arena of whichever blocking thread
/// ran the check, so a warm ingest environment grew by 19 MiB per login thread (97 MB after five
/// logins, 153 MB after a load test). One buffer bounds it at one check's worth; checks take turns,
/// which costs nothing in Lambda, where an environment answers one request at a time.
static MEMORY: Mutex<Vec<Block>> = Mutex::new(Vec::new());

/// Whether `password` matches `stored_hash`; `None` stands for an unknown user and is always false.
///
/// CPU-bound (tens of milliseconds): call it from a blocking task.
pub fn verify_password(password: &str, stored_hash: Option<&str>) -> bool {
    let (hash, known_user) = match stored_hash {
        Some(hash) => (hash, true),
        None => (DECOY_HASH.as_str(), false),
    };
    match matches_hash(password, hash) {
        Ok(matches) => matches && known_user,
        Err(error) => {
            tracing::error!(%error, "stored password hash is not an argon2 PHC string this code can check");
            false
        }
    }
}

fn matches_hash(password: &str, hash: &str) -> Result<bool, argon2::password_hash::Error> {
    let parsed = PasswordHash::new(hash)?;
    let expected = parsed.hash.ok_or(argon2::password_hash::Error::PhcStringField)?;
    let salt = parsed.salt.ok_or(argon2::password_hash::Error::PhcStringField)?;
    let mut salt_bytes = [0; argon2::password_hash::Salt::MAX_LENGTH];
    let salt = salt.decode_b64(&mut salt_bytes)?;
    let params = Params::try_from(&parsed)?;
    let version = parsed.version.map(Version::try_from).transpose()?.unwrap_or_default();
    let argon2 = Argon2::new(Algorithm::try_from(parsed.algorithm)?, version, params.clone());

    let mut memory = MEMORY.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if memory.len() < params.block_count() {
        memory.resize(params.block_count(), Block::default());
    }
    let mut computed = vec![0; expected.len()];
    let hashed = argon2.hash_password_into_with_memory(password.as_bytes(), salt, &mut computed, &mut memory[..]);
    // The blocks are derived from the password: nothing of it stays in a long-lived buffer.
    memory.fill(Block::default());
    hashed?;
    // Output's equality is constant-time.
    Ok(Output::new(&computed)? == expected)
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
    fn generated_passwords_are_long_distinct_and_accepted() {
        use secrecy::ExposeSecret;
        let first = generate_password();
        let second = generate_password();
        assert_eq!(first.expose_secret().len(), 24);
        assert!(first.expose_secret().chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_ne!(first.expose_secret(), second.expose_secret());
        let hash = hash_password(first.expose_secret()).unwrap();
        assert!(verify_password(first.expose_secret(), Some(&hash)));
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
        let hash = hash_password("correct horse").unwrap();
        let without_output = &hash[..hash.rfind('$').unwrap()];
        assert!(!verify_password("correct horse", Some(without_output)));
    }

    #[test]
    fn hashes_made_with_other_costs_and_versions_verify() {
        let salt = SaltString::encode_b64(b"sixteen byte slt").unwrap();
        for (algorithm, version, params) in [
            (Algorithm::Argon2id, Version::V0x13, Params::new(8 * 1024, 3, 2, Some(32)).unwrap()),
            (Algorithm::Argon2i, Version::V0x10, Params::new(4 * 1024, 2, 1, Some(16)).unwrap()),
            (Algorithm::Argon2d, Version::V0x13, Params::new(32 * 1024, 1, 1, Some(64)).unwrap()),
        ] {
            let hash =
                Argon2::new(algorithm, version, params).hash_password(b"correct horse", &salt).unwrap().to_string();
            assert!(verify_password("correct horse", Some(&hash)), "{hash}");
            assert!(!verify_password("correct horsf", Some(&hash)), "{hash}");
        }
    }
}
