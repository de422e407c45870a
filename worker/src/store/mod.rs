//! Everything the worker reads and writes in PostgreSQL. Each function is one short statement or
//! transaction: no connection is held across an AI or Send API call. The writes every DM makes have
//! a batched form that [`batch`] feeds from many concurrent jobs at once.

pub mod batch;
pub mod conversations;
pub mod credentials;
pub mod messages;
pub mod notifications;
