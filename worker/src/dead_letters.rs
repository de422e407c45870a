//! `worker replay-dead-letters`: puts dead-lettered jobs back on the work queue with a fresh retry budget,
//! once whatever killed them (an AI outage, a bug) is fixed. Each job is republished with confirms
//! *before* it is removed from the dead-letter queue, so a crash mid-replay loses nothing.

use lapin::options::{BasicAckOptions, BasicGetOptions, BasicNackOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::BasicProperties;
use omnidm_shared::amqp::{confirmed, Broker, PublishError};
use omnidm_shared::topology::{Topology, JOB_ROUTING_KEY};
use std::time::Duration;

/// Moves up to `limit` dead letters back to the work queue; returns how many.
pub async fn replay(broker: &Broker, topology: &Topology, limit: usize) -> Result<usize, PublishError> {
    if !broker.wait_connected(Duration::from_secs(15)).await {
        return Err(PublishError::Unavailable);
    }
    let session = broker.session().ok_or(PublishError::Unavailable)?;
    let channel = session.connection.create_channel().await?;
    let mut replayed = 0;
    while replayed < limit {
        let Some(message) = channel
            .basic_get(topology.dead_queue().into(), BasicGetOptions::default())
            .await?
        else {
            break;
        };
        let delivery = message.delivery;
        let mut headers = FieldTable::default();
        if let Some(old) = delivery.properties.headers() {
            for (key, value) in old.inner() {
                if !is_bookkeeping(key) {
                    headers.insert(key.clone(), value.clone());
                }
            }
        }
        headers.insert("x-replayed".into(), AMQPValue::Boolean(true));
        let mut properties = BasicProperties::default()
            .with_headers(headers)
            .with_content_type("application/json".into());
        if let Some(id) = delivery.properties.message_id() {
            properties = properties.with_message_id(id.clone());
        }
        let published = async {
            let confirm = session
                .publish(
                    &topology.work_exchange(),
                    JOB_ROUTING_KEY,
                    &delivery.data,
                    properties,
                )
                .await?;
            confirmed(confirm, Duration::from_secs(10)).await
        }
        .await;
        if let Err(error) = published {
            let _ = delivery
                .acker
                .nack(BasicNackOptions {
                    requeue: true,
                    ..Default::default()
                })
                .await;
            return Err(error);
        }
        delivery.acker.ack(BasicAckOptions::default()).await?;
        replayed += 1;
    }
    let _ = channel.close(200, "replay done".into()).await;
    Ok(replayed)
}

/// Retry and death bookkeeping is dropped so the job starts over with a full budget.
fn is_bookkeeping(key: &ShortString) -> bool {
    let key = key.as_str();
    key.starts_with("x-death")
        || key.starts_with("x-first-death")
        || key.starts_with("x-last-death")
        || matches!(
            key,
            "x-failures"
                | "x-waits"
                | "x-last-reason"
                | "x-dead-reason"
                | "x-dead-detail"
                | "x-delivery-count"
        )
}
