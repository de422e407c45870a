//! The RabbitMQ topology, in one place, declared idempotently by every process at (re)connect.
//!
//! ```text
//! ingest ──publish "job"──▶ {p}.work (direct) ──▶ {p}.jobs (quorum; delivery limit → {p}.dead)
//!        └─"rejected"─────▶ {p}.work ──────────▶ {p}.rejected (quorum; signed-but-unparseable bodies)
//! worker ──"{tier}"───────▶ {p}.retry (direct) ─▶ {p}.retry.{tier} (quorum, TTL) ─expires─▶ {p}.work "job"
//!        └─"dead"─────────▶ {p}.dead (direct) ──▶ {p}.dead (quorum; poison or out-of-budget jobs)
//! ```
//! Quorum queues are replicated and fsync'd before confirming, the durability we promise Meta when we
//! answer 200. Dead-lettering uses the at-least-once strategy (RabbitMQ ≥ 3.10, no plugin), so a message
//! moving between queues is never dropped. The delayed-retry tiers are plain TTL queues dead-lettering
//! back to the work exchange, so a job waiting to be retried holds no consumer slot and needs no plugin.

use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ExchangeKind};
use std::time::Duration;

/// Routing key of work jobs on the work exchange.
pub const JOB_ROUTING_KEY: &str = "job";
/// Routing key of rejected (unparseable) webhook bodies on the work exchange.
pub const REJECTED_ROUTING_KEY: &str = "rejected";
/// Routing key of dead letters on the dead exchange.
pub const DEAD_ROUTING_KEY: &str = "dead";

/// How often one job may be delivered before RabbitMQ parks it in the dead-letter queue. Counts
/// deliveries that ended without an ack (crashed or killed workers), so it bounds a poison message that
/// kills every worker that touches it, with room for several honest crashes.
pub const DELIVERY_LIMIT: i64 = 10;

/// Delays of the delayed-retry tiers, shortest first. A job waits in the first tier at least as long as
/// the wait it needs (or the longest tier, then checks again).
pub const RETRY_TIERS: [Duration; 5] = [
    Duration::from_secs(1),
    Duration::from_secs(5),
    Duration::from_secs(30),
    Duration::from_secs(120),
    Duration::from_secs(600),
];

/// Names of every exchange and queue, all starting with `QUEUE_PREFIX`.
#[derive(Debug, Clone)]
pub struct Topology {
    prefix: String,
}

impl Topology {
    /// A topology whose names all start with `prefix`.
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// The exchange ingest publishes jobs and rejected bodies to.
    pub fn work_exchange(&self) -> String {
        format!("{}.work", self.prefix)
    }

    /// The queue workers consume.
    pub fn jobs_queue(&self) -> String {
        format!("{}.jobs", self.prefix)
    }

    /// Signed bodies that were not a Meta envelope, kept for inspection.
    pub fn rejected_queue(&self) -> String {
        format!("{}.rejected", self.prefix)
    }

    /// The exchange dead letters go to (also the name of its queue).
    pub fn dead_exchange(&self) -> String {
        format!("{}.dead", self.prefix)
    }

    /// Jobs that exhausted their delivery limit or retry budget, with the reason in a header.
    pub fn dead_queue(&self) -> String {
        format!("{}.dead", self.prefix)
    }

    /// The exchange a worker publishes delayed retries to; the routing key names the tier.
    pub fn retry_exchange(&self) -> String {
        format!("{}.retry", self.prefix)
    }

    /// The routing key (and queue-name suffix) of a retry tier.
    pub fn retry_routing_key(delay: Duration) -> String {
        format!("{}s", delay.as_secs())
    }

    /// The queue of one retry tier.
    pub fn retry_queue(&self, delay: Duration) -> String {
        format!("{}.retry.{}", self.prefix, Self::retry_routing_key(delay))
    }

    /// The shortest tier at least `wait` long (or the longest tier).
    pub fn tier_for(wait: Duration) -> Duration {
        RETRY_TIERS
            .into_iter()
            .find(|tier| *tier >= wait)
            .unwrap_or(RETRY_TIERS[RETRY_TIERS.len() - 1])
    }

    /// The longest tier no longer than `wait` (or the shortest tier): for a wait that should not
    /// overshoot much, at the price of looking again once or twice.
    pub fn tier_within(wait: Duration) -> Duration {
        RETRY_TIERS
            .into_iter()
            .rev()
            .find(|tier| *tier <= wait)
            .unwrap_or(RETRY_TIERS[0])
    }

    /// Declares everything. Idempotent: redeclaring with the same arguments is a no-op, so every process
    /// calls it at every (re)connect and a fresh broker is usable without an operator step.
    pub async fn declare(&self, channel: &Channel) -> lapin::Result<()> {
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        for exchange in [self.work_exchange(), self.dead_exchange(), self.retry_exchange()] {
            channel
                .exchange_declare(
                    exchange.into(),
                    ExchangeKind::Direct,
                    durable,
                    FieldTable::default(),
                )
                .await?;
        }

        let mut jobs = quorum_args();
        jobs.insert("x-delivery-limit".into(), AMQPValue::LongLongInt(DELIVERY_LIMIT));
        dead_letter_to(&mut jobs, &self.dead_exchange(), DEAD_ROUTING_KEY);
        self.queue(
            channel,
            &self.jobs_queue(),
            jobs,
            &self.work_exchange(),
            JOB_ROUTING_KEY,
        )
        .await?;

        let rejected = quorum_args();
        self.queue(
            channel,
            &self.rejected_queue(),
            rejected,
            &self.work_exchange(),
            REJECTED_ROUTING_KEY,
        )
        .await?;

        let dead = quorum_args();
        self.queue(
            channel,
            &self.dead_queue(),
            dead,
            &self.dead_exchange(),
            DEAD_ROUTING_KEY,
        )
        .await?;

        for tier in RETRY_TIERS {
            let mut args = quorum_args();
            args.insert(
                "x-message-ttl".into(),
                AMQPValue::LongLongInt(tier.as_millis() as i64),
            );
            dead_letter_to(&mut args, &self.work_exchange(), JOB_ROUTING_KEY);
            let key = Self::retry_routing_key(tier);
            self.queue(
                channel,
                &self.retry_queue(tier),
                args,
                &self.retry_exchange(),
                &key,
            )
            .await?;
        }
        Ok(())
    }

    /// Deletes every queue (with the messages in it) and exchange of this prefix: for throwaway stacks
    /// (demo, benchmarks, chaos runs), whose random prefixes would otherwise pile up on the broker with
    /// their leftover jobs. Never for a live prefix.
    pub async fn delete(&self, channel: &Channel) -> lapin::Result<()> {
        let queues = [self.jobs_queue(), self.rejected_queue(), self.dead_queue()]
            .into_iter()
            .chain(RETRY_TIERS.iter().map(|tier| self.retry_queue(*tier)));
        for queue in queues {
            channel
                .queue_delete(queue.into(), QueueDeleteOptions::default())
                .await?;
        }
        for exchange in [self.work_exchange(), self.dead_exchange(), self.retry_exchange()] {
            channel
                .exchange_delete(exchange.into(), ExchangeDeleteOptions::default())
                .await?;
        }
        Ok(())
    }

    async fn queue(
        &self,
        channel: &Channel,
        name: &str,
        args: FieldTable,
        exchange: &str,
        routing_key: &str,
    ) -> lapin::Result<()> {
        let options = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        channel.queue_declare(name.into(), options, args).await?;
        channel
            .queue_bind(
                name.into(),
                exchange.into(),
                routing_key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
    }
}

/// Declaration arguments of a quorum queue (replicated, durable; what every queue here is).
pub fn quorum_args() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), long_string("quorum"));
    args
}

/// At-least-once dead-lettering: the message leaves the source queue only once the target confirmed it.
/// RabbitMQ requires `reject-publish` overflow for this strategy.
fn dead_letter_to(args: &mut FieldTable, exchange: &str, routing_key: &str) {
    args.insert("x-dead-letter-exchange".into(), long_string(exchange));
    args.insert("x-dead-letter-routing-key".into(), long_string(routing_key));
    args.insert("x-dead-letter-strategy".into(), long_string("at-least-once"));
    args.insert("x-overflow".into(), long_string("reject-publish"));
}

fn long_string(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

/// Reads a string header (as we write them: long strings), for reasons and ids carried in headers.
pub fn header_str<'a>(headers: Option<&'a FieldTable>, name: &str) -> Option<&'a str> {
    let key = ShortString::from(name);
    match headers?.inner().get(&key)? {
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok(),
        AMQPValue::ShortString(s) => Some(s.as_str()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_starts_with_the_prefix() {
        let t = Topology::new("t1");
        let mut names = vec![
            t.work_exchange(),
            t.jobs_queue(),
            t.rejected_queue(),
            t.dead_queue(),
            t.retry_exchange(),
        ];
        names.extend(RETRY_TIERS.iter().map(|d| t.retry_queue(*d)));
        assert!(names.iter().all(|n| n.starts_with("t1.")));
    }

    #[test]
    fn a_wait_that_must_not_overshoot_picks_the_longest_tier_within_it() {
        assert_eq!(
            Topology::tier_within(Duration::from_secs(40)),
            Duration::from_secs(30)
        );
        assert_eq!(
            Topology::tier_within(Duration::from_secs(5)),
            Duration::from_secs(5)
        );
        assert_eq!(
            Topology::tier_within(Duration::from_millis(200)),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn a_wait_picks_the_shortest_tier_that_covers_it() {
        assert_eq!(Topology::tier_for(Duration::ZERO), Duration::from_secs(1));
        assert_eq!(Topology::tier_for(Duration::from_secs(3)), Duration::from_secs(5));
        assert_eq!(
            Topology::tier_for(Duration::from_secs(3600)),
            Duration::from_secs(600)
        );
    }
}
