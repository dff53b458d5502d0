//! Authentication: argon2 password hashes and the JWT access and refresh tokens.

mod password;
mod token;

pub use password::{PasswordError, hash_password, verify_password};
pub use token::{Claims, TokenCodec, TokenError, TokenKind, TokenPair};
