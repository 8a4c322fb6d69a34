//! Access tokens (HS256 JWT) and opaque refresh tokens.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use domain::Role;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::AuthUser;

const ISSUER: &str = "wallet-bff";
const AUDIENCE: &str = "wallet-bff";

/// 32 random bytes, base64url without padding.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// SHA-256 of a refresh token, hex: what the database keeps.
pub fn hash_refresh_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: Uuid,
    sid: Uuid,
    roles: Vec<String>,
    iss: String,
    aud: String,
    iat: i64,
    exp: i64,
}

/// Signs and checks access tokens.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    /// Access token lifetime.
    pub access_ttl: Duration,
    /// Refresh token lifetime.
    pub refresh_ttl: Duration,
}

impl TokenKeys {
    /// Keys from the HMAC secret.
    pub fn new(secret: &[u8], access_ttl: Duration, refresh_ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            access_ttl,
            refresh_ttl,
        }
    }

    /// Issues an access token; returns it with its expiry.
    pub fn issue_access(
        &self,
        user_id: Uuid,
        session_id: Uuid,
        roles: &[Role],
    ) -> anyhow::Result<(String, DateTime<Utc>)> {
        let now = Utc::now();
        let exp = now + self.access_ttl;
        let claims = Claims {
            sub: user_id,
            sid: session_id,
            roles: roles.iter().map(|r| r.as_str().to_owned()).collect(),
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            iat: now.timestamp(),
            exp: exp.timestamp(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| anyhow::anyhow!("signing access token: {e}"))?;
        Ok((
            token,
            chrono::DateTime::from_timestamp(exp.timestamp(), 0).unwrap_or(exp),
        ))
    }

    /// Checks an access token; `None` when invalid or expired.
    pub fn verify_access(&self, token: &str) -> Option<AuthUser> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).ok()?;
        let roles = data
            .claims
            .roles
            .iter()
            .filter_map(|r| Role::parse(r).ok())
            .collect();
        Some(AuthUser {
            id: data.claims.sub,
            session_id: data.claims.sid,
            roles,
            expires_at: DateTime::from_timestamp(data.claims.exp, 0)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(secret: &[u8]) -> TokenKeys {
        TokenKeys::new(secret, Duration::minutes(15), Duration::days(30))
    }

    #[test]
    fn access_tokens_round_trip_and_reject_other_keys() {
        let k = keys(b"0123456789abcdef0123456789abcdef");
        let (user, sid) = (Uuid::new_v4(), Uuid::new_v4());
        let (token, _) = k
            .issue_access(user, sid, &[Role::User, Role::Admin])
            .expect("sign");
        let auth = k.verify_access(&token).expect("valid");
        assert_eq!(auth.id, user);
        assert_eq!(auth.session_id, sid);
        assert!(auth.has_role(Role::Admin));
        let other = keys(b"another secret that is long enough!!");
        assert!(other.verify_access(&token).is_none());
        assert!(k.verify_access("not.a.jwt").is_none());
    }

    #[test]
    fn expired_tokens_are_rejected() {
        let k = TokenKeys::new(
            b"0123456789abcdef0123456789abcdef",
            Duration::seconds(-60),
            Duration::days(1),
        );
        let (token, _) = k
            .issue_access(Uuid::new_v4(), Uuid::new_v4(), &[Role::User])
            .expect("sign");
        assert!(k.verify_access(&token).is_none());
    }

    #[test]
    fn refresh_tokens_are_random_and_hashed() {
        let (a, b) = (random_token(), random_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(hash_refresh_token(&a).len(), 64);
        assert_ne!(hash_refresh_token(&a), a);
    }
}
