//! The database and the code agree on every state: each `CHECK` constraint lists exactly the values of
//! its Rust enum (shared::states), so a state added on one side only fails here, not in production.

mod support;

use omnidm_shared::states::{ConversationState, CredentialStatus, MessageStatus};
use support::{Options, Stack};

/// The quoted values of a `CHECK (column IN (...))` constraint on `table`, sorted.
async fn allowed(pool: &sqlx::PgPool, table: &str, column: &str) -> Vec<String> {
    let definitions: Vec<String> = sqlx::query_scalar(
        "SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c
         WHERE c.conrelid = $1::regclass AND c.contype = 'c'",
    )
    .bind(table)
    .fetch_all(pool)
    .await
    .unwrap();
    let definition = definitions
        .iter()
        .find(|d| {
            d.starts_with(&format!("CHECK (({column} = ANY"))
                || d.starts_with(&format!("CHECK (({column})::text = ANY"))
        })
        .unwrap_or_else(|| panic!("a CHECK on {table}.{column} among {definitions:?}"));
    let mut values: Vec<String> = definition
        .split('\'')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect();
    values.sort();
    values
}

fn spelled<T: Copy>(all: &[T], spell: fn(T) -> &'static str) -> Vec<String> {
    let mut values: Vec<String> = all.iter().map(|v| spell(*v).to_owned()).collect();
    values.sort();
    values
}

#[tokio::test]
async fn every_check_constraint_lists_exactly_its_enums_values() {
    let stack = Stack::start(Options {
        workers: 0,
        ..Options::default()
    })
    .await;
    let pool = stack.db().await;
    assert_eq!(
        allowed(&pool, "messages", "status").await,
        spelled(MessageStatus::ALL, MessageStatus::as_str)
    );
    assert_eq!(
        allowed(&pool, "conversations", "state").await,
        spelled(ConversationState::ALL, ConversationState::as_str)
    );
    assert_eq!(
        allowed(&pool, "instagram_credentials", "status").await,
        spelled(CredentialStatus::ALL, CredentialStatus::as_str)
    );
    stack.stop().await;
}
