//! Graph nodes and edges around a connected account: `/me/accounts`, a page node with its Instagram
//! account, `subscribed_apps`, and user profiles by IGSID.
//!
//! Profiles are derived from the id alone, so the same sender always gets the same name in every run.

use super::{select_fields, GraphCall};
use crate::account::SimAccount;
use crate::meta_error::MetaError;
use crate::state::{lock, SimState, TokenOwner};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// `GET /me/accounts` with a user token: the pages it manages, with page tokens.
pub(crate) fn me_accounts(state: &SimState, call: &GraphCall) -> Result<Response, MetaError> {
    let accounts = match call.owner(state)? {
        TokenOwner::User(accounts) => accounts,
        TokenOwner::Page(_) => {
            return Err(MetaError::invalid_parameter(
                "Tried accessing nonexisting field (accounts) on node type (Page)",
            ))
        }
    };
    let data: Vec<Value> = accounts
        .iter()
        .map(|a| select_fields(page_json(a), call.param("fields")))
        .collect();
    let cursors = json!({ "before": "QVFIUsimBEFORE", "after": "QVFIUsimAFTER" });
    Ok(Json(json!({ "data": data, "paging": { "cursors": cursors } })).into_response())
}

/// `GET /{id}`: `me`, a registered page, a registered Instagram account, or any other id as an IGSID.
pub(crate) fn node(state: &SimState, call: &GraphCall, id: &str) -> Result<Response, MetaError> {
    let owner = call.owner(state)?;
    let fields = call.param("fields");
    let object = match (id, &owner) {
        ("me", TokenOwner::Page(account)) => page_node(account, fields),
        ("me", TokenOwner::User(_)) => json!({ "id": "10000000000sim", "name": "Sim Admin" }),
        _ => {
            let registry = lock(&state.registry);
            if let Some(account) = registry.account(id) {
                page_node(&account, fields)
            } else if let Some(account) = registry.account_by_instagram_id(id) {
                select_fields(instagram_json(&account), fields)
            } else {
                select_fields(profile(id), fields)
            }
        }
    };
    Ok(Json(object).into_response())
}

/// `POST|GET|DELETE /{page-id}/subscribed_apps`.
pub(crate) fn subscribed_apps(
    state: &SimState,
    call: &GraphCall,
    page_id: &str,
) -> Result<Response, MetaError> {
    let grants_page = match call.owner(state)? {
        TokenOwner::Page(account) => account.page_id == page_id,
        TokenOwner::User(accounts) => accounts.iter().any(|a| a.page_id == page_id),
    };
    let mut registry = lock(&state.registry);
    if registry.account(page_id).is_none() {
        return Err(MetaError::unsupported(call.method.as_str(), &call.path()));
    }
    if !grants_page {
        return Err(MetaError::new(
            210,
            None,
            "(#210) A page access token is required to request this resource.",
        ));
    }
    let body = match call.method {
        Method::POST => {
            let fields: Vec<String> = call
                .param("subscribed_fields")
                .map(|f| {
                    f.split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default();
            if fields.is_empty() {
                return Err(MetaError::invalid_parameter(
                    "The parameter subscribed_fields is required",
                ));
            }
            registry.subscribe(page_id, fields);
            json!({ "success": true })
        }
        Method::DELETE => {
            registry.unsubscribe(page_id);
            json!({ "success": true })
        }
        Method::GET => {
            let data: Vec<Value> = registry
                .subscriptions(page_id)
                .into_iter()
                .map(|fields| json!({ "id": state.app_id(), "name": "Omniops Sim", "subscribed_fields": fields }))
                .collect();
            json!({ "data": data })
        }
        _ => return Err(MetaError::unsupported(call.method.as_str(), &call.path())),
    };
    Ok(Json(body).into_response())
}

/// Without `fields`, Graph returns a page's `id` and `name` only.
fn page_node(account: &SimAccount, fields: Option<&str>) -> Value {
    select_fields(page_json(account), Some(fields.unwrap_or("id,name")))
}

fn page_json(account: &SimAccount) -> Value {
    let mut page = json!({
        "id": account.page_id,
        "name": account.page_name(),
        "access_token": account.page_token,
        "category": "Shopping & retail",
        "tasks": ["ADVERTISE", "ANALYZE", "CREATE_CONTENT", "MESSAGING", "MODERATE", "MANAGE"],
    });
    if account.instagram_linked {
        page["instagram_business_account"] = instagram_json(account);
    }
    page
}

fn instagram_json(account: &SimAccount) -> Value {
    json!({ "id": account.ig_account_id, "username": account.username, "name": account.page_name() })
}

/// A user profile derived from the IGSID: same id, same name, every run.
pub fn profile(igsid: &str) -> Value {
    const FIRST: [&str; 12] = [
        "Ana", "Ben", "Chloé", "Dmitri", "Emeka", "Fatima", "Giulia", "Hiro", "Inés", "Jonas", "Kemal",
        "Lena",
    ];
    // FNV-1a: stable across runs and Rust versions, unlike the std hasher.
    let hash = igsid.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let first = FIRST[usize::try_from(hash % FIRST.len() as u64).unwrap_or(0)];
    let tail: String = igsid
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    json!({
        "id": igsid,
        "name": format!("{first} {tail}"),
        "username": format!("{}_{tail}", first.to_lowercase()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_are_deterministic_and_differ_between_users() {
        assert_eq!(profile("1129842642640637"), profile("1129842642640637"));
        assert_ne!(
            profile("1129842642640637")["name"],
            profile("1129842642640638")["name"]
        );
        assert_eq!(profile("42")["id"], "42");
    }

    #[test]
    fn a_page_without_instagram_omits_the_field() {
        assert!(page_json(&SimAccount::generated(1).without_instagram())
            .get("instagram_business_account")
            .is_none());
        assert!(page_json(&SimAccount::generated(1))
            .get("instagram_business_account")
            .is_some());
    }
}
