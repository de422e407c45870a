//! End-to-end harness: a fresh database and queue prefix per test, the simulator as Meta and the AI,
//! a real ingest, and workers (in-process, or as child processes a test can SIGKILL).
#![allow(dead_code, missing_docs)]

use clap::Parser;
use omnidm_ingest::Application as Ingest;
use omnidm_shared::config::{
    AmqpConfig, ConnectConfig, CryptoConfig, DatabaseConfig, IngestConfig, LogFormat, MetaConfig, MetaLogin,
    TelemetryConfig, WorkerConfig,
};
use omnidm_shared::crypto::generate_key_base64;
use omnidm_shared::topology::Topology;
use omnidm_sim::{EchoMode, Sim, SimAccount, SimHandle, SimOptions};
use omnidm_worker::Application as Worker;
use secrecy::SecretString;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use uuid::Uuid;

pub const SECRET: &str = "e2e_app_secret";
pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
pub const ADMIN_DB: &str = "postgres://postgres@127.0.0.1:5432/postgres";
pub const ADMIN_TOKEN: &str = "e2e-admin-token-0123456789abcdef";
/// The Meta app id the sim plays and the workers are configured with (`INSTAGRAM_APP_ID`).
pub const APP_ID: &str = "1234567890123456";

pub struct Options {
    pub workers: usize,
    pub debounce_ms: u64,
    pub max_failures: u32,
    pub echo: EchoMode,
    /// Insert the tenant's credential directly (false: connect it through the OAuth flow in the test).
    pub seed_credential: bool,
    /// `META_LOGIN` of ingest and workers.
    pub login: MetaLogin,
    /// Extra worker environment (overrides).
    pub worker_env: Vec<(&'static str, String)>,
    /// How long ago the seeded credential was connected, set before any worker runs (a later
    /// UPDATE would race the reconciler's first pass).
    pub connected_ago: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            workers: 1,
            debounce_ms: 200,
            max_failures: 3,
            echo: EchoMode::AfterResponse,
            seed_credential: true,
            login: MetaLogin::Facebook,
            worker_env: Vec::new(),
            connected_ago: Duration::ZERO,
        }
    }
}

pub struct Stack {
    pub sim: SimHandle,
    pub pool: PgPool,
    pub database_url: String,
    pub prefix: String,
    pub key: String,
    pub webhook_url: String,
    /// `http://127.0.0.1:<port>` of ingest.
    pub ingest_url: String,
    /// Metrics/health addresses of the in-process workers.
    pub worker_addrs: Vec<std::net::SocketAddr>,
    pub account: SimAccount,
    pub customer_id: Uuid,
    pub credential_id: Uuid,
    pub options: Options,
    stops: Vec<Arc<Notify>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    client: reqwest::Client,
}

impl Stack {
    pub async fn start(options: Options) -> Self {
        let id = Uuid::new_v4().simple().to_string();
        let database_url = format!("postgres://postgres@127.0.0.1:5432/t_{id}");
        let prefix = format!("t_{id}");
        let account = SimAccount::generated(rand_u32());
        let sim = Sim::start(SimOptions {
            addr: "127.0.0.1:0".parse().unwrap(),
            accounts: vec![account.clone()],
            echo: options.echo,
            app_secret: Some(SECRET.into()),
            app_id: APP_ID.into(),
            ..SimOptions::default()
        })
        .await
        .expect("sim starts");
        let mut stack = Self {
            sim,
            pool: PgPool::connect_lazy(ADMIN_DB).unwrap(),
            database_url,
            prefix,
            key: generate_key_base64(),
            webhook_url: String::new(),
            ingest_url: String::new(),
            worker_addrs: Vec::new(),
            account,
            customer_id: Uuid::new_v4(),
            credential_id: Uuid::new_v4(),
            options,
            stops: Vec::new(),
            tasks: Vec::new(),
            client: omnidm_sim::webhook::http_client(),
        };
        stack.start_ingest().await;
        stack.sim.set_echo_target(stack.webhook_url.clone(), SECRET);
        let database = omnidm_shared::config::DatabaseConfig {
            database_url: SecretString::from(stack.database_url.clone()),
            database_max_connections: 2,
        };
        omnidm_shared::db::connect_and_migrate(&database)
            .await
            .expect("test database migrates")
            .close()
            .await;
        stack.seed_tenant().await;
        for _ in 0..stack.options.workers {
            stack.start_worker().await;
        }
        stack
    }

    async fn start_ingest(&mut self) {
        // Bound first: the OAuth redirect URI and APP_URL must name ingest's own address.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let config = IngestConfig {
            ingest_addr: "127.0.0.1:0".into(),
            instagram_webhook_verify_token: SecretString::from("verify".to_string()),
            ingest_max_in_flight: 1024,
            publish_timeout_ms: 5_000,
            amqp_publish_channels: 2,
            ingest_max_connections: 1_000,
            ingest_header_timeout_ms: 2_000,
            ingest_request_timeout_ms: 10_000,
            admin_token: SecretString::from(ADMIN_TOKEN.to_string()),
            conversation: omnidm_shared::config::ConversationConfig {
                human_pause_minutes: 60,
            },
            connect: ConnectConfig {
                instagram_app_id: "e2e-app".into(),
                instagram_redirect_uri: format!("{base}/api/instagram/callback"),
                app_url: base.clone(),
                meta_oauth_dialog_url: self.sim.oauth_dialog_url(),
                meta_instagram_authorize_url: self.sim.instagram_authorize_url(),
                meta_instagram_token_url: self.sim.instagram_token_url(),
            },
            database: DatabaseConfig {
                database_url: SecretString::from(self.database_url.clone()),
                database_max_connections: 4,
            },
            crypto: CryptoConfig {
                encryption_key: SecretString::from(self.key.clone()),
                encryption_keys_previous: SecretString::from(String::new()),
            },
            amqp: AmqpConfig {
                amqp_url: SecretString::from(AMQP_URL.to_string()),
                queue_prefix: self.prefix.clone(),
            },
            meta: MetaConfig {
                instagram_app_secret: SecretString::from(SECRET.to_string()),
                meta_graph_url: self.sim.graph_url(),
                meta_login: self.options.login,
                meta_instagram_graph_url: self.sim.instagram_graph_url(),
            },
            telemetry: TelemetryConfig {
                log_format: LogFormat::Text,
            },
        };
        let app = Ingest::build_on(config, listener).await.unwrap();
        assert!(app.broker().wait_connected(Duration::from_secs(10)).await);
        self.ingest_url = base;
        self.webhook_url = format!("http://{}/api/webhooks/instagram", app.local_addr());
        let stop = Arc::new(Notify::new());
        let signal = stop.clone();
        self.tasks.push(tokio::spawn(async move {
            let _ = app.run_until(async move { signal.notified().await }).await;
        }));
        self.stops.push(stop);
    }

    /// Environment of a worker process, as the operator would set it.
    pub fn worker_env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("DATABASE_URL", self.database_url.clone()),
            ("AMQP_URL", AMQP_URL.into()),
            ("QUEUE_PREFIX", self.prefix.clone()),
            ("INSTAGRAM_APP_SECRET", SECRET.into()),
            ("INSTAGRAM_APP_ID", APP_ID.into()),
            ("META_GRAPH_URL", self.sim.graph_url()),
            ("META_INSTAGRAM_GRAPH_URL", self.sim.instagram_graph_url()),
            ("AI_BASE_URL", self.sim.ai_base_url()),
            ("AI_TIMEOUT_MS", "5000".into()),
            ("ENCRYPTION_KEY", self.key.clone()),
            ("WORKER_ADDR", "127.0.0.1:0".into()),
            ("WORKER_CONCURRENCY", "16".into()),
            ("REPLY_DEBOUNCE_MS", self.options.debounce_ms.to_string()),
            ("JOB_MAX_FAILURES", self.options.max_failures.to_string()),
            ("THROTTLE_DEFAULT_SECONDS", "2".into()),
            ("WORKER_DRAIN_SECONDS", "5".into()),
        ];
        for (name, value) in &self.options.worker_env {
            env.retain(|(n, _)| n != name);
            env.push((name, value.clone()));
        }
        env
    }

    pub fn worker_config(&self) -> WorkerConfig {
        let mut args = vec!["worker".to_string()];
        for (name, value) in self.worker_env() {
            args.push(format!("--{}", name.to_lowercase().replace('_', "-")));
            args.push(value);
        }
        WorkerConfig::try_parse_from(args).expect("worker config parses")
    }

    pub async fn start_worker(&mut self) {
        let app = Worker::build(self.worker_config()).await.expect("worker builds");
        assert!(app.broker().wait_connected(Duration::from_secs(10)).await);
        self.worker_addrs.push(app.local_addr());
        let stop = Arc::new(Notify::new());
        let signal = stop.clone();
        self.tasks.push(tokio::spawn(async move {
            let _ = app.run_until(async move { signal.notified().await }).await;
        }));
        self.stops.push(stop);
    }

    /// Starts a worker as a separate OS process (so a test can SIGKILL it).
    pub fn spawn_worker_process(&self) -> tokio::process::Child {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_worker"));
        command
            .arg("run")
            .envs(self.worker_env())
            .env("RUST_LOG", "warn")
            .kill_on_drop(true);
        command.spawn().expect("worker binary starts")
    }

    async fn seed_tenant(&self) {
        self.seed_customer(self.customer_id, "Acme", "You are Acme's helpful assistant.")
            .await;
        if self.options.seed_credential {
            self.seed_credential(self.customer_id, self.credential_id, &self.account)
                .await;
        }
    }

    async fn seed_customer(&self, id: Uuid, name: &str, system_prompt: &str) {
        sqlx::query("INSERT INTO customers (id, name, system_prompt) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(name)
            .bind(system_prompt)
            .execute(&self.db().await)
            .await
            .unwrap();
    }

    /// A second business with its own connected account (the sim serves it too): returns the
    /// customer's id and the account.
    pub async fn seed_second_tenant(&self, name: &str, system_prompt: &str) -> (Uuid, SimAccount) {
        let account = SimAccount::generated(rand_u32());
        self.sim.add_account(account.clone());
        let customer = Uuid::new_v4();
        self.seed_customer(customer, name, system_prompt).await;
        self.seed_credential(customer, Uuid::new_v4(), &account).await;
        (customer, account)
    }

    async fn seed_credential(&self, customer_id: Uuid, credential_id: Uuid, account: &SimAccount) {
        let pool = self.db().await;
        let keyring = omnidm_shared::crypto::Keyring::new(
            omnidm_shared::crypto::Key::from_base64(&self.key).unwrap(),
            vec![],
        );
        let aad = omnidm_worker::store::credentials::token_associated_data(credential_id);
        let token = keyring.encrypt(&SecretString::from(account.page_token.clone()), aad.as_bytes());
        sqlx::query(
            "INSERT INTO instagram_credentials
                 (id, customer_id, account_id, page_id, username, access_token_enc, token_key_id, connected_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, now() - make_interval(secs => $8))",
        )
        .bind(credential_id)
        .bind(customer_id)
        .bind(&account.ig_account_id)
        .bind(&account.page_id)
        .bind(&account.username)
        .bind(&token)
        .bind(keyring.current_key_id())
        .bind(self.options.connected_ago.as_secs_f64())
        .execute(&pool)
        .await
        .unwrap();
    }

    /// A pool on the test's own database (created by the first worker's migrations).
    pub async fn db(&self) -> PgPool {
        PgPool::connect(&self.database_url)
            .await
            .expect("test database exists")
    }

    pub async fn post(&self, body: Vec<u8>) -> u16 {
        let signature = omnidm_shared::signature::sign(SECRET.as_bytes(), &body);
        self.client
            .post(&self.webhook_url)
            .header("x-hub-signature-256", signature)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// Posts a customer's text DM.
    pub async fn dm(&self, user: &str, mid: &str, text: &str, timestamp_ms: i64) {
        let body = omnidm_sim::webhook::payload::text_message(
            &self.account.ig_account_id,
            user,
            mid,
            text,
            timestamp_ms,
        );
        assert_eq!(self.post(body).await, 200);
    }

    /// Jobs waiting in the dead-letter queue.
    pub async fn dead_letters(&self) -> u32 {
        let topology = Topology::new(self.prefix.clone());
        let connection = lapin::Connection::connect(AMQP_URL, Default::default())
            .await
            .unwrap();
        let channel = connection.create_channel().await.unwrap();
        let queue = channel
            .queue_declare(
                topology.dead_queue().into(),
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                Default::default(),
            )
            .await
            .unwrap();
        let _ = connection.close(200, "".into()).await;
        queue.message_count()
    }

    /// Texts the sim sent to `user`, in order.
    pub fn sent_to(&self, user: &str) -> Vec<String> {
        self.sim
            .sent_messages()
            .into_iter()
            .filter(|m| m.recipient_id == user)
            .map(|m| m.text)
            .collect()
    }

    pub async fn stop(mut self) {
        for stop in &self.stops {
            stop.notify_one();
        }
        for task in self.tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(15), task).await;
        }
        self.sim.shutdown();
        cleanup_queues(&Topology::new(self.prefix.clone())).await;
        let admin = PgPool::connect(ADMIN_DB).await.unwrap();
        let name = self.database_url.rsplit('/').next().unwrap().to_owned();
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .execute(&admin)
            .await;
    }
}

pub async fn cleanup_queues(topology: &Topology) {
    use lapin::{Connection, ConnectionProperties};
    let Ok(connection) = Connection::connect(AMQP_URL, ConnectionProperties::default()).await else {
        return;
    };
    let Ok(channel) = connection.create_channel().await else {
        return;
    };
    let _ = topology.delete(&channel).await;
    let _ = connection.close(200, "done".into()).await;
}

/// Polls until `check` holds or `limit` passes; returns whether it held.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn rand_u32() -> u32 {
    (Uuid::new_v4().as_u128() % 1_000_000) as u32
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

pub fn mid() -> String {
    format!("mid.{}", Uuid::new_v4().simple())
}

pub fn user() -> String {
    format!("{}", 10_000_000 + rand_u32())
}

/// The admin API and the OAuth flow as a test (or an operator's browser) drives them.
impl Stack {
    /// An admin API call with the right bearer token; returns the status and the JSON body (or Null).
    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.ingest_url))
            .bearer_auth(ADMIN_TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(serde_json::Value::Null);
        (status, body)
    }

    /// `POST /api/instagram/auth/url` for `customer`; the dialog URL.
    pub async fn auth_url(&self, customer: Uuid) -> String {
        let (status, body) = self
            .admin(
                reqwest::Method::POST,
                "/api/instagram/auth/url",
                Some(serde_json::json!({ "customerId": customer })),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["authUrl"].as_str().unwrap().to_owned()
    }

    /// Follows one redirect hop without following further; returns the `Location`.
    pub async fn hop(&self, url: &str) -> String {
        let browser = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let response = browser.get(url).send().await.unwrap();
        assert!(
            response.status().is_redirection(),
            "{url} answered {}",
            response.status()
        );
        response.headers()[reqwest::header::LOCATION]
            .to_str()
            .unwrap()
            .to_owned()
    }

    /// The whole browser side: dialog (sim) → callback (ingest) → the dashboard URL it ends on.
    pub async fn connect_via_oauth(&self, customer: Uuid) -> String {
        let url = self.auth_url(customer).await;
        let callback = self.hop(&url).await;
        self.hop(&callback).await
    }

    /// Status of the account's credential row.
    pub async fn credential_status(&self) -> Option<String> {
        sqlx::query_scalar("SELECT status FROM instagram_credentials WHERE account_id = $1")
            .bind(&self.account.ig_account_id)
            .fetch_optional(&self.db().await)
            .await
            .unwrap()
    }
}
