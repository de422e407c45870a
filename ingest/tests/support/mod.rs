//! Test harness: an ingest on a free port with its own queue prefix, a way to read the queues, and a TCP
//! proxy in front of RabbitMQ that a test can cut to simulate a broker outage without disturbing the
//! other tests sharing the broker.
#![allow(dead_code, missing_docs)]

use lapin::options::{BasicAckOptions, BasicGetOptions};
use lapin::{Connection, ConnectionProperties};
use omnidm_ingest::Application;
use omnidm_shared::config::{
    AmqpConfig, ConnectConfig, CryptoConfig, DatabaseConfig, IngestConfig, LogFormat, MetaConfig, MetaLogin,
    TelemetryConfig,
};
use omnidm_shared::topology::Topology;
use secrecy::SecretString;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

pub const SECRET: &str = "test_app_secret_123";
pub const ROTATED_SECRET: &str = "previous_secret_456";
pub const VERIFY_TOKEN: &str = "meatyhamhock";
pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/../fixtures/meta/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

pub fn unique_prefix() -> String {
    format!("t_{}", uuid::Uuid::new_v4().simple())
}

pub struct TestIngest {
    pub url: String,
    pub prefix: String,
    pub client: reqwest::Client,
    shutdown: Arc<Notify>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

pub fn config(amqp_url: &str, prefix: &str) -> IngestConfig {
    IngestConfig {
        ingest_addr: "127.0.0.1:0".into(),
        instagram_webhook_verify_token: SecretString::from(VERIFY_TOKEN.to_string()),
        ingest_max_in_flight: 1024,
        publish_timeout_ms: 3_000,
        amqp_publish_channels: 2,
        ingest_max_connections: 1_000,
        ingest_header_timeout_ms: 2_000,
        ingest_request_timeout_ms: 10_000,
        admin_token: SecretString::from(ADMIN_TOKEN.to_string()),
        conversation: omnidm_shared::config::ConversationConfig {
            human_pause_minutes: 60,
        },
        connect: ConnectConfig {
            instagram_app_id: "test-app".into(),
            instagram_redirect_uri: "http://127.0.0.1:9/api/instagram/callback".into(),
            app_url: "http://127.0.0.1:9".into(),
            meta_oauth_dialog_url: "http://127.0.0.1:9/dialog/oauth".into(),
            meta_instagram_authorize_url: "http://127.0.0.1:9/instagram/oauth/authorize".into(),
            meta_instagram_token_url: "http://127.0.0.1:9/instagram/oauth/access_token".into(),
        },
        // Webhook intake never needs the database: these tests point at none.
        database: DatabaseConfig {
            database_url: SecretString::from("postgres://postgres@127.0.0.1:9/none".to_string()),
            database_max_connections: 1,
        },
        crypto: CryptoConfig {
            encryption_key: SecretString::from(omnidm_shared::crypto::generate_key_base64()),
            encryption_keys_previous: SecretString::from(String::new()),
        },
        amqp: AmqpConfig {
            amqp_url: SecretString::from(amqp_url.to_string()),
            queue_prefix: prefix.into(),
        },
        meta: MetaConfig {
            instagram_app_secret: SecretString::from(format!("{SECRET},{ROTATED_SECRET}")),
            meta_graph_url: "http://127.0.0.1:9/graph".into(),
            meta_login: MetaLogin::Facebook,
            meta_instagram_graph_url: "http://127.0.0.1:9/ig-graph".into(),
        },
        telemetry: TelemetryConfig {
            log_format: LogFormat::Text,
        },
    }
}

impl TestIngest {
    pub async fn spawn() -> Self {
        Self::spawn_with(config(AMQP_URL, &unique_prefix()), true).await
    }

    pub async fn spawn_with(config: IngestConfig, wait_for_broker: bool) -> Self {
        let prefix = config.amqp.queue_prefix.clone();
        let app = Application::build(config).await.expect("ingest builds");
        if wait_for_broker {
            assert!(
                app.broker().wait_connected(Duration::from_secs(10)).await,
                "broker connection"
            );
        }
        let url = format!("http://{}", app.local_addr());
        let shutdown = Arc::new(Notify::new());
        let signal = shutdown.clone();
        let task = tokio::spawn(app.run_until(async move { signal.notified().await }));
        Self {
            url,
            prefix,
            // Below the test ingest's 2 s header deadline, which closes idle keep-alive connections.
            client: reqwest::Client::builder()
                .pool_idle_timeout(Duration::from_millis(1_000))
                .build()
                .unwrap(),
            shutdown,
            task,
        }
    }

    pub fn topology(&self) -> Topology {
        Topology::new(self.prefix.clone())
    }

    pub async fn post_signed(&self, body: &[u8], secret: &str) -> reqwest::Response {
        let signature = omnidm_shared::signature::sign(secret.as_bytes(), body);
        self.post(body, Some(&signature)).await
    }

    pub async fn post(&self, body: &[u8], signature: Option<&str>) -> reqwest::Response {
        let mut request = self
            .client
            .post(format!("{}/api/webhooks/instagram", self.url))
            .header("content-type", "application/json")
            .body(body.to_vec());
        if let Some(signature) = signature {
            request = request.header("x-hub-signature-256", signature);
        }
        request.send().await.expect("request reaches ingest")
    }

    pub async fn metrics(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn stop(self) {
        self.shutdown.notify_one();
        let _ = tokio::time::timeout(Duration::from_secs(15), self.task).await;
        delete_queues(&Topology::new(self.prefix)).await;
    }
}

/// A message read back from a queue.
pub struct Received {
    pub body: Vec<u8>,
    pub headers: Option<lapin::types::FieldTable>,
    pub message_id: Option<String>,
}

/// Reads (and acks) everything currently in `queue`, waiting up to a second for stragglers.
pub async fn drain(queue: &str) -> Vec<Received> {
    let connection = Connection::connect(AMQP_URL, ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    loop {
        match channel
            .basic_get(queue.into(), BasicGetOptions::default())
            .await
            .unwrap()
        {
            Some(message) => {
                let delivery = message.delivery;
                out.push(Received {
                    body: delivery.data.clone(),
                    headers: delivery.properties.headers().clone(),
                    message_id: delivery
                        .properties
                        .message_id()
                        .as_ref()
                        .map(|s| s.as_str().to_owned()),
                });
                delivery.acker.ack(BasicAckOptions::default()).await.unwrap();
            }
            None if tokio::time::Instant::now() > deadline => break,
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let _ = connection.close(200, "done".into()).await;
    out
}

pub async fn delete_queues(topology: &Topology) {
    let Ok(connection) = Connection::connect(AMQP_URL, ConnectionProperties::default()).await else {
        return;
    };
    let Ok(channel) = connection.create_channel().await else {
        return;
    };
    let _ = topology.delete(&channel).await;
    let _ = connection.close(200, "done".into()).await;
}

/// A TCP proxy to RabbitMQ that can be cut (all connections dropped, new ones refused) and restored on
/// the same port.
pub struct BrokerProxy {
    pub port: u16,
    cut: Arc<tokio::sync::watch::Sender<bool>>,
}

impl BrokerProxy {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (cut, _) = tokio::sync::watch::channel(false);
        let cut = Arc::new(cut);
        tokio::spawn(Self::serve(listener, cut.clone()));
        Self { port, cut }
    }

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    pub fn restore(&self) {
        self.cut.send_replace(false);
    }

    async fn serve(listener: TcpListener, cut: Arc<tokio::sync::watch::Sender<bool>>) {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            if *cut.borrow() {
                drop(client);
                continue;
            }
            let mut cut_rx = cut.subscribe();
            tokio::spawn(async move {
                let Ok(upstream) = TcpStream::connect("127.0.0.1:5672").await else {
                    return;
                };
                let (mut client, mut upstream) = (client, upstream);
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
                    _ = cut_rx.wait_for(|cut| *cut) => {}
                }
            });
        }
    }
}

/// Polls `check` until it returns true or `limit` passes.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}
