//! Turning a verified webhook into durable jobs: split the batch, publish every event with publisher
//! confirms, and report success only when the broker has confirmed *all* of them.
//!
//! All publishes of a request are started before any confirmation is awaited, so a batch costs one
//! broker round trip, not one per event.

use crate::metrics::Metrics;
use bytes::Bytes;
use futures_util::future::try_join_all;
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::BasicProperties;
use omnidm_shared::amqp::{confirmed, Broker, PublishError};
use omnidm_shared::job::{Job, JobV1, ResumeJob, SendJob};
use omnidm_shared::meta::envelope::{self, Batch};
use omnidm_shared::signature::VerifiedBody;
use omnidm_shared::topology::{Topology, JOB_ROUTING_KEY, REJECTED_ROUTING_KEY};
use std::time::Duration;
use uuid::Uuid;

/// What happened to a verified body.
#[derive(Debug, PartialEq, Eq)]
pub enum Published {
    /// Every event is in the work queue (the count may be zero for an empty batch).
    Events(usize),
    /// The body was not a Meta envelope and is kept in the rejected queue.
    Rejected,
}

/// Publishes verified bodies to the topology's exchanges.
#[derive(Clone)]
pub struct Publisher {
    broker: Broker,
    exchange: String,
    confirm_timeout: Duration,
    metrics: Metrics,
}

impl Publisher {
    /// A publisher over a supervised broker connection.
    pub fn new(broker: Broker, topology: &Topology, confirm_timeout: Duration, metrics: Metrics) -> Self {
        Self {
            broker,
            exchange: topology.work_exchange(),
            confirm_timeout,
            metrics,
        }
    }

    /// Splits and publishes `body`. Any error means nothing can be promised: answer 503 so Meta retries
    /// the whole batch (the worker deduplicates events that did get through).
    pub async fn publish(&self, body: VerifiedBody, received_at_ms: i64) -> Result<Published, PublishError> {
        let bytes = body.into_bytes();
        match envelope::split(&bytes) {
            Ok(batch) => self
                .publish_batch(batch, received_at_ms)
                .await
                .map(Published::Events),
            Err(error) => {
                tracing::warn!(%error, bytes = bytes.len(), "signed body is not a Meta envelope; keeping it in the rejected queue");
                self.publish_rejected(bytes, &error.to_string(), received_at_ms)
                    .await?;
                Ok(Published::Rejected)
            }
        }
    }

    async fn publish_batch(&self, batch: Batch<'_>, received_at_ms: i64) -> Result<usize, PublishError> {
        if batch.events.is_empty() {
            return Ok(0);
        }
        let session = self.broker.session().ok_or(PublishError::Unavailable)?;
        let mut confirms = Vec::with_capacity(batch.events.len());
        for event in &batch.events {
            let job_id = Uuid::now_v7();
            let job = Job::V1(JobV1 {
                job_id,
                object: batch.object.clone(),
                entry_id: event.entry_id.clone(),
                source: event.source,
                received_at_ms,
                recovered: false,
                event: event.event,
            });
            let properties = BasicProperties::default()
                .with_message_id(job_id.to_string().into())
                .with_content_type("application/json".into())
                .with_timestamp(received_at_ms.max(0) as u64 / 1000);
            let confirm = session
                .publish(&self.exchange, JOB_ROUTING_KEY, &job.to_vec(), properties)
                .await
                .inspect_err(|_| self.broker.report_failure())?;
            confirms.push(confirmed(confirm, self.confirm_timeout));
        }
        try_join_all(confirms).await.inspect_err(|e| {
            if matches!(e, PublishError::Broker(_) | PublishError::Timeout) {
                self.broker.report_failure();
            }
        })?;
        for event in &batch.events {
            self.metrics
                .events_published
                .with_label_values(&[event.source.as_str()])
                .inc();
        }
        Ok(batch.events.len())
    }

    /// Queues a resume job for a reconnected account (its parked replies go out now).
    pub async fn publish_resume(&self, credential_id: Uuid) -> Result<(), PublishError> {
        let job_id = Uuid::now_v7();
        let job = Job::Resume(ResumeJob {
            job_id,
            credential_id,
        });
        self.publish_own(job_id, &job).await
    }

    /// Publishes a send job: a conversation has a person's reply queued (operator API).
    pub async fn publish_send(&self, conversation_id: Uuid) -> Result<(), PublishError> {
        let job_id = Uuid::now_v7();
        let job = Job::Send(SendJob {
            job_id,
            conversation_id,
        });
        self.publish_own(job_id, &job).await
    }

    /// Publishes a job of our own (not a Meta event) and waits for the broker's confirm.
    async fn publish_own(&self, job_id: Uuid, job: &Job<'_>) -> Result<(), PublishError> {
        let session = self.broker.session().ok_or(PublishError::Unavailable)?;
        let properties = BasicProperties::default()
            .with_message_id(job_id.to_string().into())
            .with_content_type("application/json".into());
        let confirm = session
            .publish(&self.exchange, JOB_ROUTING_KEY, &job.to_vec(), properties)
            .await
            .inspect_err(|_| self.broker.report_failure())?;
        confirmed(confirm, self.confirm_timeout).await
    }

    async fn publish_rejected(
        &self,
        body: Bytes,
        reason: &str,
        received_at_ms: i64,
    ) -> Result<(), PublishError> {
        let session = self.broker.session().ok_or(PublishError::Unavailable)?;
        let mut headers = FieldTable::default();
        headers.insert(
            "x-reject-reason".into(),
            AMQPValue::LongString(LongString::from(reason)),
        );
        headers.insert("x-received-at-ms".into(), AMQPValue::LongLongInt(received_at_ms));
        let properties = BasicProperties::default()
            .with_message_id(Uuid::now_v7().to_string().into())
            .with_headers(headers);
        let confirm = session
            .publish(&self.exchange, REJECTED_ROUTING_KEY, &body, properties)
            .await
            .inspect_err(|_| self.broker.report_failure())?;
        confirmed(confirm, self.confirm_timeout).await
    }
}
