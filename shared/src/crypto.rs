//! Encryption of secrets at rest (access tokens) with AES-256-GCM.
//!
//! Stored form: `v1.<key id>.<base64(nonce ‖ ciphertext ‖ tag)>`. A fresh random 96-bit nonce per
//! encryption; the key id (derived from the key itself, so it needs no configuration) says which key
//! decrypts it, so old keys keep working during a rotation; the caller's *associated data* (the row's
//! identity) is authenticated, so a ciphertext copied onto another row fails to decrypt.

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

const VERSION: &str = "v1";
const NONCE_LEN: usize = 12;

/// Why a key or a stored value could not be used. Never contains key material or plaintext.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    /// A configured key is not base64 of exactly 32 bytes.
    #[error("key must be base64 of exactly 32 bytes")]
    BadKey,
    /// The stored value is not in our format.
    #[error("stored value is not a v1 ciphertext")]
    Malformed,
    /// No configured key has the stored value's key id: a key was removed too early.
    #[error("no configured key has id {0}")]
    UnknownKey(String),
    /// Wrong key, tampered ciphertext, or associated data of another row.
    #[error("ciphertext does not authenticate")]
    Authentication,
}

/// One AES-256 key and its id.
#[derive(Clone)]
pub struct Key {
    id: String,
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Key {
    /// Parses base64 of 32 bytes (as `ENCRYPTION_KEY` holds it).
    pub fn from_base64(text: &str) -> Result<Self, CryptoError> {
        let bytes = STANDARD.decode(text.trim()).map_err(|_| CryptoError::BadKey)?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| CryptoError::BadKey)?;
        let id = hex::encode(&Sha256::digest(bytes)[..4]);
        Ok(Self {
            id,
            cipher: Aes256Gcm::new(&bytes.into()),
        })
    }

    /// A short, non-secret identifier (first 4 bytes of the key's SHA-256).
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// The current key (encrypts) and previous keys (still decrypt).
#[derive(Debug, Clone)]
pub struct Keyring {
    current: Key,
    previous: Vec<Key>,
}

impl Keyring {
    /// Builds a keyring from the current and previous keys.
    pub fn new(current: Key, previous: Vec<Key>) -> Self {
        Self { current, previous }
    }

    /// Id of the key new values are encrypted with; a row with another id wants re-encryption.
    pub fn current_key_id(&self) -> &str {
        self.current.id()
    }

    /// Encrypts `plaintext`, binding it to `associated_data` (the row's identity).
    pub fn encrypt(&self, plaintext: &SecretString, associated_data: &[u8]) -> String {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let ciphertext = self
            .current
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext.expose_secret().as_bytes(),
                    aad: associated_data,
                },
            )
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        let mut blob = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&ciphertext);
        format!("{VERSION}.{}.{}", self.current.id, STANDARD.encode(blob))
    }

    /// Decrypts a stored value with whichever configured key it names.
    pub fn decrypt(&self, stored: &str, associated_data: &[u8]) -> Result<SecretString, CryptoError> {
        let mut parts = stored.splitn(3, '.');
        let (Some(VERSION), Some(key_id), Some(data)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(CryptoError::Malformed);
        };
        let key = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == key_id)
            .ok_or_else(|| CryptoError::UnknownKey(key_id.to_owned()))?;
        let blob = STANDARD.decode(data).map_err(|_| CryptoError::Malformed)?;
        if blob.len() < NONCE_LEN {
            return Err(CryptoError::Malformed);
        }
        let (nonce, ciphertext) = blob.split_at(NONCE_LEN);
        let plaintext = key
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: associated_data,
                },
            )
            .map_err(|_| CryptoError::Authentication)?;
        String::from_utf8(plaintext)
            .map(SecretString::from)
            .map_err(|_| CryptoError::Authentication)
    }

    /// The key id a stored value was encrypted with, if it is in our format.
    pub fn key_id_of(stored: &str) -> Option<&str> {
        let mut parts = stored.splitn(3, '.');
        (parts.next() == Some(VERSION)).then(|| parts.next()).flatten()
    }
}

/// The associated data binding an access-token ciphertext to its credential row.
pub fn token_associated_data(credential_id: impl std::fmt::Display) -> String {
    format!("instagram_credentials:{credential_id}:access_token")
}

/// The associated data of a customer's notification secret: binds the ciphertext to that customer, so a
/// secret copied onto another customer's row does not decrypt.
pub fn notify_secret_associated_data(customer_id: impl std::fmt::Display) -> String {
    format!("customers:{customer_id}:notify_secret")
}

/// A fresh random key as base64, for `.env` files, tests and the demo.
pub fn generate_key_base64() -> String {
    STANDARD.encode(Aes256Gcm::generate_key(&mut OsRng))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Key {
        Key::from_base64(&generate_key_base64()).unwrap()
    }

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    #[test]
    fn a_token_round_trips_and_never_appears_in_the_stored_form() {
        let ring = Keyring::new(key(), vec![]);
        let stored = ring.encrypt(&secret("EAAG-token"), b"row-1");
        assert!(!stored.contains("EAAG"));
        assert_eq!(
            ring.decrypt(&stored, b"row-1").unwrap().expose_secret(),
            "EAAG-token"
        );
        assert_eq!(Keyring::key_id_of(&stored), Some(ring.current_key_id()));
    }

    #[test]
    fn each_encryption_uses_a_fresh_nonce() {
        let ring = Keyring::new(key(), vec![]);
        assert_ne!(ring.encrypt(&secret("t"), b"r"), ring.encrypt(&secret("t"), b"r"));
    }

    #[test]
    fn a_ciphertext_moved_to_another_row_does_not_decrypt() {
        let ring = Keyring::new(key(), vec![]);
        let stored = ring.encrypt(&secret("t"), b"row-1");
        assert_eq!(
            ring.decrypt(&stored, b"row-2").unwrap_err(),
            CryptoError::Authentication
        );
    }

    #[test]
    fn previous_keys_decrypt_during_rotation_and_unknown_keys_are_named() {
        let old = key();
        let old_ring = Keyring::new(old.clone(), vec![]);
        let stored = old_ring.encrypt(&secret("t"), b"r");
        let rotated = Keyring::new(key(), vec![old]);
        assert_eq!(rotated.decrypt(&stored, b"r").unwrap().expose_secret(), "t");
        let forgotten = Keyring::new(key(), vec![]);
        assert!(matches!(
            forgotten.decrypt(&stored, b"r"),
            Err(CryptoError::UnknownKey(_))
        ));
    }

    #[test]
    fn tampering_and_garbage_are_errors() {
        let ring = Keyring::new(key(), vec![]);
        let stored = ring.encrypt(&secret("token"), b"r");
        let mut tampered = stored.clone().into_bytes();
        let last = tampered.len() - 3;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        assert!(ring
            .decrypt(std::str::from_utf8(&tampered).unwrap(), b"r")
            .is_err());
        for garbage in ["", "v1", "v1.x", "v2.a.b", "plain-token"] {
            assert!(ring.decrypt(garbage, b"r").is_err());
        }
        assert_eq!(Key::from_base64("c2hvcnQ=").unwrap_err(), CryptoError::BadKey);
        assert!(!format!("{:?}", ring).contains("cipher"));
    }
}
