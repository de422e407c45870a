//! `omnidm_sim`: a deterministic, fast stand-in for the outside world on loopback.
//!
//! Integration tests, the demo and the benchmarks need Meta (Graph API, Send API, the OAuth dialog and
//! webhook deliveries) and an OpenAI-compatible AI without the internet, without rate limits and with
//! failures on demand. [`Sim::start`] serves all of them from one axum server and returns a [`SimHandle`]
//! through which a test inspects what the service did and injects faults; the same controls are reachable
//! from other processes under `/_sim/` ([`control`]). [`webhook`] builds and signs Meta-shaped deliveries
//! and [`load`] drives them at a target for benchmarks.
//!
//! Module map:
//! * [`server`] / [`handle`]: starting the server and the in-process control surface.
//! * [`graph`]: the Graph API fake (Send API, Handover Protocol, OAuth, pages, subscriptions, profiles).
//! * [`ai`]: the chat-completions fake.
//! * [`fault`]: what can go wrong, and when.
//! * [`account`], [`records`]: the data the sim holds and records; `threads`: who controls each
//!   conversation (Handover Protocol) and which customers are on Messenger.

pub mod account;
pub mod ai;
pub mod bench;
pub mod chaos;
pub mod control;
pub mod demo;
pub mod fault;
pub mod graph;
pub mod handle;
pub mod load;
pub mod meta_error;
pub mod records;
pub mod server;
pub mod stack;
mod state;
mod threads;
pub mod webhook;

pub use account::SimAccount;
pub use fault::{Fault, FaultTarget};
pub use handle::SimHandle;
pub use records::{
    AiRequest, ChatMessage, EchoDelivery, GraphRequest, RejectedSend, SenderAction, SentMessage, SimCounters,
    ThreadControlCall,
};
pub use server::{EchoMode, Sim, SimOptions};
pub use threads::PAGE_INBOX_APP_ID;
