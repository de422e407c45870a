//! Consuming the work queue: bounded concurrency (prefetch = `WORKER_CONCURRENCY`), one task per
//! delivery, and the outcome applied only after it is committed: ack, a delayed retry (republished with
//! confirms, then acked), or the dead-letter queue with the reason in a header.
//!
//! Survives broker restarts: when the connection drops, in-flight deliveries are simply redelivered to
//! whoever consumes next (every effect is idempotent), and consumption resumes on the next session.

use crate::context::{Attempt, Context, Outcome};
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::BasicProperties;
use omnidm_shared::amqp::{confirmed, Broker, PublishError};
use omnidm_shared::job::Job;
use omnidm_shared::topology::{header_str, Topology, DEAD_ROUTING_KEY, RETRY_TIERS};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;

const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings of the consume loop.
#[derive(Clone)]
pub struct Consumer {
    /// Per-job processing.
    pub ctx: Context,
    /// The supervised broker connection.
    pub broker: Broker,
    /// Queue names.
    pub topology: Topology,
    /// Deliveries in flight at once.
    pub concurrency: u16,
    /// Failed attempts before dead-lettering.
    pub max_failures: u32,
    /// Bound on finishing in-flight jobs at shutdown.
    pub drain: Duration,
}

impl Consumer {
    /// Consumes until `stop` turns true, then stops taking deliveries and waits (bounded) for in-flight
    /// jobs; whatever is still running then is redelivered to another worker.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut sessions = self.broker.watch();
        let mut tasks = JoinSet::new();
        'sessions: loop {
            if *stop.borrow() {
                break;
            }
            let session = tokio::select! {
                s = next_session(&mut sessions) => match s { Some(s) => s, None => break },
                _ = stopped(&mut stop) => break,
            };
            let channel = match self.open(&session.connection).await {
                Ok(c) => c,
                Err(error) => {
                    tracing::warn!(%error, "cannot start consuming; retrying");
                    self.broker.report_failure();
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let (channel, mut consumer) = channel;
            tracing::info!(queue = %self.topology.jobs_queue(), generation = session.generation, "consuming");
            loop {
                tokio::select! {
                    delivery = consumer.next() => match delivery {
                        Some(Ok(delivery)) => {
                            let this = self.clone();
                            tasks.spawn(async move { this.handle(delivery).await });
                        }
                        Some(Err(error)) => {
                            tracing::warn!(%error, "consumer error; resubscribing");
                            self.broker.report_failure();
                            continue 'sessions;
                        }
                        None => {
                            self.broker.report_failure();
                            continue 'sessions;
                        }
                    },
                    Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                    _ = stopped(&mut stop) => {
                        let _ = channel.basic_cancel(consumer.tag(), BasicCancelOptions::default()).await;
                        break 'sessions;
                    }
                }
            }
        }
        let drained =
            tokio::time::timeout(self.drain, async { while tasks.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!(
                left = tasks.len(),
                "drain limit reached; unfinished jobs will be redelivered"
            );
            tasks.abort_all();
        }
    }

    async fn open(&self, connection: &lapin::Connection) -> lapin::Result<(lapin::Channel, lapin::Consumer)> {
        let channel = connection.create_channel().await?;
        channel
            .basic_qos(self.concurrency, BasicQosOptions::default())
            .await?;
        let consumer = channel
            .basic_consume(
                self.topology.jobs_queue().into(),
                ShortString::from(format!("omnidm-worker-{}", self.ctx.worker_id)),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok((channel, consumer))
    }

    async fn handle(&self, delivery: Delivery) {
        let started = Instant::now();
        let attempt = Attempt {
            failures: header_u32(delivery.properties.headers().as_ref(), "x-failures"),
            waits: header_u32(delivery.properties.headers().as_ref(), "x-waits"),
        };
        let outcome = match Job::from_slice(&delivery.data) {
            Ok(Job::V1(job)) => {
                let span = tracing::info_span!("job", job_id = %job.job_id, entry_id = %job.entry_id, kind = tracing::field::Empty);
                crate::handle::process(&self.ctx, &job, attempt)
                    .instrument(span)
                    .await
            }
            Ok(Job::Resume(job)) => {
                let span =
                    tracing::info_span!("job", job_id = %job.job_id, credential_id = %job.credential_id);
                crate::resume::process(&self.ctx, job.credential_id)
                    .instrument(span)
                    .await
            }
            Ok(Job::Send(job)) => {
                let span =
                    tracing::info_span!("job", job_id = %job.job_id, conversation_id = %job.conversation_id);
                crate::reply::run(&self.ctx, job.conversation_id)
                    .instrument(span)
                    .await
            }
            Err(error) => Outcome::Dead {
                reason: "unparseable",
                detail: format!("not a job: {error}"),
            },
        };
        let label = match self.settle(&delivery, outcome, attempt).await {
            Ok(label) => label,
            Err(error) => {
                tracing::warn!(%error, "cannot settle a job; returning it to the queue");
                let _ = delivery
                    .acker
                    .nack(BasicNackOptions {
                        requeue: true,
                        ..Default::default()
                    })
                    .await;
                "requeued"
            }
        };
        self.ctx.metrics.jobs.with_label_values(&[label]).inc();
        self.ctx
            .metrics
            .job_duration
            .with_label_values(&[label])
            .observe(started.elapsed().as_secs_f64());
    }

    async fn settle(
        &self,
        delivery: &Delivery,
        outcome: Outcome,
        attempt: Attempt,
    ) -> Result<&'static str, SettleError> {
        let metrics = &self.ctx.metrics;
        let label = match outcome {
            Outcome::Done => "done",
            Outcome::Wait { after, reason } => {
                let next = Attempt {
                    waits: attempt.waits + 1,
                    ..attempt
                };
                self.republish_delayed(delivery, Topology::tier_for(after), next, reason)
                    .await?;
                metrics.retries.with_label_values(&[reason]).inc();
                "retried"
            }
            Outcome::Failed { reason, detail } => {
                let next = Attempt {
                    failures: attempt.failures + 1,
                    ..attempt
                };
                if next.failures >= self.max_failures {
                    tracing::error!(reason, %detail, failures = next.failures, "retry budget spent; dead-lettering");
                    self.dead_letter(delivery, "retry_budget", &detail).await?;
                    metrics.dead_lettered.with_label_values(&["retry_budget"]).inc();
                    "dead_lettered"
                } else {
                    let tier = RETRY_TIERS[(next.failures as usize - 1).min(RETRY_TIERS.len() - 1)];
                    tracing::warn!(reason, %detail, failures = next.failures, retry_in = ?tier, "job failed; retrying later");
                    self.republish_delayed(delivery, tier, next, reason).await?;
                    metrics.retries.with_label_values(&[reason]).inc();
                    "retried"
                }
            }
            Outcome::Dead { reason, detail } => {
                tracing::error!(reason, %detail, "job can never succeed; dead-lettering");
                self.dead_letter(delivery, reason, &detail).await?;
                metrics.dead_lettered.with_label_values(&[reason]).inc();
                "dead_lettered"
            }
        };
        delivery.acker.ack(BasicAckOptions::default()).await?;
        Ok(label)
    }

    async fn republish_delayed(
        &self,
        delivery: &Delivery,
        tier: Duration,
        attempt: Attempt,
        reason: &str,
    ) -> Result<(), SettleError> {
        let mut headers = delivery.properties.headers().clone().unwrap_or_default();
        headers.insert(
            "x-failures".into(),
            AMQPValue::LongLongInt(attempt.failures.into()),
        );
        headers.insert("x-waits".into(), AMQPValue::LongLongInt(attempt.waits.into()));
        headers.insert(
            "x-last-reason".into(),
            AMQPValue::LongString(LongString::from(reason)),
        );
        let key = Topology::retry_routing_key(tier);
        self.publish(&self.topology.retry_exchange(), &key, delivery, headers)
            .await
    }

    async fn dead_letter(&self, delivery: &Delivery, reason: &str, detail: &str) -> Result<(), SettleError> {
        let mut headers = delivery.properties.headers().clone().unwrap_or_default();
        headers.insert(
            "x-dead-reason".into(),
            AMQPValue::LongString(LongString::from(reason)),
        );
        headers.insert(
            "x-dead-detail".into(),
            AMQPValue::LongString(LongString::from(detail)),
        );
        self.publish(
            &self.topology.dead_exchange(),
            DEAD_ROUTING_KEY,
            delivery,
            headers,
        )
        .await
    }

    async fn publish(
        &self,
        exchange: &str,
        key: &str,
        delivery: &Delivery,
        headers: FieldTable,
    ) -> Result<(), SettleError> {
        let session = self.broker.session().ok_or(PublishError::Unavailable)?;
        let mut properties = BasicProperties::default()
            .with_headers(headers)
            .with_content_type("application/json".into());
        if let Some(id) = delivery.properties.message_id() {
            properties = properties.with_message_id(id.clone());
        }
        let confirm = session.publish(exchange, key, &delivery.data, properties).await?;
        Ok(confirmed(confirm, CONFIRM_TIMEOUT).await?)
    }
}

/// Why a job's outcome could not be recorded with the broker (it is then requeued).
#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    /// Publishing the retry or dead letter failed.
    #[error("publish: {0}")]
    Publish(#[from] PublishError),
    /// Acking failed.
    #[error("ack: {0}")]
    Ack(#[from] lapin::Error),
}

fn header_u32(headers: Option<&FieldTable>, name: &str) -> u32 {
    let key = ShortString::from(name);
    match headers.and_then(|h| h.inner().get(&key)) {
        Some(AMQPValue::LongLongInt(n)) => u32::try_from(*n).unwrap_or(0),
        Some(AMQPValue::LongInt(n)) => u32::try_from(*n).unwrap_or(0),
        Some(_) | None => header_str(headers, name)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
    }
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn next_session(
    sessions: &mut watch::Receiver<Option<std::sync::Arc<omnidm_shared::amqp::Session>>>,
) -> Option<std::sync::Arc<omnidm_shared::amqp::Session>> {
    sessions
        .wait_for(|s| s.is_some())
        .await
        .ok()
        .and_then(|s| s.clone())
}
