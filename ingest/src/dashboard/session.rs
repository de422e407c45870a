//! Dashboard sessions: `omnidm_session=<expiry>.<hmac>`, signed with a key derived from `ADMIN_TOKEN`
//! (valid on every ingest replica, void when the token is rotated), and a CSRF token derived from it.

use crate::api::auth::AdminAuth;
use axum::http::{header, HeaderMap};

const COOKIE: &str = "omnidm_session";

/// How long a sign-in lasts.
const LIFETIME_SECONDS: i64 = 12 * 3600;

/// A verified session.
pub struct Session {
    value: String,
}

impl Session {
    /// A new session for someone who just proved they hold the admin token.
    pub fn issue(auth: &AdminAuth) -> Self {
        let expires = chrono::Utc::now().timestamp() + LIFETIME_SECONDS;
        let payload = format!("session:{expires}");
        Self {
            value: format!("{expires}.{}", auth.sign(&payload)),
        }
    }

    /// The session in the request's cookie, if it is genuine and unexpired.
    pub fn from_headers(headers: &HeaderMap, auth: &AdminAuth) -> Option<Self> {
        let value = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == COOKIE)
            .map(|(_, value)| value.to_owned())?;
        let (expires, signature) = value.split_once('.')?;
        let expires: i64 = expires.parse().ok()?;
        if expires < chrono::Utc::now().timestamp() || !auth.verify(&format!("session:{expires}"), signature)
        {
            return None;
        }
        Some(Self { value })
    }

    /// The `Set-Cookie` value.
    pub fn cookie(&self, secure: bool) -> String {
        format!(
            "{COOKIE}={}; Path=/dashboard; Max-Age={LIFETIME_SECONDS}; HttpOnly; SameSite=Lax{}",
            self.value,
            if secure { "; Secure" } else { "" }
        )
    }

    /// A `Set-Cookie` value that removes the session.
    pub fn clear_cookie() -> String {
        format!("{COOKIE}=; Path=/dashboard; Max-Age=0; HttpOnly; SameSite=Lax")
    }

    /// The CSRF token the session's forms carry.
    pub fn csrf(&self, auth: &AdminAuth) -> String {
        auth.sign(&format!("csrf:{}", self.value))
    }

    /// Whether a form's CSRF token belongs to this session.
    pub fn check_csrf(&self, auth: &AdminAuth, presented: &str) -> bool {
        auth.verify(&format!("csrf:{}", self.value), presented)
    }
}
