//! The load generator's HTTP/1.1 client: hyper's connection API directly, one keep-alive connection per
//! request in flight, each request built by hand. With reqwest the generator spent ~74 µs of CPU per
//! webhook (URL parsing, header maps, pool and timeout bookkeeping), as much as ingest's whole handling,
//! on the same two cores: the benchmark measured the generator as much as the service.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{CONTENT_TYPE, HOST, USER_AGENT};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use omnidm_shared::signature::SIGNATURE_HEADER;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// Where requests go: a plain `http://` endpoint (the benchmark runs on loopback).
#[derive(Debug, Clone)]
pub struct Target {
    addr: SocketAddr,
    authority: String,
    path: String,
}

impl Target {
    /// Parses and resolves `url` once, so no request pays for it.
    pub async fn resolve(url: &str) -> Result<Self, String> {
        let uri: Uri = url.parse().map_err(|e| format!("{url:?} is not a URL: {e}"))?;
        if uri.scheme_str() != Some("http") {
            return Err(format!("{url:?}: the load generator speaks plain http:// only"));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| format!("{url:?} has no host"))?
            .to_string();
        let host_port = if uri.port().is_some() {
            authority.clone()
        } else {
            format!("{authority}:80")
        };
        let addr = tokio::net::lookup_host(&host_port)
            .await
            .map_err(|e| format!("cannot resolve {host_port}: {e}"))?
            .next()
            .ok_or_else(|| format!("{host_port} resolves to no address"))?;
        let path = uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
        Ok(Self {
            addr,
            authority,
            path,
        })
    }
}

/// Idle keep-alive connections (and since when), shared by the requests of a run.
pub struct Connections {
    target: Target,
    timeout: Duration,
    idle: Mutex<Vec<(Instant, SendRequest<Full<Bytes>>)>>,
}

impl Connections {
    /// No connection is opened until a request needs one.
    pub fn new(target: Target, timeout: Duration) -> Self {
        Self {
            target,
            timeout,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// POSTs `body` with its signature header; the status, or `None` on a transport error or timeout
    /// (the connection is then dropped, and the next request opens a fresh one).
    pub async fn post(&self, body: Vec<u8>, signature: String) -> Option<u16> {
        let mut sender = match self.take() {
            Some(sender) => sender,
            None => self.open().await?,
        };
        let request = Request::post(&self.target.path)
            .header(HOST, &self.target.authority)
            .header(CONTENT_TYPE, "application/json")
            .header(USER_AGENT, "facebookexternalua")
            .header(SIGNATURE_HEADER, signature)
            .body(Full::new(Bytes::from(body)))
            .ok()?;
        let exchange = async {
            sender.ready().await.ok()?;
            let response = sender.send_request(request).await.ok()?;
            let status = response.status().as_u16();
            // Read to the end, or the connection cannot carry the next request.
            response.into_body().collect().await.ok()?;
            Some(status)
        };
        let status = tokio::time::timeout(self.timeout, exchange).await.ok()??;
        crate::state::lock(&self.idle).push((Instant::now(), sender));
        Some(status)
    }

    /// The most recently used live connection. One idle for longer than
    /// [`crate::webhook::POOL_IDLE_TIMEOUT`] is dropped instead: ingest closes idle keep-alive
    /// connections, and a request sent as it does so would count as a transport error.
    fn take(&self) -> Option<SendRequest<Full<Bytes>>> {
        let mut idle = crate::state::lock(&self.idle);
        while let Some((since, sender)) = idle.pop() {
            if !sender.is_closed() && since.elapsed() < crate::webhook::POOL_IDLE_TIMEOUT {
                return Some(sender);
            }
        }
        None
    }

    async fn open(&self) -> Option<SendRequest<Full<Bytes>>> {
        let stream = tokio::time::timeout(self.timeout, TcpStream::connect(self.target.addr))
            .await
            .ok()?
            .ok()?;
        stream.set_nodelay(true).ok()?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await.ok()?;
        tokio::spawn(async move {
            // Ends when the server closes the connection or the sender is dropped.
            let _closed = connection.await;
        });
        Some(sender)
    }
}
