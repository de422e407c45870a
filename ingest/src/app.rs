//! Building and running the ingest application: state, router, listener, graceful shutdown.

use crate::metrics::Metrics;
use crate::publish::Publisher;
use crate::routes::webhook;
use axum::routing::get;
use axum::Router;
use omnidm_shared::amqp::Broker;
use omnidm_shared::config::IngestConfig;
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

/// Shared by every request handler.
#[derive(Clone)]
pub struct AppState {
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
}

/// The router, separate from the listener so tests can drive it directly.
pub fn router(state: AppState, broker: Broker) -> Router {
    let ready: ops::Readiness = Arc::new(move || broker.is_connected());
    Router::new()
        .route(
            "/api/webhooks/instagram",
            get(webhook::verify_subscription).post(webhook::receive),
        )
        .with_state(state.clone())
        .merge(ops::router(state.metrics.registry.clone(), ready))
}

/// A built, bound, not yet running ingest.
pub struct Application {
    listener: TcpListener,
    router: Router,
    broker: Broker,
}

impl Application {
    /// Binds the listener and starts the broker connection (in the background: the process is live and
    /// answers 503 until RabbitMQ is reachable).
    pub async fn build(config: IngestConfig) -> anyhow::Result<Self> {
        config.validate()?;
        let topology = Topology::new(config.amqp.queue_prefix.clone());
        let broker = Broker::start(
            config.amqp.amqp_url.clone(),
            topology.clone(),
            "omnidm-ingest",
            config.amqp_publish_channels,
        );
        let metrics = Metrics::new();
        let state = AppState {
            verifier: config.meta.webhook_verifier()?,
            verify_token: config.instagram_webhook_verify_token.clone(),
            publisher: Publisher::new(
                broker.clone(),
                &topology,
                config.publish_timeout(),
                metrics.clone(),
            ),
            in_flight: Arc::new(Semaphore::new(config.ingest_max_in_flight as usize)),
            metrics,
        };
        let listener = TcpListener::bind(&config.ingest_addr).await?;
        Ok(Self {
            listener,
            router: router(state, broker.clone()),
            broker,
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

    /// Serves until `shutdown` resolves, then stops accepting, lets in-flight requests finish (bounded),
    /// and closes the broker connection cleanly.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
        let shutdown = async move {
            shutdown.await;
            let _ = stopping_tx.send(());
        };
        let serve = axum::serve(self.listener, self.router).with_graceful_shutdown(shutdown);
        let drain_deadline = async move {
            if stopping_rx.await.is_ok() {
                tokio::time::sleep(DRAIN_LIMIT).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            result = serve => result?,
            _ = drain_deadline => tracing::warn!("drain limit reached; exiting with requests in flight"),
        }
        self.broker.close().await;
        Ok(())
    }
}
