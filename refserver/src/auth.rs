//! Authentication: the static admin token, logins, access-token expiry and refresh rotation.
//!
//! Owns: the admin user, the issued access and refresh tokens and the rules Directus applies
//! to a bearer token: unknown static token → 401 `INVALID_CREDENTIALS`, a Directus JWT that
//! was not issued here → 403 `INVALID_TOKEN`, an expired one → 401 `TOKEN_EXPIRED`.
//! Must not: read the clock itself (callers pass "now") or know about routes.

use crate::error::Error;
use serde_json::json;
use std::collections::HashMap;

/// Refresh tokens live 7 days, Directus's `REFRESH_TOKEN_TTL` default.
const REFRESH_TTL_MS: i64 = 7 * 24 * 3_600_000;

/// Who is calling: the admin user, or nobody (the public role, which may do nothing here).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Accountability {
    pub user: Option<String>,
}

impl Accountability {
    pub(crate) fn is_admin(&self) -> bool {
        self.user.is_some()
    }
}

/// The answer to a login or refresh.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub access_token: String,
    pub refresh_token: String,
    /// Access token lifetime in milliseconds, as Directus reports it in `expires`.
    pub expires_ms: i64,
}

/// Issued tokens and the admin identity.
#[derive(Debug)]
pub(crate) struct Auth {
    static_token: String,
    email: String,
    password: String,
    pub admin_id: String,
    pub role_id: String,
    access_ttl_ms: i64,
    /// Access token → expiry (epoch ms).
    access: HashMap<String, i64>,
    /// Refresh token → expiry (epoch ms).
    refresh: HashMap<String, i64>,
}

impl Auth {
    pub(crate) fn new(static_token: &str, email: &str, password: &str, access_ttl_ms: i64) -> Self {
        Auth {
            static_token: static_token.into(),
            email: email.into(),
            password: password.into(),
            admin_id: uuid::Uuid::new_v4().to_string(),
            role_id: uuid::Uuid::new_v4().to_string(),
            access_ttl_ms,
            access: HashMap::new(),
            refresh: HashMap::new(),
        }
    }

    pub(crate) fn email(&self) -> &str {
        &self.email
    }

    /// Resolves the bearer token of a request.
    pub(crate) fn resolve(
        &self,
        token: Option<&str>,
        now_ms: i64,
    ) -> Result<Accountability, Error> {
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return Ok(Accountability::default());
        };
        let admin = Accountability {
            user: Some(self.admin_id.clone()),
        };
        if token == self.static_token {
            return Ok(admin);
        }
        if !is_directus_jwt(token) {
            return Err(Error::InvalidCredentials);
        }
        match self.access.get(token) {
            None => Err(Error::InvalidToken),
            Some(expires) if now_ms >= *expires => Err(Error::TokenExpired),
            Some(_) => Ok(admin),
        }
    }

    pub(crate) fn login(
        &mut self,
        email: &str,
        password: &str,
        now_ms: i64,
    ) -> Result<Session, Error> {
        if email != self.email || password != self.password {
            return Err(Error::InvalidCredentials);
        }
        Ok(self.issue(now_ms))
    }

    /// Trades a refresh token for a new pair; the old refresh token stops working.
    pub(crate) fn refresh(&mut self, refresh_token: &str, now_ms: i64) -> Result<Session, Error> {
        match self.refresh.remove(refresh_token) {
            Some(expires) if now_ms < expires => Ok(self.issue(now_ms)),
            _ => Err(Error::InvalidCredentials),
        }
    }

    pub(crate) fn logout(&mut self, refresh_token: &str) -> Result<(), Error> {
        self.refresh
            .remove(refresh_token)
            .map(|_| ())
            .ok_or(Error::InvalidCredentials)
    }

    fn issue(&mut self, now_ms: i64) -> Session {
        let expires = now_ms + self.access_ttl_ms;
        let access_token = jwt(&self.admin_id, &self.role_id, now_ms, expires);
        // Directus refresh tokens are 64 random url-safe characters.
        let refresh_token = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        self.access.insert(access_token.clone(), expires);
        self.refresh
            .insert(refresh_token.clone(), now_ms + REFRESH_TTL_MS);
        Session {
            access_token,
            refresh_token,
            expires_ms: self.access_ttl_ms,
        }
    }
}

/// A JWT shaped like Directus's (claims `id`, `role`, `app_access`, `admin_access`, `iat`,
/// `exp`, `iss: "directus"`). The signature is random: the server recognises its tokens by
/// remembering them, so clients may decode the claims but not forge a token.
fn jwt(user: &str, role: &str, now_ms: i64, expires_ms: i64) -> String {
    let header = json!({"alg": "HS256", "typ": "JWT"});
    let claims = json!({
        "id": user,
        "role": role,
        "app_access": true,
        "admin_access": true,
        "iat": now_ms / 1000,
        "exp": expires_ms / 1000,
        "iss": "directus",
    });
    let signature = uuid::Uuid::new_v4();
    format!(
        "{}.{}.{}",
        base64url(header.to_string().as_bytes()),
        base64url(claims.to_string().as_bytes()),
        base64url(signature.as_bytes())
    )
}

/// Directus's `isDirectusJWT`: a decodable JWT whose issuer is `directus`.
fn is_directus_jwt(token: &str) -> bool {
    let mut parts = token.split('.');
    let (Some(_), Some(claims), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    base64url_decode(claims)
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .is_some_and(|v| v["iss"] == "directus")
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn base64url(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

fn base64url_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = ALPHABET.iter().position(|a| *a == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_round_trips() {
        for s in ["", "a", "ab", "abc", "abcd", "{\"iss\":\"directus\"}"] {
            assert_eq!(
                base64url_decode(&base64url(s.as_bytes())).unwrap(),
                s.as_bytes()
            );
        }
    }

    #[test]
    fn tokens_follow_directus_rules() {
        let mut auth = Auth::new("static", "a@b.c", "pw", 1000);
        assert!(auth.resolve(Some("static"), 0).unwrap().is_admin());
        assert_eq!(
            auth.resolve(Some("other"), 0),
            Err(Error::InvalidCredentials)
        );
        let s = auth.login("a@b.c", "pw", 0).unwrap();
        assert!(auth.resolve(Some(&s.access_token), 999).is_ok());
        assert_eq!(
            auth.resolve(Some(&s.access_token), 1000),
            Err(Error::TokenExpired)
        );
        let foreign = jwt("x", "y", 0, 10);
        assert_eq!(auth.resolve(Some(&foreign), 0), Err(Error::InvalidToken));
        let next = auth.refresh(&s.refresh_token, 5).unwrap();
        assert!(auth.refresh(&s.refresh_token, 6).is_err());
        assert!(auth.resolve(Some(&next.access_token), 6).is_ok());
    }
}
