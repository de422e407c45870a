//! The broker alone: persistent, mandatory, confirmed publishes into the quorum work queue, exactly as
//! ingest publishes them (the same topology and pooled confirm channels from `shared::amqp`), with no
//! HTTP in front. The ingest benchmark's figure minus this one is ingest's own cost; this one is the floor
//! the broker sets on this machine.

use super::{closed_loop, LoadReport, Window};
use lapin::options::QueuePurgeOptions;
use lapin::BasicProperties;
use omnidm_shared::amqp::{confirmed, Broker, PublishError};
use omnidm_shared::topology::{Topology, JOB_ROUTING_KEY};
use secrecy::SecretString;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// A broker load run's parameters.
#[derive(Debug, Clone)]
pub struct BrokerLoadOptions {
    /// RabbitMQ.
    pub amqp_url: String,
    /// Queue-name prefix of the run's own topology (purged afterwards; keep it apart from live queues).
    pub queue_prefix: String,
    /// Publishers awaiting their confirm at once (ingest's concurrent requests).
    pub concurrency: usize,
    /// Confirm-mode channels in the pool (ingest's `AMQP_PUBLISH_CHANNELS`).
    pub channels: usize,
    /// Message size; a one-DM job is about 600 bytes.
    pub payload_bytes: usize,
    /// Length of the measured period.
    pub duration: Duration,
    /// Period before it whose publishes are not counted.
    pub warmup: Duration,
}

/// Runs the publishes and reports on the measured period; a confirmed publish counts as a 200.
pub async fn run(options: &BrokerLoadOptions) -> anyhow::Result<LoadReport> {
    anyhow::ensure!(options.concurrency > 0, "concurrency must be at least 1");
    let topology = Topology::new(options.queue_prefix.clone());
    let broker = Broker::start(
        SecretString::from(options.amqp_url.clone()),
        topology.clone(),
        "omnidm-sim-bench-broker",
        options.channels,
    );
    anyhow::ensure!(
        broker.wait_connected(Duration::from_secs(10)).await,
        "cannot connect to RabbitMQ"
    );
    let payload: Arc<[u8]> = vec![b'x'; options.payload_bytes].into();
    let exchange: Arc<str> = topology.work_exchange().into();
    let start = Instant::now();
    let window = Window {
        measure_from: start + options.warmup,
        end: start + options.warmup + options.duration,
    };
    let publisher = broker.clone();
    let recorder = closed_loop(options.concurrency, window, move || {
        let (broker, exchange, payload) = (publisher.clone(), exchange.clone(), payload.clone());
        async move { publish(&broker, &exchange, &payload).await.ok().map(|()| 200) }
    })
    .await;
    if let Some(session) = broker.session() {
        let channel = session.connection.create_channel().await?;
        channel
            .queue_purge(topology.jobs_queue().into(), QueuePurgeOptions::default())
            .await?;
    }
    broker.close().await;
    Ok(recorder.into_report(options.duration))
}

async fn publish(broker: &Broker, exchange: &str, payload: &[u8]) -> Result<(), PublishError> {
    let session = broker.session().ok_or(PublishError::Unavailable)?;
    let id = uuid::Uuid::now_v7().to_string();
    let properties = BasicProperties::default()
        .with_message_id(id.into())
        .with_content_type("application/json".into());
    let confirm = session
        .publish(exchange, JOB_ROUTING_KEY, payload, properties)
        .await?;
    confirmed(confirm, Duration::from_secs(5)).await
}
