//! OAuth `state` values: random, stored only as a SHA-256 hash, bound to a customer, single use,
//! short-lived. The callback consumes one atomically, so two concurrent callbacks with the same state
//! cannot both succeed.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use std::time::Duration;
use uuid::Uuid;

/// How long a business owner has to finish Meta's dialog.
pub const STATE_TTL: Duration = Duration::from_secs(600);

/// Issues a fresh 256-bit state for `customer_id`; returns the value to put in the dialog URL.
pub async fn issue(pool: &PgPool, customer_id: Uuid) -> sqlx::Result<String> {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let state = URL_SAFE_NO_PAD.encode(bytes);
    sqlx::query(
        "INSERT INTO oauth_states (state_hash, customer_id, expires_at)
         VALUES ($1, $2, now() + make_interval(secs => $3))",
    )
    .bind(hash(&state))
    .bind(customer_id)
    .bind(STATE_TTL.as_secs_f64())
    .execute(pool)
    .await?;
    // Housekeeping: states nobody came back for.
    sqlx::query("DELETE FROM oauth_states WHERE expires_at < now() - interval '1 day'")
        .execute(pool)
        .await?;
    Ok(state)
}

/// Consumes `state`: the customer it was issued for, if it exists, is unexpired and unused.
pub async fn consume(pool: &PgPool, state: &str) -> sqlx::Result<Option<Uuid>> {
    sqlx::query_scalar(
        "UPDATE oauth_states SET used_at = now()
         WHERE state_hash = $1 AND used_at IS NULL AND expires_at > now()
         RETURNING customer_id",
    )
    .bind(hash(state))
    .fetch_optional(pool)
    .await
}

fn hash(state: &str) -> Vec<u8> {
    Sha256::digest(state.as_bytes()).to_vec()
}
