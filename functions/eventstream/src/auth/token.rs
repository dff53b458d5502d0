use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{config::JwtConfig, domain::Role};

/// Tolerated clock difference when checking `iat`; `exp` and `nbf` are checked without leeway.
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
    /// Not valid before: the time it was issued.
    pub nbf: u64,
    pub exp: u64,
    /// Unique per token, so two tokens issued in the same second differ; a refresh token's row.
    pub jti: Uuid,
    pub typ: TokenKind,
    /// What the user may do, as granted when the token was issued.
    pub roles: Vec<Role>,
    /// The user's token version when the token was issued; revocation bumps the user's.
    pub ver: i32,
}

impl Claims {
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// Whom a token is issued to.
#[derive(Clone, Copy, Debug)]
pub struct TokenSubject<'a> {
    pub user_id: Uuid,
    pub username: &'a str,
    pub roles: &'a [Role],
    pub token_version: i32,
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
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
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

    /// Issues an access token and the refresh token with id `refresh_id` (its row in the store).
    pub fn issue_pair(&self, subject: TokenSubject<'_>, refresh_id: Uuid) -> TokenPair {
        TokenPair {
            access: self.issue(subject, TokenKind::Access, Uuid::now_v7()),
            refresh: self.issue(subject, TokenKind::Refresh, refresh_id),
        }
    }

    /// How long a token of this kind lives.
    pub fn lifetime(&self, kind: TokenKind) -> std::time::Duration {
        std::time::Duration::from_secs(match kind {
            TokenKind::Access => self.access_ttl,
            TokenKind::Refresh => self.refresh_ttl,
        })
    }

    /// Issues one token of the given kind with the id `jti`.
    pub fn issue(&self, subject: TokenSubject<'_>, kind: TokenKind, jti: Uuid) -> String {
        let iat = now_seconds();
        let claims = Claims {
            sub: subject.user_id,
            name: subject.username.to_string(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            iat,
            nbf: iat,
            exp: iat + self.lifetime(kind).as_secs(),
            jti,
            typ: kind,
            roles: subject.roles.to_vec(),
            ver: subject.token_version,
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).expect("HS256 signing cannot fail")
    }

    /// Checks signature, algorithm, `exp`, `nbf`, `iat`, `iss`, `aud` and the token kind. Whether the
    /// user still holds the token's version is the session's to check ([`super::Sessions`]).
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
            "iat": now, "nbf": now, "exp": now + 300, "jti": Uuid::now_v7(), "typ": "access",
            "roles": ["analyst"], "ver": 1,
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

    fn alice(user_id: Uuid) -> TokenSubject<'static> {
        TokenSubject { user_id, username: "alice", roles: &[Role::Analyst, Role::Producer], token_version: 3 }
    }

    #[test]
    fn an_issued_pair_verifies_as_its_own_kinds() {
        let user = Uuid::now_v7();
        let refresh_id = Uuid::now_v7();
        let pair = codec().issue_pair(alice(user), refresh_id);
        let access = codec().verify(&pair.access, TokenKind::Access).unwrap();
        assert_eq!(access.sub, user);
        assert_eq!(access.exp - access.iat, 300);
        assert_eq!(access.nbf, access.iat);
        assert_eq!((access.roles, access.ver), (vec![Role::Analyst, Role::Producer], 3));
        let refresh = codec().verify(&pair.refresh, TokenKind::Refresh).unwrap();
        assert_eq!(refresh.exp - refresh.iat, 86_400);
        assert_eq!(refresh.jti, refresh_id);
    }

    #[test]
    fn a_refresh_token_is_not_an_access_token_and_vice_versa() {
        let pair = codec().issue_pair(alice(Uuid::now_v7()), Uuid::now_v7());
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
        let token = codec().issue(alice(Uuid::now_v7()), TokenKind::Access, Uuid::now_v7());
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
    fn a_token_not_yet_valid_is_rejected_without_leeway() {
        let token = sign(&Header::default(), &claims_json(json!({ "nbf": now_seconds() + 2 })), TEST_SECRET);
        assert!(codec().verify(&token, TokenKind::Access).is_err());
    }

    #[test]
    fn a_token_with_an_unknown_role_or_a_version_that_is_not_a_number_is_rejected() {
        for overrides in [json!({ "roles": ["root"] }), json!({ "roles": "admin" }), json!({ "ver": "1" })] {
            let token = sign(&Header::default(), &claims_json(overrides.clone()), TEST_SECRET);
            assert!(codec().verify(&token, TokenKind::Access).is_err(), "{overrides}");
        }
    }

    #[test]
    fn a_token_missing_a_required_claim_is_rejected() {
        for claim in ["exp", "nbf", "iat", "iss", "aud", "sub", "typ", "jti", "roles", "ver"] {
            let token = sign(&Header::default(), &claims_json(json!({ claim: null })), TEST_SECRET);
            assert!(codec().verify(&token, TokenKind::Access).is_err(), "token without {claim} was accepted");
        }
    }
}
