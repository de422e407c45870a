//! Building and running the ingest application: state, router, listener, graceful shutdown.

use crate::api::auth::AdminAuth;
use crate::connect::Connector;
use crate::db::Database;
use crate::metrics::Metrics;
use crate::operator::Operator;
use crate::publish::Publisher;
use crate::routes::webhook;
use axum::routing::get;
use axum::Router;
use omnidm_shared::amqp::Broker;
use omnidm_shared::config::IngestConfig;
use omnidm_shared::meta::graph::GraphApi;
use omnidm_shared::meta::graph_error::DEFAULT_THROTTLE_WAIT;
use omnidm_shared::meta::login::Login;
use omnidm_shared::ops;
use omnidm_shared::signature::WebhookVerifier;
use omnidm_shared::topology::Topology;
use secrecy::SecretString;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// How long in-flight requests may take to finish after SIGTERM before the process exits anyway.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// Time limit of one Graph call in the OAuth flow (the business owner is waiting in the browser).
const GRAPH_TIMEOUT: Duration = Duration::from_secs(15);

/// Shared by every request handler. axum clones the state for every request, so it is one `Arc`: the
/// benchmark's profile showed the field-by-field clone (keys, strings, a score of metric handles) as a
/// large share of ingest's allocations.
#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl AppState {
    /// Wraps the services for sharing.
    pub fn new(services: Services) -> Self {
        Self(Arc::new(services))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

/// What the request handlers use, built once at start.
pub struct Services {
    /// Checks webhook signatures against every configured app secret.
    pub verifier: WebhookVerifier,
    /// The handshake token from the Meta dashboard.
    pub verify_token: SecretString,
    /// Publishes verified batches.
    pub publisher: Publisher,
    /// One permit per request being published: bounds memory when the broker is slow.
    pub in_flight: Arc<Semaphore>,
    /// Metric handles.
    pub metrics: Metrics,
    /// The database (admin API, OAuth, dashboard; never the webhook path).
    pub db: Database,
    /// Checks the admin token, signs dashboard sessions.
    pub admin: AdminAuth,
    /// The "Connect Instagram" flow.
    pub connector: Connector,
    /// What people do in conversations (reply, pause, resume).
    pub operator: Operator,
}

/// The router, separate from the listener so tests can drive it directly.
pub fn router(state: AppState, broker: Broker) -> Router {
    // Readiness is the broker only: webhook intake, the part Meta depends on, needs nothing else.
    let ready: ops::Readiness = Arc::new(move || broker.is_connected());
    Router::new()
        .route(
            "/api/webhooks/instagram",
            get(webhook::verify_subscription).post(webhook::receive),
        )
        .route("/api/instagram/callback", get(crate::api::connect::callback))
        .with_state(state.clone())
        .merge(crate::api::router(state.clone()))
        .merge(crate::dashboard::router(state.clone()))
        .merge(ops::router(state.metrics.registry.clone(), ready))
}

/// The deadline of requests other than webhooks: the OAuth callback makes up to four Graph calls of
/// [`GRAPH_TIMEOUT`] each and must end in a redirect, never a 408.
const PEOPLE_REQUEST_LIMIT: Duration = Duration::from_secs(75);

/// Bounds a whole request, body included: a client that stalls mid-body gets 408 instead of holding a
/// connection and a task forever. Webhooks get `INGEST_REQUEST_TIMEOUT_MS`; the routes people use
/// (OAuth, admin, dashboard) at least [`PEOPLE_REQUEST_LIMIT`].
async fn deadline(
    axum::extract::State(webhook_limit): axum::extract::State<Duration>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let limit = if request.uri().path().starts_with("/api/webhooks/") {
        webhook_limit
    } else {
        webhook_limit.max(PEOPLE_REQUEST_LIMIT)
    };
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!("request exceeded INGEST_REQUEST_TIMEOUT_MS");
            axum::http::StatusCode::REQUEST_TIMEOUT.into_response()
        }
    }
}

/// A built, bound, not yet running ingest.
pub struct Application {
    listener: TcpListener,
    router: Router,
    broker: Broker,
    db: Database,
    limits: crate::serve::Limits,
}

impl Application {
    /// Binds the listener and starts the broker and database connections (in the background: the
    /// process is live, answers webhooks with 503 until RabbitMQ is reachable and the admin API with 503
    /// until PostgreSQL is).
    pub async fn build(config: IngestConfig) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(&config.ingest_addr).await?;
        Self::build_on(config, listener).await
    }

    /// Like [`Application::build`] on an already bound listener (when the public URL, e.g. the OAuth
    /// redirect URI, must be known before the configuration is).
    pub async fn build_on(config: IngestConfig, listener: TcpListener) -> anyhow::Result<Self> {
        config.validate()?;
        let topology = Topology::new(config.amqp.queue_prefix.clone());
        let broker = Broker::start(
            config.amqp.amqp_url.clone(),
            topology.clone(),
            "omnidm-ingest",
            config.amqp_publish_channels,
        );
        let metrics = Metrics::new();
        let publisher = Publisher::new(
            broker.clone(),
            &topology,
            config.publish_timeout(),
            metrics.clone(),
        );
        let db = Database::start(config.database.clone());
        let request_timeout = Duration::from_millis(config.ingest_request_timeout_ms);
        let graph = GraphApi::new(&config.meta, GRAPH_TIMEOUT, DEFAULT_THROTTLE_WAIT)?;
        let operator = Operator {
            db: db.clone(),
            graph: graph.clone(),
            keyring: config.crypto.keyring()?,
            publisher: publisher.clone(),
            human_pause: config.conversation.human_pause(),
            metrics: metrics.clone(),
        };
        let connector = Connector {
            db: db.clone(),
            login: Login::new(graph, config.meta.meta_login, &config.connect),
            keyring: config.crypto.keyring()?,
            publisher: publisher.clone(),
            app_url: config.connect.app_url.clone(),
            metrics: metrics.clone(),
        };
        let state = AppState::new(Services {
            verifier: config.meta.webhook_verifier()?,
            verify_token: config.instagram_webhook_verify_token.clone(),
            publisher,
            in_flight: Arc::new(Semaphore::new(config.ingest_max_in_flight as usize)),
            metrics,
            db: db.clone(),
            admin: AdminAuth::new(&config.admin_token),
            connector,
            operator,
        });
        Ok(Self {
            listener,
            router: router(state, broker.clone())
                .layer(axum::middleware::from_fn_with_state(request_timeout, deadline)),
            broker,
            db,
            limits: crate::serve::Limits {
                max_connections: config.ingest_max_connections,
                header_timeout: Duration::from_millis(config.ingest_header_timeout_ms),
            },
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The broker connection, so tests can wait until it is up.
    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// The database handle, so tests can wait until it is migrated.
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets in-flight requests finish (bounded),
    /// and closes the broker connection cleanly.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        crate::serve::serve(self.listener, self.router, self.limits, shutdown, DRAIN_LIMIT).await;
        self.broker.close().await;
        self.db.close().await;
        Ok(())
    }
}
