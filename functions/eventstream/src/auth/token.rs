use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::JwtConfig;

/// Tolerated clock difference when checking `iat`; `exp` is checked without leeway.
const IAT_SKEW_SECONDS: u64 = 30;

/// Which of the two tokens a JWT is; a refresh token never passes for an access token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    Access,
    Refresh,
}

/// The claims EventStream signs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user's id.
    pub sub: Uuid,
    /// The username, for logs.
    pub name: String,
    pub iss: String,
    pub aud: String,
    pub iat: u64,
    pub exp: u64,
    /// Unique per token, so two tokens issued in the same second differ.
    pub jti: Uuid,
    pub typ: TokenKind,
}

/// Why a token was refused.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token is invalid: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
    #[error("token was issued in the future")]
    IssuedInFuture,
    #[error("a {found:?} token was sent where a {expected:?} token is required")]
    WrongKind { expected: TokenKind, found: TokenKind },
}

/// The pair handed out at login.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TokenPair {
    pub access: String,
    pub refresh: String,
}

/// Signs and checks tokens with one HS256 key. Built once per cold start.
#[derive(Clone)]
pub struct TokenCodec {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    audience: String,
    access_ttl: u64,
    refresh_ttl: u64,
}

impl TokenCodec {
    pub fn new(config: &JwtConfig) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[&config.issuer]);
        validation.set_audience(&[&config.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 0;
        Self {
            encoding: EncodingKey::from_secret(config.secret_bytes()).expect("the secret is checked non-empty"),
            decoding: DecodingKey::from_secret(config.secret_bytes()).expect("the secret is checked non-empty"),
            validation,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            access_ttl: config.access_ttl.as_secs(),
            refresh_ttl: config.refresh_ttl.as_secs(),
        }
    }

    /// Issues a new access and refresh token for the user.
    pub fn issue_pair(&self, user_id: Uuid, username: &str) -> TokenPair {
        TokenPair {
            access: self.issue(user_id, username, TokenKind::Access),
            refresh: self.issue(user_id, username, TokenKind::Refresh),
        }
    }

    /// Issues one token of the given kind.
    pub fn issue(&self, user_id: Uuid, username: &str, kind: TokenKind) -> String {
        let iat = now_seconds();
        let ttl = match kind {
            TokenKind::Access => self.access_ttl,
            TokenKind::Refresh => self.refresh_ttl,
        };
        let claims = Claims {
            sub: user_id,
            name: username.to_string(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            iat,
            exp: iat + ttl,
            jti: Uuid::now_v7(),
            typ: kind,
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).expect("HS256 signing cannot fail")
    }

    /// Checks signature, algorithm, `exp`, `iat`, `iss`, `aud` and the token kind.
    pub fn verify(&self, token: &str, expected: TokenKind) -> Result<Claims, TokenError> {
        let claims = decode::<Claims>(token, &self.decoding, &self.validation)?.claims;
        if claims.iat > now_seconds() + IAT_SKEW_SECONDS {
            return Err(TokenError::IssuedInFuture);
        }
        if claims.typ != expected {
            return Err(TokenError::WrongKind { expected, found: claims.typ });
        }
        Ok(claims)
    }
}

fn now_seconds() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("the clock is after 1970").as_secs()
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    use secrecy::SecretString;
    use serde_json::json;

    use super::*;

    pub(crate) const TEST_SECRET: &str = "test-secret-of-at-least-32-bytes-long!!";

    pub(crate) fn test_jwt_config() -> JwtConfig {
        JwtConfig {
            secret: SecretString::from(TEST_SECRET),
            issuer: "eventstream".into(),
            audience: "eventstream-api".into(),
            access_ttl: Duration::from_secs(300),
            refresh_ttl: Duration::from_secs(86_400),
        }
    }

    fn sign(header: &Header, claims: &serde_json::Value, secret: &str) -> String {
        encode(header, claims, &EncodingKey::from_secret(secret.as_bytes()).unwrap()).unwrap()
    }

    fn claims_json(overrides: serde_json::Value) -> serde_json::Value {
        let now = now_seconds();
        let mut claims = json!({
            "sub": Uuid::now_v7(), "name": "alice", "iss": "eventstream", "aud": "eventstream-api",
            "iat": now, "exp": now + 300, "jti": Uuid::now_v7(), "typ": "access",
        });
        for (key, value) in overrides.as_object().unwrap() {
            if value.is_null() {
                claims.as_object_mut().unwrap().remove(key);
            } else {
                claims[key] = value.clone();
            }
        }
        claims
    }

    fn codec() -> TokenCodec {
        TokenCodec::new(&test_jwt_config())
    }

    #[test]
    fn an_issued_pair_verifies_as_its_own_kinds() {
        let user = Uuid::now_v7();
        let pair = codec().issue_pair(user, "alice");
        let access = codec().verify(&pair.access, TokenKind::Access).unwrap();
        assert_eq!(access.sub, user);
        assert_eq!(access.exp - access.iat, 300);
        let refresh = codec().verify(&pair.refresh, TokenKind::Refresh).unwrap();
        assert_eq!(refresh.exp - refresh.iat, 86_400);
    }

    #[test]
    fn a_refresh_token_is_not_an_access_token_and_vice_versa() {
        let pair = codec().issue_pair(Uuid::now_v7(), "alice");
        assert!(matches!(codec().verify(&pair.refresh, TokenKind::Access), Err(TokenError::WrongKind { .. })));
        assert!(matches!(codec().verify(&pair.access, TokenKind::Refresh), Err(TokenError::WrongKind { .. })));
    }

    #[test]
    fn alg_none_is_rejected() {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let body = URL_SAFE_NO_PAD.encode(claims_json(json!({})).to_string());
        assert!(codec().verify(&format!("{header}.{body}."), TokenKind::Access).is_err());
    }

    #[test]
    fn another_algorithm_with_the_same_secret_is_rejected() {
        let token = sign(&Header::new(Algorithm::HS512), &claims_json(json!({})), TEST_SECRET);
        assert!(codec().verify(&token, TokenKind::Access).is_err());
    }

    #[test]
    fn a_tampered_signature_or_payload_is_rejected() {
        let token = codec().issue(Uuid::now_v7(), "alice", TokenKind::Access);
        let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
        let forged = claims_json(json!({ "name": "mallory" })).to_string();
        parts[1] = URL_SAFE_NO_PAD.encode(forged);
        assert!(codec().verify(&parts.join("."), TokenKind::Access).is_err());
        let other_key =
            sign(&Header::new(Algorithm::HS256), &claims_json(json!({})), "another-secret-that-is-32-bytes-long!");
        assert!(codec().verify(&other_key, TokenKind::Access).is_err());
    }

    #[test]
    fn an_expired_token_is_rejected_without_leeway() {
        let now = now_seconds();
        let token = sign(&Header::default(), &claims_json(json!({ "iat": now - 600, "exp": now - 1 })), TEST_SECRET);
        assert!(codec().verify(&token, TokenKind::Access).is_err());
    }

    #[test]
    fn wrong_issuer_audience_or_future_iat_is_rejected() {
        for overrides in [json!({ "iss": "someone-else" }), json!({ "aud": "another-api" })] {
            let token = sign(&Header::default(), &claims_json(overrides.clone()), TEST_SECRET);
            assert!(codec().verify(&token, TokenKind::Access).is_err(), "{overrides}");
        }
        let token = sign(&Header::default(), &claims_json(json!({ "iat": now_seconds() + 3600 })), TEST_SECRET);
        assert!(matches!(codec().verify(&token, TokenKind::Access), Err(TokenError::IssuedInFuture)));
    }

    #[test]
    fn a_token_missing_a_required_claim_is_rejected() {
        for claim in ["exp", "iat", "iss", "aud", "sub", "typ"] {
            let token = sign(&Header::default(), &claims_json(json!({ claim: null })), TEST_SECRET);
            assert!(codec().verify(&token, TokenKind::Access).is_err(), "token without {claim} was accepted");
        }
    }
}
