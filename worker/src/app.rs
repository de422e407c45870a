//! Building and running a worker process: database, broker, clients, the consumer and the
//! metrics/health server, with a bounded graceful drain on SIGTERM.

use crate::ai::AiClient;
use crate::consumer::Consumer;
use crate::context::{Context, Writes};
use crate::graph::GraphClient;
use crate::metrics::Metrics;
use omnidm_shared::amqp::Broker;
use omnidm_shared::config::WorkerConfig;
use omnidm_shared::db;
use omnidm_shared::meta::graph::GraphApi;
use omnidm_shared::ops;
use omnidm_shared::topology::Topology;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use uuid::Uuid;

/// A built worker, ready to run.
pub struct Application {
    listener: TcpListener,
    consumer: Consumer,
    db_ok: Arc<AtomicBool>,
    token_check_interval: Duration,
    reconcile_interval: Duration,
}

impl Application {
    /// Connects to PostgreSQL (creating and migrating it if needed), starts the broker connection, and
    /// binds the metrics/health listener.
    pub async fn build(config: WorkerConfig) -> anyhow::Result<Self> {
        config.validate()?;
        let pool = db::connect_and_migrate_planned(&config.database, db::Planning::OncePerConnection).await?;
        let topology = Topology::new(config.amqp.queue_prefix.clone());
        let broker = Broker::start(config.amqp.amqp_url.clone(), topology.clone(), "omnidm-worker", 2);
        let metrics = Metrics::new();
        let ctx = Context {
            writes: Writes::start(&pool, &metrics, config.context_messages),
            routes: Arc::default(),
            pool,
            keyring: config.crypto.keyring()?,
            ai: AiClient::new(&config.ai),
            graph: GraphClient::new(GraphApi::new(
                &config.meta,
                Duration::from_millis(config.send_timeout_ms),
                Duration::from_secs(config.throttle_default_seconds),
            )?),
            metrics,
            worker_id: Uuid::new_v4(),
            debounce: config.debounce(),
            human_pause: config.conversation.human_pause(),
            app_id: config.instagram_app_id.clone().filter(|id| !id.trim().is_empty()),
            context_messages: config.context_messages,
            max_reply_chunks: config.max_reply_chunks,
            max_burst: config.ai_max_burst_messages,
            replies_per_minute: config.ai_replies_per_minute,
            lease: config.lease(),
        };
        let consumer = Consumer {
            ctx,
            broker,
            topology,
            concurrency: config.worker_concurrency,
            max_failures: config.job_max_failures,
            drain: Duration::from_secs(config.worker_drain_seconds),
        };
        let listener = TcpListener::bind(&config.worker_addr).await?;
        Ok(Self {
            listener,
            consumer,
            db_ok: Arc::new(AtomicBool::new(true)),
            token_check_interval: Duration::from_secs(config.token_check_interval_seconds),
            reconcile_interval: Duration::from_secs(config.reconcile_interval_seconds),
        })
    }

    /// The metrics/health server's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The broker connection.
    pub fn broker(&self) -> &Broker {
        &self.consumer.broker
    }

    /// The job-processing context (tests drive single steps with it).
    pub fn context(&self) -> &Context {
        &self.consumer.ctx
    }

    /// Runs until `shutdown` resolves, then drains (bounded) and closes connections.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let broker = self.consumer.broker.clone();
        let pool = self.consumer.ctx.pool.clone();
        let ready: ops::Readiness = {
            let (broker, db_ok) = (broker.clone(), self.db_ok.clone());
            Arc::new(move || broker.is_connected() && db_ok.load(Ordering::Relaxed))
        };
        let probe = tokio::spawn(probe_database(pool.clone(), self.db_ok.clone()));
        let router = ops::router(self.consumer.ctx.metrics.registry.clone(), ready);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let server = tokio::spawn({
            let mut stop = stop_rx.clone();
            async move {
                let _ = axum::serve(self.listener, router)
                    .with_graceful_shutdown(async move {
                        let _ = stop.wait_for(|s| *s).await;
                    })
                    .await;
            }
        });
        let lifecycle = tokio::spawn(crate::lifecycle::run(
            self.consumer.ctx.clone(),
            self.token_check_interval,
            stop_rx.clone(),
        ));
        let reconciler = tokio::spawn(crate::reconcile::run(
            self.consumer.ctx.clone(),
            self.consumer.broker.clone(),
            self.consumer.topology.clone(),
            self.reconcile_interval,
            stop_rx.clone(),
        ));
        let notifier = tokio::spawn(crate::notify::run(self.consumer.ctx.clone(), stop_rx.clone()));
        let consuming = tokio::spawn(self.consumer.run(stop_rx));
        shutdown.await;
        tracing::info!("draining in-flight jobs");
        let _ = stop_tx.send(true);
        let _ = consuming.await;
        let _ = lifecycle.await;
        let _ = reconciler.await;
        let _ = notifier.await;
        broker.close().await;
        probe.abort();
        pool.close().await;
        let _ = server.await;
        Ok(())
    }
}

async fn probe_database(pool: sqlx::PgPool, ok: Arc<AtomicBool>) {
    loop {
        let healthy = tokio::time::timeout(Duration::from_secs(3), crate::store::ping(&pool))
            .await
            .is_ok_and(|r| r.is_ok());
        ok.store(healthy, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}
