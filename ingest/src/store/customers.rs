//! Tenants.

use sqlx::PgPool;
use uuid::Uuid;

/// A tenant as the dashboard shows it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Customer {
    /// Id.
    pub id: Uuid,
    /// Business name.
    pub name: String,
}

/// Creates a customer; returns its id.
pub async fn create(pool: &PgPool, name: &str, system_prompt: &str) -> sqlx::Result<Uuid> {
    let id = Uuid::now_v7();
    sqlx::query("INSERT INTO customers (id, name, system_prompt) VALUES ($1, $2, $3)")
        .bind(id)
        .bind(name)
        .bind(system_prompt)
        .execute(pool)
        .await?;
    Ok(id)
}

/// One customer.
pub async fn get(pool: &PgPool, id: Uuid) -> sqlx::Result<Option<Customer>> {
    sqlx::query_as("SELECT id, name FROM customers WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// Every customer, newest first (the dashboard's picker).
pub async fn list(pool: &PgPool, limit: i64) -> sqlx::Result<Vec<Customer>> {
    sqlx::query_as("SELECT id, name FROM customers ORDER BY created_at DESC LIMIT $1")
        .bind(limit)
        .fetch_all(pool)
        .await
}
