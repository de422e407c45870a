//! Meta webhook signatures (`X-Hub-Signature-256`).
//!
//! Meta signs the *exact bytes* it sends with HMAC-SHA256 keyed by the app secret. We verify those raw
//! bytes before any parsing: re-serialised JSON has different bytes (Meta escapes non-ASCII as `\uXXXX`),
//! so verifying a parsed-then-printed body is the classic bug. A body that passed the check becomes a
//! [`VerifiedBody`], the only type the rest of the pipeline accepts, so unverified bytes cannot reach the
//! publisher by accident.

use bytes::Bytes;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The header Meta puts the signature in.
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";

/// Why a body was not accepted as coming from Meta. Both map to 403; the distinction is for metrics and logs.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    /// No `X-Hub-Signature-256` header at all.
    #[error("missing X-Hub-Signature-256 header")]
    Missing,
    /// A header was present but is malformed or matches none of the configured secrets.
    #[error("X-Hub-Signature-256 does not match any configured app secret")]
    Mismatch,
}

/// The set of app secrets that may have signed a webhook. Several are accepted so that a secret can be
/// rotated (and so that Facebook-Login and Instagram-Login secrets can both be configured) without
/// dropping deliveries in between.
#[derive(Clone)]
pub struct WebhookVerifier {
    secrets: Vec<SecretString>,
}

impl std::fmt::Debug for WebhookVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookVerifier")
            .field("secrets", &self.secrets.len())
            .finish()
    }
}

/// A webhook body whose signature has been checked against one of our app secrets.
///
/// It can only be built by [`WebhookVerifier::verify`], so holding one is proof of authenticity.
#[derive(Debug, Clone)]
pub struct VerifiedBody(Bytes);

impl VerifiedBody {
    /// The exact bytes Meta sent.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The bytes, for handing on without a copy.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }
}

impl WebhookVerifier {
    /// Builds a verifier over every configured secret. An empty list would accept nothing, which config
    /// validation rules out before we get here.
    pub fn new(secrets: Vec<SecretString>) -> Self {
        Self { secrets }
    }

    /// Checks `header` (the raw `X-Hub-Signature-256` value, `sha256=<hex>`) against `body`.
    ///
    /// The comparison is constant-time (`Mac::verify_slice`), and every secret is tried so that the time
    /// taken does not reveal which one matched.
    pub fn verify(&self, header: Option<&[u8]>, body: Bytes) -> Result<VerifiedBody, SignatureError> {
        let header = header.ok_or(SignatureError::Missing)?;
        let hex_part = header.strip_prefix(b"sha256=").ok_or(SignatureError::Mismatch)?;
        let mut expected = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut expected).map_err(|_| SignatureError::Mismatch)?;
        let mut matched = false;
        for secret in &self.secrets {
            let mut mac = HmacSha256::new_from_slice(secret.expose_secret().as_bytes())
                .expect("HMAC accepts keys of any length");
            mac.update(&body);
            matched |= mac.verify_slice(&expected).is_ok();
        }
        if matched {
            Ok(VerifiedBody(body))
        } else {
            Err(SignatureError::Mismatch)
        }
    }
}

/// Computes the `X-Hub-Signature-256` header value Meta would send for `body`. Used by the simulator and
/// tests to sign what they deliver.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const REACTION: &[u8] = include_bytes!("../../fixtures/meta/ig_reaction_dashboard_test_raw.json");

    fn verifier(secrets: &[&str]) -> WebhookVerifier {
        WebhookVerifier::new(
            secrets
                .iter()
                .map(|s| SecretString::from(s.to_string()))
                .collect(),
        )
    }

    #[test]
    fn metas_known_answer_vector_verifies() {
        // META.md §1.2: secret `test_app_secret_123` over the 243 raw bytes, no trailing newline.
        let body = REACTION.strip_suffix(b"\n").unwrap_or(REACTION);
        assert_eq!(body.len(), 243);
        let header = b"sha256=9d775973af37fd3b6f8e5b1333680cae1890080e9db42b5fcbf01845cbf8ecdd";
        assert!(verifier(&["test_app_secret_123"])
            .verify(Some(header), Bytes::copy_from_slice(body))
            .is_ok());
        assert_eq!(
            sign(b"test_app_secret_123", body),
            std::str::from_utf8(header).unwrap()
        );
    }

    #[test]
    fn reserialised_json_does_not_verify() {
        let body = REACTION.strip_suffix(b"\n").unwrap_or(REACTION);
        let value: serde_json::Value = serde_json::from_slice(body).unwrap();
        let reserialised = serde_json::to_vec(&value).unwrap();
        assert_ne!(reserialised, body);
        let header = sign(b"test_app_secret_123", body);
        assert_eq!(
            verifier(&["test_app_secret_123"])
                .verify(Some(header.as_bytes()), reserialised.into())
                .unwrap_err(),
            SignatureError::Mismatch
        );
    }

    #[test]
    fn any_configured_secret_verifies_for_rotation() {
        let header = sign(b"new", b"{}");
        assert!(verifier(&["old", "new"])
            .verify(Some(header.as_bytes()), Bytes::from_static(b"{}"))
            .is_ok());
    }

    #[test]
    fn missing_malformed_and_wrong_signatures_are_refused() {
        let v = verifier(&["s"]);
        let body = || Bytes::from_static(b"{}");
        assert_eq!(v.verify(None, body()).unwrap_err(), SignatureError::Missing);
        for bad in [
            &b"sha256=zz"[..],
            b"sha1=abc",
            b"",
            b"sha256=",
            sign(b"other", b"{}").as_bytes(),
        ] {
            assert_eq!(v.verify(Some(bad), body()).unwrap_err(), SignatureError::Mismatch);
        }
        let upper = sign(b"s", b"{}").to_uppercase().replace("SHA256=", "sha256=");
        // Hex case does not matter: hex decoding accepts both, and the MAC is what is compared.
        assert!(v.verify(Some(upper.as_bytes()), body()).is_ok());
    }
}
