//! The sim's shared state: the account and token registry, OAuth codes, subscriptions, the behaviour
//! settings tests change at run time, pending faults and the records.
//!
//! Concurrency: each concern has its own `std::sync::Mutex` (never held across an `.await`), so a Send
//! API call that looks up a token does not wait for a test reading records. Critical sections are a few
//! hash-map operations; at benchmark rates the locks are uncontended in practice.

use crate::account::SimAccount;
use crate::fault::{Fault, FaultBook, FaultTarget};
use crate::meta_error::MetaError;
use crate::records::Records;
use crate::server::{EchoMode, SimOptions};
use crate::threads::Threads;
use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// Locks a mutex, ignoring poisoning: every critical section leaves its data consistent, so a panic in
/// another holder (a failed test assertion) is no reason to fail this caller too.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whose token a request carried.
#[derive(Debug, Clone)]
pub(crate) enum TokenOwner {
    /// A page token: acts as that page.
    Page(SimAccount),
    /// A user token: may list and manage these pages.
    User(Vec<SimAccount>),
}

/// A customer's DM as the Conversations API lists it.
#[derive(Debug, Clone)]
pub(crate) struct InboxMessage {
    pub(crate) user_id: String,
    pub(crate) mid: String,
    pub(crate) text: String,
    pub(crate) timestamp_ms: i64,
}

/// An OAuth code the dialog issued and nobody has exchanged yet.
#[derive(Debug, Clone)]
struct PendingCode {
    redirect_uri: String,
}

/// Accounts, tokens, OAuth codes and page subscriptions.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    accounts: HashMap<String, SimAccount>,
    page_tokens: HashMap<String, String>,
    user_tokens: HashMap<String, Vec<String>>,
    revoked: HashSet<String>,
    codes: HashMap<String, PendingCode>,
    /// Pages a token minted by the OAuth flow grants.
    oauth_pages: Vec<String>,
    /// Whether the dialog refuses (the user clicked "Cancel").
    pub(crate) oauth_deny: bool,
    /// Tokens that expired (190/463), as opposed to revoked ones (190/460).
    expired: HashSet<String>,
    /// Instagram Login tokens issued per Instagram account id, oldest first.
    instagram_tokens: HashMap<String, Vec<String>>,
    /// DMs customers wrote, per Instagram account id, as the Conversations API shows them (whether or
    /// not a webhook announced them).
    pub(crate) inbox: HashMap<String, Vec<InboxMessage>>,
    subscriptions: HashMap<String, Vec<String>>,
}

impl Registry {
    fn from_options(options: &SimOptions) -> Self {
        let mut registry = Registry::default();
        for account in &options.accounts {
            registry.add_account(account.clone());
        }
        let oauth = options
            .oauth_accounts
            .clone()
            .unwrap_or_else(|| vec![SimAccount::generated(1)]);
        registry.set_oauth_accounts(oauth);
        registry
    }

    pub(crate) fn add_account(&mut self, account: SimAccount) {
        if let Some(old) = self.accounts.get(&account.page_id) {
            self.page_tokens.remove(&old.page_token);
        }
        self.page_tokens
            .insert(account.page_token.clone(), account.page_id.clone());
        let pages = self.user_tokens.entry(account.user_token.clone()).or_default();
        if !pages.contains(&account.page_id) {
            pages.push(account.page_id.clone());
        }
        self.accounts.insert(account.page_id.clone(), account);
    }

    pub(crate) fn set_oauth_accounts(&mut self, accounts: Vec<SimAccount>) {
        self.oauth_pages = accounts.iter().map(|a| a.page_id.clone()).collect();
        for account in accounts {
            self.add_account(account);
        }
    }

    pub(crate) fn accounts(&self) -> Vec<SimAccount> {
        let mut all: Vec<_> = self.accounts.values().cloned().collect();
        all.sort_by(|a, b| a.page_id.cmp(&b.page_id));
        all
    }

    pub(crate) fn account(&self, page_id: &str) -> Option<SimAccount> {
        self.accounts.get(page_id).cloned()
    }

    pub(crate) fn account_by_instagram_id(&self, ig_account_id: &str) -> Option<SimAccount> {
        self.accounts
            .values()
            .find(|a| a.ig_account_id == ig_account_id)
            .cloned()
    }

    pub(crate) fn revoke(&mut self, token: &str) {
        self.revoked.insert(token.to_string());
    }

    /// Resolves a token, refusing missing (104), revoked (190/460) and unknown (190/463) ones.
    pub(crate) fn resolve(&self, token: Option<&str>) -> Result<TokenOwner, MetaError> {
        let token = token.ok_or_else(|| {
            MetaError::new(104, None, "An access token is required to request this resource.")
        })?;
        if self.revoked.contains(token) {
            return Err(MetaError::revoked_token());
        }
        if self.expired.contains(token) {
            return Err(MetaError::invalid_token());
        }
        if let Some(account) = self.page_tokens.get(token).and_then(|p| self.accounts.get(p)) {
            return Ok(TokenOwner::Page(account.clone()));
        }
        match self.user_tokens.get(token) {
            Some(pages) => Ok(TokenOwner::User(
                pages
                    .iter()
                    .filter_map(|p| self.accounts.get(p))
                    .cloned()
                    .collect(),
            )),
            None => Err(MetaError::invalid_token()),
        }
    }

    /// Issues a single-use code for the dialog's redirect.
    pub(crate) fn issue_code(&mut self, redirect_uri: &str) -> String {
        let code = format!("AQsim{}", uuid::Uuid::new_v4().simple());
        self.codes.insert(
            code.clone(),
            PendingCode {
                redirect_uri: redirect_uri.to_string(),
            },
        );
        code
    }

    /// Exchanges a code for a short-lived user token over the OAuth pages. The code is consumed even when
    /// the redirect URI does not match, as Meta does.
    pub(crate) fn exchange_code(
        &mut self,
        code: &str,
        redirect_uri: Option<&str>,
    ) -> Result<String, MetaError> {
        let pending = self.codes.remove(code).ok_or_else(|| {
            MetaError::new(
                100,
                Some(36009),
                "This authorization code has been used or is invalid.",
            )
        })?;
        if redirect_uri.is_some_and(|uri| uri != pending.redirect_uri) {
            return Err(MetaError::new(
                100,
                Some(36008),
                "Error validating verification code. Please make sure your redirect_uri is identical to \
                 the one you used in the OAuth dialog request",
            ));
        }
        Ok(self.mint_user_token("SHORT", self.oauth_pages.clone()))
    }

    /// Exchanges a valid user token for a long-lived one over the same pages.
    pub(crate) fn exchange_long_lived(&mut self, token: &str) -> Result<String, MetaError> {
        match self.resolve(Some(token))? {
            TokenOwner::User(accounts) => {
                let pages = accounts.into_iter().map(|a| a.page_id).collect();
                Ok(self.mint_user_token("LONG", pages))
            }
            TokenOwner::Page(_) => Err(MetaError::invalid_parameter(
                "fb_exchange_token must be a user token",
            )),
        }
    }

    fn mint_user_token(&mut self, kind: &str, pages: Vec<String>) -> String {
        let token = format!("EAAsim{kind}{}", uuid::Uuid::new_v4().simple());
        self.user_tokens.insert(token.clone(), pages);
        token
    }

    pub(crate) fn expire(&mut self, token: &str) {
        self.expired.insert(token.to_string());
    }

    /// Instagram Login: exchanges the authorize page's code for a short-lived Instagram token of the
    /// first OAuth account (Instagram Login grants exactly one professional account).
    pub(crate) fn exchange_instagram_code(
        &mut self,
        code: &str,
        redirect_uri: Option<&str>,
    ) -> Result<(String, SimAccount), String> {
        let pending = self
            .codes
            .remove(code)
            .ok_or_else(|| "Matching code was not found or was already used".to_string())?;
        if redirect_uri != Some(pending.redirect_uri.as_str()) {
            return Err("Error validating verification code. Please make sure your redirect_uri is identical to the one you used in the OAuth dialog request".into());
        }
        let account = self
            .oauth_pages
            .first()
            .and_then(|p| self.accounts.get(p))
            .cloned()
            .ok_or_else(|| "No Instagram professional account was authorised".to_string())?;
        Ok((self.mint_instagram_token("SHORT", &account), account))
    }

    /// A new Instagram Login token acting for `account` (sends, `me`, `subscribed_apps`).
    pub(crate) fn mint_instagram_token(&mut self, kind: &str, account: &SimAccount) -> String {
        let token = format!("IGQsim{kind}{}", uuid::Uuid::new_v4().simple());
        self.page_tokens.insert(token.clone(), account.page_id.clone());
        self.instagram_tokens
            .entry(account.ig_account_id.clone())
            .or_default()
            .push(token.clone());
        token
    }

    /// Instagram Login tokens issued for an account, oldest first.
    pub(crate) fn instagram_tokens(&self, ig_account_id: &str) -> Vec<String> {
        self.instagram_tokens
            .get(ig_account_id)
            .cloned()
            .unwrap_or_default()
    }

    pub(crate) fn subscribe(&mut self, page_id: &str, fields: Vec<String>) {
        self.subscriptions.insert(page_id.to_string(), fields);
    }

    pub(crate) fn unsubscribe(&mut self, page_id: &str) {
        self.subscriptions.remove(page_id);
    }

    pub(crate) fn subscriptions(&self, page_id: &str) -> Option<Vec<String>> {
        self.subscriptions.get(page_id).cloned()
    }
}

/// Behaviour tests change at run time.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) ai_latency: Duration,
    pub(crate) ai_reply: Option<String>,
    /// When set, every AI request that offers `handoff_to_human` is answered with a call to it, with this
    /// reason.
    pub(crate) ai_handoff: Option<String>,
    pub(crate) echo: EchoMode,
    pub(crate) echo_url: Option<String>,
    pub(crate) echo_secret: Option<String>,
}

impl Settings {
    fn from_options(options: &SimOptions) -> Self {
        Self {
            ai_latency: options.ai_latency,
            ai_reply: options.ai_reply.clone(),
            ai_handoff: None,
            echo: options.echo,
            echo_url: options.echo_webhook_url.clone(),
            echo_secret: options.app_secret.clone(),
        }
    }
}

/// Everything the handlers share, behind one `Arc`.
#[derive(Debug)]
pub(crate) struct SimState {
    /// Kept so that a reset returns to exactly the state the sim started in.
    options: SimOptions,
    pub(crate) registry: Mutex<Registry>,
    pub(crate) settings: Mutex<Settings>,
    pub(crate) faults: Mutex<FaultBook>,
    /// Thread owners and Messenger recipients (see [`crate::threads`]).
    pub(crate) threads: Mutex<Threads>,
    pub(crate) records: Records,
    /// One client for every echo, so deliveries reuse connections to the webhook endpoint.
    pub(crate) http: reqwest::Client,
}

impl SimState {
    pub(crate) fn new(options: SimOptions) -> Self {
        Self {
            registry: Mutex::new(Registry::from_options(&options)),
            settings: Mutex::new(Settings::from_options(&options)),
            faults: Mutex::default(),
            threads: Mutex::default(),
            records: Records::new(options.record),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .pool_idle_timeout(crate::webhook::POOL_IDLE_TIMEOUT)
                .build()
                .unwrap_or_else(|_| reqwest::Client::new()),
            options,
        }
    }

    /// The app id `subscribed_apps` reports and echoes carry: the primary app, the service under test.
    pub(crate) fn app_id(&self) -> &str {
        &self.options.app_id
    }

    pub(crate) fn take_fault(&self, target: FaultTarget) -> Option<Fault> {
        lock(&self.faults).take(target)
    }

    pub(crate) fn settings(&self) -> Settings {
        lock(&self.settings).clone()
    }

    /// Back to the state right after start: options' accounts and settings, no faults, no records, every
    /// thread owned by the primary app.
    pub(crate) fn reset(&self) {
        *lock(&self.threads) = Threads::default();
        *lock(&self.registry) = Registry::from_options(&self.options);
        *lock(&self.settings) = Settings::from_options(&self.options);
        lock(&self.faults).clear();
        self.records.clear();
    }
}
