//! Bearer tokens: HS256 JSON Web Tokens signed with `SECRET_KEY`, carrying `sub`, `tenant`, `roles` and `exp`.
//!
//! Only what dossier needs of RFC 7519 is implemented, strictly: the header must say `HS256` (so `alg: none` and
//! algorithm confusion are refused), the signature is compared in constant time, and every claim is required.
//! The same key, under a separate derivation, signs the list cursors ([`Keys::sign`]).

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use time::OffsetDateTime;

use crate::api::error::ApiError;

type HmacSha256 = Hmac<Sha256>;

/// Shortest `SECRET_KEY` accepted, in bytes (HS256 wants a key at least as long as its 256-bit output).
pub const MIN_SECRET_LEN: usize = 32;

/// Longest token accepted, in bytes.
const MAX_TOKEN_LEN: usize = 8 * 1024;

/// Longest `sub` or `tenant`, in bytes (the event log's limit for metadata fields).
const MAX_CLAIM_LEN: usize = dossier_events::envelope::MAX_METADATA_FIELD_LEN;

/// What a token lets its holder do. Each role includes the ones below it: admin ⊇ writer ⊇ reader.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Read documents, their audit trail and search.
    Reader,
    /// Also upload, change, reprocess and delete documents.
    Writer,
    /// Also the global log, live events, verification and projections.
    Admin,
}

impl Role {
    /// The role's name as in tokens.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reader => "reader",
            Self::Writer => "writer",
            Self::Admin => "admin",
        }
    }

    /// Parses a role name.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "reader" => Some(Self::Reader),
            "writer" => Some(Self::Writer),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The claims of a dossier token. Other registered claims (`iss`, `aud`, `jti`) are ignored, so tokens from an
/// identity provider sharing the secret work; `nbf`, when present, is honoured.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The subject: who acts (recorded as the actor of every event the request causes).
    pub sub: String,
    /// The tenant whose documents the token reaches.
    pub tenant: String,
    /// The roles held.
    pub roles: Vec<Role>,
    /// Expiry, in seconds since the Unix epoch.
    pub exp: i64,
    /// Issued at, in seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// Not valid before, in seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
}

impl Claims {
    /// Whether the token holds `required` or a role that includes it.
    pub fn permits(&self, required: Role) -> bool {
        self.roles.iter().any(|held| *held >= required)
    }

    /// Fails with 403 unless the token holds `required`.
    pub fn require(&self, required: Role) -> Result<(), ApiError> {
        if self.permits(required) {
            return Ok(());
        }
        let held = if self.roles.is_empty() {
            "no role".to_owned()
        } else {
            self.roles.iter().map(|role| role.as_str()).collect::<Vec<_>>().join(", ")
        };
        Err(ApiError::Forbidden { required: required.as_str(), held })
    }
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
}

/// The server's signing keys, derived from `SECRET_KEY`.
#[derive(Clone)]
pub struct Keys {
    token: Option<Vec<u8>>,
    cursor: Vec<u8>,
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Keys(redacted)")
    }
}

impl Keys {
    /// Keys from `SECRET_KEY`; `None` means tokens cannot be verified (every authenticated route answers 401).
    pub fn new(secret: Option<&str>) -> Result<Self, String> {
        match secret {
            Some(secret) if secret.len() < MIN_SECRET_LEN => Err(format!(
                "SECRET_KEY is {} bytes long; HS256 needs at least {MIN_SECRET_LEN} (e.g. `openssl rand -hex 32`)",
                secret.len()
            )),
            Some(secret) => {
                let cursor = mac(secret.as_bytes(), b"dossier cursor key v1").to_vec();
                Ok(Self { token: Some(secret.as_bytes().to_vec()), cursor })
            }
            // Cursors still need a key: a random one per process (cursors then do not survive a restart).
            None => Ok(Self {
                token: None,
                cursor: [*uuid::Uuid::now_v7().as_bytes(), *uuid::Uuid::now_v7().as_bytes()].concat(),
            }),
        }
    }

    /// Mints a token for `claims`.
    pub fn mint(&self, claims: &Claims) -> Result<String, String> {
        let key = self.token.as_deref().ok_or("SECRET_KEY is not set: it signs the tokens")?;
        let header = Header { alg: "HS256".into(), typ: Some("JWT".into()) };
        let header = serde_json::to_vec(&header).map_err(|error| error.to_string())?;
        let claims = serde_json::to_vec(claims).map_err(|error| error.to_string())?;
        let signing_input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(claims));
        let signature = URL_SAFE_NO_PAD.encode(mac(key, signing_input.as_bytes()));
        Ok(format!("{signing_input}.{signature}"))
    }

    /// Checks an `Authorization` header value and returns the token's claims, or why it is refused (401).
    pub fn authenticate(&self, authorization: Option<&[u8]>, now: OffsetDateTime) -> Result<Claims, ApiError> {
        let unauthenticated = |reason: &str| ApiError::Unauthenticated(reason.to_owned());
        let value = authorization.ok_or_else(|| unauthenticated("missing Authorization header (Bearer token)"))?;
        let value = std::str::from_utf8(value).map_err(|_| unauthenticated("the Authorization header is not text"))?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| unauthenticated("the Authorization header must be `Bearer <token>`"))?
            .trim();
        if token.len() > MAX_TOKEN_LEN {
            return Err(unauthenticated("the token is too long"));
        }
        let key = self.token.as_deref().ok_or_else(|| {
            unauthenticated("this server has no SECRET_KEY configured, so it cannot verify any token")
        })?;
        let mut parts = token.split('.');
        let (Some(header_part), Some(claims_part), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(unauthenticated("the token is not a JWT (header.claims.signature)"));
        };
        let header: Header =
            decode_part(header_part).ok_or_else(|| unauthenticated("the token's header is malformed"))?;
        if header.alg != "HS256" {
            return Err(unauthenticated("the token must be signed with HS256"));
        }
        let signature =
            URL_SAFE_NO_PAD.decode(signature).map_err(|_| unauthenticated("the token's signature is malformed"))?;
        let mut verifier = HmacSha256::new_from_slice(key).map_err(|error| ApiError::Internal(error.to_string()))?;
        verifier.update(&token.as_bytes()[..header_part.len() + 1 + claims_part.len()]);
        verifier.verify_slice(&signature).map_err(|_| unauthenticated("the token's signature is invalid"))?;
        let claims: Claims = decode_part(claims_part).ok_or_else(|| {
            unauthenticated("the token's claims are malformed (sub, tenant, roles and exp are required)")
        })?;
        if claims.exp <= now.unix_timestamp() {
            return Err(unauthenticated("the token has expired"));
        }
        if claims.nbf.is_some_and(|nbf| nbf > now.unix_timestamp()) {
            return Err(unauthenticated("the token is not valid yet (nbf)"));
        }
        for (name, value) in [("sub", &claims.sub), ("tenant", &claims.tenant)] {
            if value.is_empty() || value.len() > MAX_CLAIM_LEN || value.chars().any(char::is_control) {
                return Err(ApiError::Unauthenticated(format!(
                    "the token's {name} claim must be 1 to {MAX_CLAIM_LEN} printable bytes"
                )));
            }
        }
        Ok(claims)
    }

    /// Signs `payload` with the cursor key (base64url of the payload, a dot, base64url of the MAC).
    pub fn sign(&self, payload: &[u8]) -> String {
        format!("{}.{}", URL_SAFE_NO_PAD.encode(payload), URL_SAFE_NO_PAD.encode(mac(&self.cursor, payload)))
    }

    /// The payload of a value made by [`sign`](Self::sign), if its MAC is right.
    pub fn open(&self, signed: &str) -> Option<Vec<u8>> {
        let (payload, signature) = signed.split_once('.')?;
        let payload = URL_SAFE_NO_PAD.decode(payload).ok()?;
        let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
        let mut verifier = HmacSha256::new_from_slice(&self.cursor).ok()?;
        verifier.update(&payload);
        verifier.verify_slice(&signature).ok()?;
        Some(payload)
    }
}

fn mac(key: &[u8], message: &[u8]) -> [u8; 32] {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => return [0; 32],
    };
    mac.update(message);
    mac.finalize().into_bytes().into()
}

fn decode_part<T: for<'de> Deserialize<'de>>(part: &str) -> Option<T> {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn claims(exp: i64) -> Claims {
        Claims { sub: "alice".into(), tenant: "acme".into(), roles: vec![Role::Writer], exp, iat: None, nbf: None }
    }

    fn bearer(token: &str) -> Vec<u8> {
        format!("Bearer {token}").into_bytes()
    }

    #[test]
    fn mac_matches_rfc_4231_test_case_2() {
        let expected = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        assert_eq!(hex::encode(mac(b"Jefe", b"what do ya want for nothing?")), expected);
    }

    #[test]
    fn authenticate_with_minted_token_returns_its_claims() {
        let keys = Keys::new(Some(SECRET)).expect("keys");
        let now = OffsetDateTime::now_utc();
        let token = keys.mint(&claims(now.unix_timestamp() + 60)).expect("mint");
        assert_eq!(keys.authenticate(Some(&bearer(&token)), now).expect("valid"), claims(now.unix_timestamp() + 60));
    }

    #[test]
    fn authenticate_with_forged_expired_or_alg_none_token_returns_unauthenticated() {
        let keys = Keys::new(Some(SECRET)).expect("keys");
        let other = Keys::new(Some("another-secret-another-secret-xx")).expect("keys");
        let now = OffsetDateTime::now_utc();
        let forged = other.mint(&claims(now.unix_timestamp() + 60)).expect("mint");
        let expired = keys.mint(&claims(now.unix_timestamp() - 1)).expect("mint");
        let valid = keys.mint(&claims(now.unix_timestamp() + 60)).expect("mint");
        let claims_part = valid.split('.').nth(1).expect("claims");
        let none = format!("{}.{claims_part}.", URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#));
        let early = keys.mint(&Claims { nbf: Some(now.unix_timestamp() + 60), ..claims(now.unix_timestamp() + 120) });
        let early = early.expect("mint");
        for (token, reason) in [(forged, "signature"), (expired, "expired"), (none, "HS256"), (early, "nbf")] {
            let error = keys.authenticate(Some(&bearer(&token)), now).expect_err("refused");
            assert!(matches!(&error, ApiError::Unauthenticated(detail) if detail.contains(reason)), "{error:?}");
        }
    }

    #[test]
    fn keys_with_short_secret_are_refused() {
        assert!(Keys::new(Some("short")).is_err());
    }

    #[test]
    fn open_with_tampered_payload_returns_none() {
        let keys = Keys::new(Some(SECRET)).expect("keys");
        let signed = keys.sign(b"after=1");
        assert_eq!(keys.open(&signed).as_deref(), Some(&b"after=1"[..]));
        let (_, signature) = signed.split_once('.').expect("dot");
        assert_eq!(keys.open(&format!("{}.{signature}", URL_SAFE_NO_PAD.encode(b"after=2"))), None);
    }

    #[test]
    fn permits_follows_the_role_hierarchy() {
        let mut token = claims(0);
        assert!(token.permits(Role::Reader) && token.permits(Role::Writer) && !token.permits(Role::Admin));
        token.roles = vec![Role::Admin];
        assert!(token.permits(Role::Reader));
        token.roles.clear();
        assert!(!token.permits(Role::Reader));
    }
}
