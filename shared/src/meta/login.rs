//! "Connect Instagram": Meta's two login flavours, from the dialog URL to a stored-ready page token,
//! plus what the token lifecycle needs later (validate, refresh, subscribe, unsubscribe).
//!
//! Facebook Login (the seed's flow, `META_LOGIN=facebook`): code → short-lived user token → long-lived
//! user token → `/me/accounts` lists the pages with their page tokens and linked Instagram accounts. The
//! **page** token is what the Send API needs, and one obtained from a long-lived user token does not
//! expire (META.md §6.2), so it is stored without an expiry and validated periodically instead.
//!
//! Instagram Login (`META_LOGIN=instagram`, no Page): code (with Meta's `#_` suffix stripped) →
//! short-lived token → long-lived token (`ig_exchange_token`, ~60 days) → `me?fields=user_id,username`.
//! That token is refreshed (`ig_refresh_token`) before it expires (META.md §6.1).

use crate::config::{ConnectConfig, MetaLogin};
use crate::meta::graph::{describe, GraphApi, GraphCallError, Host};
use crate::meta::graph_error::{ErrorClass, GraphError};
use chrono::{DateTime, Utc};
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Permissions requested with Facebook Login (the seed's list).
pub const FACEBOOK_SCOPES: &str =
    "instagram_basic,instagram_manage_messages,pages_manage_metadata,pages_show_list,pages_messaging";

/// Permissions requested with Instagram Login.
pub const INSTAGRAM_SCOPES: &str = "instagram_business_basic,instagram_business_manage_messages";

/// Webhook fields every connected account is subscribed to.
pub const SUBSCRIBED_FIELDS: &str = "messages,messaging_postbacks,message_reactions,messaging_seen";

/// An Instagram account the login granted, with the token that acts for it.
pub struct ConnectedAccount {
    /// Which flow produced it (decides the Graph host from now on).
    pub login: MetaLogin,
    /// The Instagram professional account id: webhook `entry.id`.
    pub account_id: String,
    /// The Facebook Page it is linked to (Facebook Login only).
    pub page_id: Option<String>,
    /// The Instagram handle, for the dashboard.
    pub username: Option<String>,
    /// Page token (Facebook Login) or long-lived Instagram token.
    pub token: SecretString,
    /// When the token stops working; `None` for page tokens, which do not expire.
    pub token_expires_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for ConnectedAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectedAccount")
            .field("login", &self.login)
            .field("account_id", &self.account_id)
            .field("page_id", &self.page_id)
            .field("username", &self.username)
            .field("token_expires_at", &self.token_expires_at)
            .finish_non_exhaustive()
    }
}

/// Why the login could not produce a usable account. Messages are safe to log (no tokens).
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// The user has no Page with a linked Instagram professional account (or granted none).
    #[error("no Facebook Page with a linked Instagram business account was granted")]
    NoInstagramAccount,
    /// A Graph call failed; `step` says which.
    #[error("{step}: {error}")]
    Graph {
        /// The flow's step, e.g. `code_exchange`.
        step: &'static str,
        /// Meta's classified answer.
        error: GraphCallError,
    },
}

impl LoginError {
    fn at(step: &'static str) -> impl FnOnce(GraphCallError) -> LoginError {
        move |error| LoginError::Graph { step, error }
    }
}

/// The flow for one login flavour, with the app's settings.
#[derive(Clone)]
pub struct Login {
    api: GraphApi,
    flavour: MetaLogin,
    app_id: String,
    redirect_uri: String,
    facebook_dialog: String,
    instagram_authorize: String,
    instagram_token: String,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: SecretString,
    #[serde(default)]
    expires_in: Option<i64>,
}

#[derive(Deserialize)]
struct Pages {
    #[serde(default)]
    data: Vec<Page>,
}

#[derive(Deserialize)]
struct Page {
    id: String,
    access_token: Option<SecretString>,
    instagram_business_account: Option<InstagramAccount>,
}

#[derive(Deserialize)]
struct InstagramAccount {
    id: String,
    username: Option<String>,
}

/// Instagram's code exchange answers `{data: [...]}` per the docs, the bare object in practice.
#[derive(Deserialize)]
#[serde(untagged)]
enum InstagramCodeAnswer {
    Wrapped { data: Vec<InstagramShortToken> },
    Bare(InstagramShortToken),
}

#[derive(Deserialize)]
struct InstagramShortToken {
    access_token: SecretString,
}

/// Instagram's own error shape on `api.instagram.com` (not Graph's).
#[derive(Deserialize)]
struct InstagramOauthError {
    #[serde(default)]
    code: Option<i64>,
    #[serde(default)]
    error_message: Option<String>,
}

#[derive(Deserialize)]
struct InstagramMe {
    user_id: serde_json::Value,
    #[serde(default)]
    username: Option<String>,
}

#[derive(Deserialize)]
struct Success {
    #[serde(default)]
    success: serde_json::Value,
}

impl Login {
    /// The flow configured by `META_LOGIN` and the connect settings.
    pub fn new(api: GraphApi, flavour: MetaLogin, connect: &ConnectConfig) -> Self {
        Self {
            api,
            flavour,
            app_id: connect.instagram_app_id.clone(),
            redirect_uri: connect.instagram_redirect_uri.clone(),
            facebook_dialog: connect.meta_oauth_dialog_url.clone(),
            instagram_authorize: connect.meta_instagram_authorize_url.clone(),
            instagram_token: connect.meta_instagram_token_url.clone(),
        }
    }

    /// Which flavour this is.
    pub fn flavour(&self) -> MetaLogin {
        self.flavour
    }

    /// The origin (`scheme://host[:port]`) of Meta's dialog, for the dashboard's Content-Security-Policy
    /// (its Connect form redirects there).
    pub fn dialog_origin(&self) -> String {
        let base = match self.flavour {
            MetaLogin::Facebook => &self.facebook_dialog,
            MetaLogin::Instagram => &self.instagram_authorize,
        };
        reqwest::Url::parse(base)
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or_default()
    }

    /// The Graph client the flow calls through.
    pub fn api(&self) -> &GraphApi {
        &self.api
    }

    /// The Meta dialog URL a business owner is sent to, carrying our CSRF `state`.
    pub fn authorize_url(&self, state: &str) -> String {
        let (base, scopes) = match self.flavour {
            MetaLogin::Facebook => (&self.facebook_dialog, FACEBOOK_SCOPES),
            MetaLogin::Instagram => (&self.instagram_authorize, INSTAGRAM_SCOPES),
        };
        let mut url = reqwest::Url::parse(base).expect("validated at start");
        url.query_pairs_mut()
            .append_pair("client_id", &self.app_id)
            .append_pair("redirect_uri", &self.redirect_uri)
            .append_pair("state", state)
            .append_pair("response_type", "code")
            .append_pair("scope", scopes);
        if self.flavour == MetaLogin::Instagram {
            // Log in with the Instagram professional account itself, not a Facebook identity.
            url.query_pairs_mut()
                .append_pair("enable_fb_login", "0")
                .append_pair("force_authentication", "1");
        }
        url.into()
    }

    /// Exchanges the dialog's `code` for the accounts it granted, each with a long-lived token.
    pub async fn complete(&self, code: &str) -> Result<Vec<ConnectedAccount>, LoginError> {
        match self.flavour {
            MetaLogin::Facebook => self.complete_facebook(code).await,
            MetaLogin::Instagram => self.complete_instagram(code).await.map(|a| vec![a]),
        }
    }

    async fn complete_facebook(&self, code: &str) -> Result<Vec<ConnectedAccount>, LoginError> {
        let secret = self.api.app_secret().expose_secret();
        let short: TokenAnswer = self
            .api
            .get(
                Host::Facebook,
                "oauth/access_token",
                &[
                    ("client_id", &self.app_id),
                    ("client_secret", secret),
                    ("redirect_uri", &self.redirect_uri),
                    ("code", code),
                ],
                None,
            )
            .await
            .map_err(LoginError::at("code_exchange"))?;
        let long: TokenAnswer = self
            .api
            .get(
                Host::Facebook,
                "oauth/access_token",
                &[
                    ("grant_type", "fb_exchange_token"),
                    ("client_id", &self.app_id),
                    ("client_secret", secret),
                    ("fb_exchange_token", short.access_token.expose_secret()),
                ],
                None,
            )
            .await
            .map_err(LoginError::at("long_lived_exchange"))?;
        let pages: Pages = self
            .api
            .get(
                Host::Facebook,
                "me/accounts",
                &[
                    (
                        "fields",
                        "id,name,access_token,instagram_business_account{id,username,name}",
                    ),
                    ("limit", "100"),
                ],
                Some(&long.access_token),
            )
            .await
            .map_err(LoginError::at("list_pages"))?;
        let accounts: Vec<ConnectedAccount> = pages
            .data
            .into_iter()
            .filter_map(|page| {
                let instagram = page.instagram_business_account?;
                Some(ConnectedAccount {
                    login: MetaLogin::Facebook,
                    account_id: instagram.id,
                    page_id: Some(page.id),
                    username: instagram.username,
                    token: page.access_token?,
                    token_expires_at: None,
                })
            })
            .collect();
        if accounts.is_empty() {
            return Err(LoginError::NoInstagramAccount);
        }
        Ok(accounts)
    }

    async fn complete_instagram(&self, code: &str) -> Result<ConnectedAccount, LoginError> {
        // Meta appends `#_` to the redirect; a browser drops fragments, but a pasted URL may keep it.
        let code = code.trim_end_matches("#_");
        let secret = self.api.app_secret().expose_secret();
        let response = self
            .api
            .http()
            .post(&self.instagram_token)
            .form(&[
                ("client_id", self.app_id.as_str()),
                ("client_secret", secret),
                ("grant_type", "authorization_code"),
                ("redirect_uri", self.redirect_uri.as_str()),
                ("code", code),
            ])
            .send()
            .await
            .map_err(|e| LoginError::at("code_exchange")(GraphCallError::transient(describe(&e))))?;
        let short = instagram_code_answer(response)
            .await
            .map_err(LoginError::at("code_exchange"))?;
        let long: TokenAnswer = self
            .api
            .call(
                Method::GET,
                Host::Instagram,
                &format!("{}/access_token", self.api.unversioned(Host::Instagram)),
                &[
                    ("grant_type", "ig_exchange_token"),
                    ("client_secret", secret),
                    ("access_token", short.expose_secret()),
                ],
                None,
                None,
            )
            .await
            .map_err(LoginError::at("long_lived_exchange"))?;
        let me: InstagramMe = self
            .api
            .get(
                Host::Instagram,
                "me",
                &[("fields", "user_id,username")],
                Some(&long.access_token),
            )
            .await
            .map_err(LoginError::at("profile"))?;
        let account_id = match me.user_id {
            serde_json::Value::String(s) => s,
            serde_json::Value::Number(n) => n.to_string(),
            _ => {
                return Err(LoginError::at("profile")(GraphCallError::unexpected(
                    "user_id is neither a string nor a number",
                )))
            }
        };
        Ok(ConnectedAccount {
            login: MetaLogin::Instagram,
            account_id,
            page_id: None,
            username: me.username,
            token_expires_at: expiry(long.expires_in),
            token: long.access_token,
        })
    }
}

/// Subscribes the account to our webhook fields (on the Page for Facebook Login).
pub async fn subscribe(
    api: &GraphApi,
    login: MetaLogin,
    page_id: Option<&str>,
    token: &SecretString,
) -> Result<(), GraphCallError> {
    let path = subscription_path(login, page_id);
    let answer: Success = api
        .post(
            Host::from(login),
            &path,
            &[("subscribed_fields", SUBSCRIBED_FIELDS)],
            Some(token),
            None,
        )
        .await?;
    ensure_success(answer)
}

/// Removes our app's webhook subscription (disconnect).
pub async fn unsubscribe(
    api: &GraphApi,
    login: MetaLogin,
    page_id: Option<&str>,
    token: &SecretString,
) -> Result<(), GraphCallError> {
    let path = subscription_path(login, page_id);
    let answer: Success = api.delete(Host::from(login), &path, &[], Some(token)).await?;
    ensure_success(answer)
}

/// Asks Meta whether the token still works (a cheap read of the account it acts for).
pub async fn validate(
    api: &GraphApi,
    login: MetaLogin,
    page_id: Option<&str>,
    token: &SecretString,
) -> Result<(), GraphCallError> {
    let (path, fields) = match (login, page_id) {
        (MetaLogin::Facebook, Some(page)) => (page.to_owned(), "id"),
        (MetaLogin::Facebook, None) => ("me".to_owned(), "id"),
        (MetaLogin::Instagram, _) => ("me".to_owned(), "user_id"),
    };
    api.get::<serde_json::Value>(Host::from(login), &path, &[("fields", fields)], Some(token))
        .await
        .map(drop)
}

/// Refreshes a long-lived Instagram Login token (valid, at least 24 hours old): a new token and
/// its expiry. Page tokens (Facebook Login) do not expire and are never refreshed.
pub async fn refresh_instagram(
    api: &GraphApi,
    token: &SecretString,
) -> Result<(SecretString, Option<DateTime<Utc>>), GraphCallError> {
    let answer: TokenAnswer = api
        .call(
            Method::GET,
            Host::Instagram,
            &format!("{}/refresh_access_token", api.unversioned(Host::Instagram)),
            &[
                ("grant_type", "ig_refresh_token"),
                ("access_token", token.expose_secret()),
            ],
            None,
            None,
        )
        .await?;
    Ok((answer.access_token, expiry(answer.expires_in)))
}

fn subscription_path(login: MetaLogin, page_id: Option<&str>) -> String {
    match (login, page_id) {
        (MetaLogin::Facebook, Some(page)) => format!("{page}/subscribed_apps"),
        _ => "me/subscribed_apps".to_owned(),
    }
}

fn ensure_success(answer: Success) -> Result<(), GraphCallError> {
    // Meta answers `true` or, in places, the string "true".
    match answer.success {
        serde_json::Value::Bool(true) => Ok(()),
        serde_json::Value::String(s) if s == "true" => Ok(()),
        other => Err(GraphCallError::unexpected(format!("success was {other}"))),
    }
}

fn expiry(expires_in: Option<i64>) -> Option<DateTime<Utc>> {
    expires_in
        .filter(|s| *s > 0)
        .map(|s| Utc::now() + chrono::Duration::seconds(s))
}

async fn instagram_code_answer(response: reqwest::Response) -> Result<SecretString, GraphCallError> {
    let status = response.status().as_u16();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| GraphCallError::transient(describe(&e)))?;
    if (200..300).contains(&status) {
        return match serde_json::from_slice::<InstagramCodeAnswer>(&bytes) {
            Ok(InstagramCodeAnswer::Bare(token)) => Ok(token.access_token),
            Ok(InstagramCodeAnswer::Wrapped { data }) => data
                .into_iter()
                .next()
                .map(|t| t.access_token)
                .ok_or_else(|| GraphCallError::unexpected("code exchange returned no token")),
            Err(e) => Err(GraphCallError::unexpected(format!("code exchange answer: {e}"))),
        };
    }
    let error = serde_json::from_slice::<InstagramOauthError>(&bytes).ok();
    let message = error
        .as_ref()
        .and_then(|e| e.error_message.clone())
        .unwrap_or_default();
    Err(GraphCallError {
        class: if status >= 500 {
            ErrorClass::Transient
        } else {
            ErrorClass::Permanent
        },
        error: Box::new(GraphError {
            code: error.and_then(|e| e.code),
            message: Some(message.clone()),
            ..GraphError::default()
        }),
        status: Some(status),
        detail: format!("HTTP {status}: {message}"),
    })
}
