//! One AMQP connection per process, kept alive: a supervisor task connects, declares the topology,
//! opens a small pool of confirm-mode channels, and reconnects with jittered exponential backoff whenever
//! the connection or a channel dies (broker restart, network cut). Callers never hold a dead channel for
//! long: they ask for the current [`Session`] and get `None` while the broker is unreachable, which the
//! HTTP edge turns into 503 and `/readyz` into "not ready".
//!
//! Why a pool and not a channel per request: opening a channel is a broker round trip, and a channel in
//! confirm mode pipelines any number of in-flight publishes, so a handful spread the load over the
//! connection's I/O without per-request setup.

use crate::topology::Topology;
use backon::{BackoffBuilder, ExponentialBuilder};
use futures_util::StreamExt;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, Event, PublisherConfirm,
};
use secrecy::{ExposeSecret, SecretString};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// How a publish failed. Every variant means "not safely queued": the caller must not report success.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// No live connection to the broker right now.
    #[error("broker unavailable")]
    Unavailable,
    /// The broker negatively acknowledged the message (it could not store it).
    #[error("broker nacked the message")]
    Nacked,
    /// The message was returned: no queue is bound for its routing key.
    #[error("message unroutable (returned by the broker)")]
    Returned,
    /// No confirmation within the time limit.
    #[error("publish confirmation timed out")]
    Timeout,
    /// The channel or connection failed during the publish.
    #[error("broker error: {0}")]
    Broker(#[from] lapin::Error),
}

impl PublishError {
    /// A low-cardinality label for failure metrics.
    pub fn label(&self) -> &'static str {
        match self {
            PublishError::Unavailable => "unavailable",
            PublishError::Nacked => "nacked",
            PublishError::Returned => "returned",
            PublishError::Timeout => "timeout",
            PublishError::Broker(_) => "broker_error",
        }
    }
}

/// A live connection and its confirm channels. Replaced wholesale on reconnect.
#[derive(Debug)]
pub struct Session {
    /// The connection, for processes that open channels of their own (the worker's consumer).
    pub connection: Connection,
    publishers: Vec<Channel>,
    next: AtomicUsize,
    /// Increases with every reconnect, so consumers can tell a new session from the old one.
    pub generation: u64,
}

impl Session {
    /// Starts a persistent, mandatory publish on one of the pool's confirm channels and returns the
    /// pending confirmation. Many publishes may be in flight on one channel; confirms are pipelined.
    pub async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        payload: &[u8],
        properties: BasicProperties,
    ) -> Result<PublisherConfirm, PublishError> {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.publishers.len();
        let channel = &self.publishers[index];
        let options = BasicPublishOptions {
            mandatory: true,
            ..Default::default()
        };
        let properties = properties.with_delivery_mode(2);
        Ok(channel
            .basic_publish(exchange.into(), routing_key.into(), options, payload, properties)
            .await?)
    }

    fn healthy(&self) -> bool {
        self.connection.status().connected() && self.publishers.iter().all(|c| c.status().connected())
    }
}

/// Waits for a publish confirmation and turns anything but a clean ack into an error.
pub async fn confirmed(confirm: PublisherConfirm, limit: Duration) -> Result<(), PublishError> {
    match tokio::time::timeout(limit, confirm).await {
        Err(_) => Err(PublishError::Timeout),
        Ok(Err(e)) => Err(PublishError::Broker(e)),
        Ok(Ok(Confirmation::Ack(None))) => Ok(()),
        Ok(Ok(Confirmation::Ack(Some(_)))) => Err(PublishError::Returned),
        Ok(Ok(Confirmation::Nack(_))) => Err(PublishError::Nacked),
        Ok(Ok(Confirmation::NotRequested)) => Err(PublishError::Nacked),
    }
}

/// Handle to the supervised connection. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Broker {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    url: SecretString,
    name: String,
    topology: Topology,
    pool_size: usize,
    /// The current session; `None` while disconnected. A watch so consumers can await the next one.
    state: watch::Sender<Option<Arc<Session>>>,
    /// Woken when a caller saw a failure, so the supervisor checks at once instead of at its next tick.
    wake: Notify,
    closing: AtomicBool,
}

impl Broker {
    /// Starts the supervisor. Returns at once; the first connection is made in the background (see
    /// [`Broker::wait_connected`]), so a process can start while the broker is still coming up.
    pub fn start(url: SecretString, topology: Topology, name: impl Into<String>, pool_size: usize) -> Self {
        let (state, _) = watch::channel(None);
        let inner = Arc::new(Inner {
            url,
            name: name.into(),
            topology,
            pool_size: pool_size.max(1),
            state,
            wake: Notify::new(),
            closing: AtomicBool::new(false),
        });
        tokio::spawn(supervise(inner.clone()));
        Self { inner }
    }

    /// The live session, if connected.
    pub fn session(&self) -> Option<Arc<Session>> {
        let session = self.inner.state.borrow().clone()?;
        if session.healthy() {
            Some(session)
        } else {
            self.inner.wake.notify_one();
            None
        }
    }

    /// Whether a healthy connection exists right now (for `/readyz`).
    pub fn is_connected(&self) -> bool {
        self.session().is_some()
    }

    /// Waits until connected, up to `limit`.
    pub async fn wait_connected(&self, limit: Duration) -> bool {
        let mut rx = self.inner.state.subscribe();
        tokio::time::timeout(limit, rx.wait_for(|s| s.is_some()))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Follows session changes (consumers re-subscribe on each new session).
    pub fn watch(&self) -> watch::Receiver<Option<Arc<Session>>> {
        self.inner.state.subscribe()
    }

    /// Tells the supervisor something failed, so it re-checks the connection now.
    pub fn report_failure(&self) {
        self.inner.wake.notify_one();
    }

    /// Closes the connection cleanly and stops reconnecting (graceful shutdown).
    pub async fn close(&self) {
        self.inner.closing.store(true, Ordering::SeqCst);
        self.inner.wake.notify_one();
        let session = self.inner.state.send_replace(None);
        if let Some(session) = session {
            let _ = session.connection.close(200, "shutdown".into()).await;
        }
    }
}

async fn supervise(inner: Arc<Inner>) {
    let mut generation = 0;
    let mut backoff = new_backoff();
    while !inner.closing.load(Ordering::SeqCst) {
        generation += 1;
        match connect(&inner, generation).await {
            Ok(session) => {
                tracing::info!(connection = %inner.name, generation, "connected to RabbitMQ");
                backoff = new_backoff();
                let session = Arc::new(session);
                let events = session.connection.events_listener();
                inner.state.send_replace(Some(session.clone()));
                watch_until_broken(&inner, &session, events).await;
                inner.state.send_replace(None);
                if inner.closing.load(Ordering::SeqCst) {
                    break;
                }
                tracing::warn!(connection = %inner.name, generation, "RabbitMQ connection lost; reconnecting");
                let _ = session.connection.close(320, "reconnecting".into()).await;
            }
            Err(error) => {
                tracing::warn!(connection = %inner.name, %error, "cannot connect to RabbitMQ; will retry");
            }
        }
        let delay = backoff.next().unwrap_or(Duration::from_secs(5));
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = inner.wake.notified() => {}
        }
    }
}

/// Jittered exponential backoff from 100 ms up to 2 s, forever.
fn new_backoff() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        // One connection per process: reconnect attempts are cheap, and every second here is a second
        // of 503s at ingest after the broker is back (the chaos suite measured ~16 s with a 5 s cap).
        .with_max_delay(Duration::from_secs(2))
        .with_jitter()
        .without_max_times()
        .build()
}

async fn connect(inner: &Inner, generation: u64) -> Result<Session, lapin::Error> {
    let properties = ConnectionProperties::default().with_connection_name(inner.name.clone().into());
    let attempt = Connection::connect(inner.url.expose_secret(), properties);
    let connection = tokio::time::timeout(Duration::from_secs(10), attempt)
        .await
        .map_err(|_| lapin::Error::from(std::io::Error::from(std::io::ErrorKind::TimedOut)))??;
    let setup = connection.create_channel().await?;
    inner.topology.declare(&setup).await?;
    let _ = setup.close(200, "topology declared".into()).await;
    let mut publishers = Vec::with_capacity(inner.pool_size);
    for _ in 0..inner.pool_size {
        let channel = connection.create_channel().await?;
        channel.confirm_select(ConfirmSelectOptions::default()).await?;
        publishers.push(channel);
    }
    Ok(Session {
        connection,
        publishers,
        next: AtomicUsize::new(0),
        generation,
    })
}

/// Returns when the session is no longer usable: an error event, a failed health check (checked every
/// second and whenever a caller reports a failure), or shutdown.
async fn watch_until_broken(
    inner: &Inner,
    session: &Session,
    events: impl futures_util::Stream<Item = Event> + Send,
) {
    let mut events = std::pin::pin!(events);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            event = events.next() => match event {
                Some(Event::Error(error)) => {
                    tracing::warn!(connection = %inner.name, %error, "RabbitMQ connection error");
                    return;
                }
                Some(_) => {}
                None => return,
            },
            _ = tick.tick() => {}
            _ = inner.wake.notified() => {}
        }
        if inner.closing.load(Ordering::SeqCst) || !session.healthy() {
            return;
        }
    }
}
