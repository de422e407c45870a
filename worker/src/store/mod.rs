//! Everything the worker reads and writes in PostgreSQL. Each function is one short statement or
//! transaction: no connection is held across an AI or Send API call.

pub mod conversations;
pub mod credentials;
pub mod messages;
