//! The one HTTP client for Meta's Graph API: both hosts (Facebook's Graph for Page-linked accounts,
//! Instagram's for Instagram Login), tokens in the `Authorization` header, `appsecret_proof`, and
//! every failure classified by Meta's codes.
//!
//! Tokens never go into a URL, so no error, log line or proxy access log can carry one. Errors keep
//! Meta's code, subcode and message (which never contain the token) and nothing else of the request.

use crate::config::{MetaConfig, MetaLogin};
use crate::meta::graph_error::{classify_response, ErrorClass, GraphError};
use hmac::{Hmac, Mac};
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use sha2::Sha256;
use std::time::Duration;

/// A failed Graph call, classified; safe to log and to show an operator.
#[derive(Debug, Clone, thiserror::Error)]
#[error("Graph call failed ({}): {detail}", class.label())]
pub struct GraphCallError {
    /// What the caller should do about it.
    pub class: ErrorClass,
    /// Meta's error fields (code, subcode, message), when it answered with them (boxed: errors are rare
    /// and `Result`s of Graph calls stay small).
    pub error: Box<GraphError>,
    /// The HTTP status, when Meta answered at all (a 2xx here means an unusable success body).
    pub status: Option<u16>,
    /// HTTP status and Meta's code/subcode/message, or the transport failure.
    pub detail: String,
}

impl GraphCallError {
    /// A failure that did not come from Meta's answer (transport, decoding).
    pub fn transient(detail: impl Into<String>) -> Self {
        Self {
            class: ErrorClass::Transient,
            error: Box::default(),
            status: None,
            detail: detail.into(),
        }
    }

    /// Meta answered with a body we cannot use.
    pub fn unexpected(detail: impl Into<String>) -> Self {
        Self {
            class: ErrorClass::Permanent,
            error: Box::default(),
            status: None,
            detail: detail.into(),
        }
    }

    /// Whether Meta answered 2xx (the call took effect) but with a body we could not read.
    pub fn is_unreadable_success(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// Which Graph host a call goes to: the one that issued the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host {
    /// `graph.facebook.com` (`META_GRAPH_URL`): Facebook Login tokens.
    Facebook,
    /// `graph.instagram.com` (`META_INSTAGRAM_GRAPH_URL`): Instagram Login tokens.
    Instagram,
}

impl From<MetaLogin> for Host {
    fn from(login: MetaLogin) -> Self {
        match login {
            MetaLogin::Facebook => Host::Facebook,
            MetaLogin::Instagram => Host::Instagram,
        }
    }
}

/// Client for both Graph hosts. Cheap to clone (one connection pool).
#[derive(Clone)]
pub struct GraphApi {
    http: reqwest::Client,
    facebook: String,
    instagram: String,
    app_secret: SecretString,
    default_throttle: Duration,
}

impl GraphApi {
    /// Builds the client from the Meta settings; `timeout` bounds every call.
    pub fn new(meta: &MetaConfig, timeout: Duration, default_throttle: Duration) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        Ok(Self {
            http,
            facebook: meta.meta_graph_url.trim_end_matches('/').to_owned(),
            instagram: meta.meta_instagram_graph_url.trim_end_matches('/').to_owned(),
            app_secret: meta.api_secret()?,
            default_throttle,
        })
    }

    /// The versioned base URL of `host`.
    pub fn base(&self, host: Host) -> &str {
        match host {
            Host::Facebook => &self.facebook,
            Host::Instagram => &self.instagram,
        }
    }

    /// The host root without the version segment: Instagram's token endpoints
    /// (`/access_token`, `/refresh_access_token`) are documented unversioned.
    pub fn unversioned(&self, host: Host) -> &str {
        let base = self.base(host);
        match base.rsplit_once('/') {
            Some((root, last)) if is_version(last) => root,
            _ => base,
        }
    }

    /// The app secret used for calls (the first configured one).
    pub fn app_secret(&self) -> &SecretString {
        &self.app_secret
    }

    /// The underlying HTTP client, for the few calls outside the Graph hosts (Instagram's code exchange).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// `GET {base}/{path}` with query `params`, as `token` (if any), decoded as `T`.
    pub async fn get<T: DeserializeOwned>(
        &self,
        host: Host,
        path: &str,
        params: &[(&str, &str)],
        token: Option<&SecretString>,
    ) -> Result<T, GraphCallError> {
        let url = format!("{}/{}", self.base(host), path.trim_start_matches('/'));
        self.call(Method::GET, host, &url, params, token, None).await
    }

    /// `POST {base}/{path}` with query `params` and an optional JSON body.
    pub async fn post<T: DeserializeOwned>(
        &self,
        host: Host,
        path: &str,
        params: &[(&str, &str)],
        token: Option<&SecretString>,
        body: Option<&serde_json::Value>,
    ) -> Result<T, GraphCallError> {
        let url = format!("{}/{}", self.base(host), path.trim_start_matches('/'));
        self.call(Method::POST, host, &url, params, token, body).await
    }

    /// `DELETE {base}/{path}`.
    pub async fn delete<T: DeserializeOwned>(
        &self,
        host: Host,
        path: &str,
        params: &[(&str, &str)],
        token: Option<&SecretString>,
    ) -> Result<T, GraphCallError> {
        let url = format!("{}/{}", self.base(host), path.trim_start_matches('/'));
        self.call(Method::DELETE, host, &url, params, token, None).await
    }

    /// Any call to an absolute `url` on `host` (used for the unversioned token endpoints).
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        host: Host,
        url: &str,
        params: &[(&str, &str)],
        token: Option<&SecretString>,
        body: Option<&serde_json::Value>,
    ) -> Result<T, GraphCallError> {
        let mut request = self.http.request(method, url).query(params);
        if let Some(token) = token {
            request = request.bearer_auth(token.expose_secret());
            // appsecret_proof is a Facebook Graph feature; Instagram's host does not document it.
            if host == Host::Facebook {
                request = request.query(&[("appsecret_proof", self.proof(token))]);
            }
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| GraphCallError::transient(describe(&e)))?;
        self.decode(response).await
    }

    /// Turns a Graph response into `T` or a classified error.
    pub async fn decode<T: DeserializeOwned>(
        &self,
        response: reqwest::Response,
    ) -> Result<T, GraphCallError> {
        let status = response.status().as_u16();
        let usage = response
            .headers()
            .get("x-business-use-case-usage")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = response
            .bytes()
            .await
            .map_err(|e| GraphCallError::transient(describe(&e)))?;
        if (200..300).contains(&status) {
            return serde_json::from_slice(&bytes).map_err(|e| GraphCallError {
                status: Some(status),
                ..GraphCallError::unexpected(format!("HTTP {status} with an unexpected body: {e}"))
            });
        }
        let (class, error) = classify_response(status, &bytes, usage.as_deref(), self.default_throttle);
        let detail = format!(
            "HTTP {status} code {:?} subcode {:?}: {}",
            error.code,
            error.error_subcode,
            error.message.as_deref().unwrap_or("")
        );
        Err(GraphCallError {
            class,
            error: Box::new(error),
            status: Some(status),
            detail,
        })
    }

    /// `appsecret_proof`: HMAC-SHA256 of the token keyed by the app secret, so a leaked token alone is
    /// not enough where the app requires the proof.
    pub fn proof(&self, token: &SecretString) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.app_secret.expose_secret().as_bytes())
            .expect("HMAC accepts keys of any length");
        mac.update(token.expose_secret().as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

fn is_version(segment: &str) -> bool {
    segment
        .strip_prefix('v')
        .is_some_and(|v| !v.is_empty() && v.chars().all(|c| c.is_ascii_digit() || c == '.'))
}

/// A transport error without its URL (which could carry query parameters).
pub fn describe(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timeout"
    } else if error.is_connect() {
        "connection failed"
    } else if error.is_decode() {
        "response decoding failed"
    } else {
        "request failed"
    };
    match error.status() {
        Some(status) => format!("{kind} (HTTP {status})"),
        None => kind.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MetaLogin;

    fn client(instagram: &str) -> GraphApi {
        GraphApi::new(
            &MetaConfig {
                instagram_app_secret: SecretString::from("s1,s2".to_string()),
                meta_graph_url: "http://127.0.0.1:1/graph/v25.0/".into(),
                meta_login: MetaLogin::Facebook,
                meta_instagram_graph_url: instagram.into(),
            },
            Duration::from_secs(1),
            Duration::from_secs(60),
        )
        .unwrap()
    }

    #[test]
    fn the_version_segment_is_stripped_only_when_it_is_one() {
        let api = client("https://graph.instagram.com/v25.0");
        assert_eq!(api.unversioned(Host::Instagram), "https://graph.instagram.com");
        assert_eq!(api.base(Host::Facebook), "http://127.0.0.1:1/graph/v25.0");
        assert_eq!(api.unversioned(Host::Facebook), "http://127.0.0.1:1/graph");
        let api = client("https://graph.instagram.com/custom");
        assert_eq!(
            api.unversioned(Host::Instagram),
            "https://graph.instagram.com/custom"
        );
    }

    #[test]
    fn the_proof_uses_the_first_secret() {
        let api = client("http://x/v1");
        assert_eq!(api.app_secret().expose_secret(), "s1");
        let proof = api.proof(&SecretString::from("token".to_string()));
        assert_eq!(proof.len(), 64);
        assert_ne!(proof, api.proof(&SecretString::from("other".to_string())));
    }
}
