//! The ingest benchmark's yardstick: the *simplest correct* ingest, which the ingest issue's target is
//! stated against (ours must reach 0.8 of it). Verify the signature, one persistent, mandatory,
//! confirmed publish of the body to a quorum queue on a single confirm channel, then 200; 403 for a bad
//! signature, 503 when the broker did not confirm. No batch split, job envelope, metrics, logs or limits.
//!
//! It is not a product, only a figure to measure ours against on the same machine in the same hour:
//! this machine's speed varies by a third from one hour to the next, so an absolute figure measured
//! alone says little.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use omnidm_shared::signature::{WebhookVerifier, SIGNATURE_HEADER};
use omnidm_shared::topology::quorum_args;
use secrecy::SecretString;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// How long a publish may wait for its confirm, as ingest's default.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(5);

/// A baseline server's parameters.
#[derive(Debug, Clone)]
pub struct BaselineOptions {
    /// RabbitMQ.
    pub amqp_url: String,
    /// The quorum queue it publishes to, through the default exchange; deleted when the server stops.
    pub queue: String,
    /// The app secret webhooks are signed with.
    pub secret: String,
}

struct Baseline {
    verifier: WebhookVerifier,
    channel: Channel,
    queue: String,
}

/// Serves `POST /api/webhooks/instagram` on `listener` until `shutdown` resolves, then deletes its queue.
pub async fn serve(
    options: &BaselineOptions,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let connection = Connection::connect(&options.amqp_url, ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    channel.confirm_select(ConfirmSelectOptions::default()).await?;
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(options.queue.as_str().into(), durable, quorum_args())
        .await?;
    let state = Arc::new(Baseline {
        verifier: WebhookVerifier::new(vec![SecretString::from(options.secret.clone())]),
        channel: channel.clone(),
        queue: options.queue.clone(),
    });
    let app = Router::new()
        .route("/api/webhooks/instagram", post(receive))
        .with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    channel
        .queue_delete(options.queue.as_str().into(), QueueDeleteOptions::default())
        .await?;
    connection.close(200, "done".into()).await?;
    Ok(())
}

async fn receive(State(state): State<Arc<Baseline>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let signature = headers.get(SIGNATURE_HEADER).map(|v| v.as_bytes());
    let Ok(verified) = state.verifier.verify(signature, body) else {
        return StatusCode::FORBIDDEN;
    };
    let mandatory = BasicPublishOptions {
        mandatory: true,
        ..BasicPublishOptions::default()
    };
    let published = state
        .channel
        .basic_publish(
            "".into(),
            state.queue.as_str().into(),
            mandatory,
            verified.as_bytes(),
            BasicProperties::default().with_delivery_mode(2),
        )
        .await;
    let Ok(confirm) = published else {
        return StatusCode::SERVICE_UNAVAILABLE;
    };
    match tokio::time::timeout(CONFIRM_TIMEOUT, confirm).await {
        Ok(Ok(Confirmation::Ack(None))) => StatusCode::OK,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    }
}
