//! Authentication: argon2 password hashes, the JWT access and refresh tokens, and sessions
//! (throttled login, refresh rotation, revocation by token version).

mod password;
mod session;
mod token;

pub use password::{PasswordError, generate_password, hash_password, verify_password};
pub use session::{AuthError, Authenticator, LoginError, Sessions};
pub use token::{Claims, TokenCodec, TokenError, TokenKind, TokenPair, TokenSubject};

/// The token of an `Authorization: Bearer <token>` header, if the header has that form.
/// Two Authorization headers make no valid request: which one a proxy or a log reads is anyone's guess.
pub fn bearer_token(headers: &axum::http::HeaderMap) -> Option<&str> {
    let mut values = headers.get_all(axum::http::header::AUTHORIZATION).iter();
    let header = values.next()?.to_str().ok()?;
    if values.next().is_some() {
        return None;
    }
    let (scheme, token) = header.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, HeaderValue, header::AUTHORIZATION};

    use super::bearer_token;

    #[test]
    fn one_bearer_header_gives_its_token_and_two_give_none() {
        let mut headers = HeaderMap::new();
        headers.append(AUTHORIZATION, HeaderValue::from_static("Bearer abc"));
        assert_eq!(bearer_token(&headers), Some("abc"));
        headers.append(AUTHORIZATION, HeaderValue::from_static("Bearer other"));
        assert_eq!(bearer_token(&headers), None);
    }
}
