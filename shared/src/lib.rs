//! Omniops DM's shared library: everything both `ingest` and `worker` must agree on.
//!
//! One module per concept: configuration, the queue topology, the job message, Meta's payload types,
//! webhook signatures, token encryption, the database, AMQP connection management and telemetry.

pub mod account_events;
pub mod amqp;
pub mod chunk;
pub mod config;
pub mod crypto;
pub mod db;
pub mod job;
pub mod meta;
pub mod ops;
pub mod policy;
pub mod signature;
pub mod states;
pub mod telemetry;
pub mod topology;
pub mod transitions;
