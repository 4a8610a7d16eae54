//! The loopback HTTP server that receives the browser's redirect after sign-in.
//!
//! It only parses requests and answers them; what a callback means for the login is decided
//! by the flow in `login/mod.rs`, which it reaches through a channel.

use std::convert::Infallible;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use super::pages;
use crate::auth::AuthError;
use crate::secret::Secret;

/// The port tried first, then the fallback, when no port is configured.
pub(crate) const DEFAULT_PORTS: [u16; 2] = [1455, 1457];
/// How long open connections may take to finish their response once the server stops.
const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// At most this many connections are open at once; more are closed as soon as accepted, so
/// another local process cannot use up the server's file descriptors.
pub(crate) const MAX_CONNECTIONS: usize = 16;
/// A connection must have sent its request head within this long, or it is closed.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection is closed after this long, whatever it is doing.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(30);

/// Response bodies: whole pages held in memory.
type Body = http_body_util::Full<hyper::body::Bytes>;

/// An HTTP response of the callback server.
pub(crate) type Reply = Response<Body>;

/// What the server passes on to the login flow.
#[derive(Debug)]
pub(crate) enum Event {
    /// A callback with the right `state` and a `code`; the flow answers through `reply`.
    Code {
        /// The authorization code.
        code: Secret,
        /// Where the flow sends the response for the browser.
        reply: oneshot::Sender<Reply>,
    },
    /// A callback with the right `state` and an `error`.
    Denied {
        /// The OAuth error code, e.g. `access_denied`.
        error: String,
        /// The issuer's `error_description`, if any.
        description: Option<String>,
        /// Where the flow sends the response for the browser.
        reply: oneshot::Sender<Reply>,
    },
    /// The `/success` page was requested.
    SuccessServed,
}

/// The listening sockets: `127.0.0.1`, and `[::1]` on the same port where the host has IPv6.
/// The redirect names `localhost`, which may resolve to either, so both are held: no other
/// process can take the other one and receive the callback.
#[derive(Debug)]
pub(crate) struct Listeners {
    v4: TcpListener,
    v6: Option<TcpListener>,
}

impl Listeners {
    /// The IPv4 address (the port is the same on both).
    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.v4.local_addr()
    }

    async fn accept(&self) -> io::Result<tokio::net::TcpStream> {
        let v6 = async {
            match &self.v6 {
                Some(listener) => listener.accept().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            accepted = self.v4.accept() => accepted.map(|(stream, _)| stream),
            accepted = v6 => accepted.map(|(stream, _)| stream),
        }
    }
}

/// Binds `127.0.0.1` and `[::1]` on the configured port (`0` = any), or on 1455 then 1457.
pub(crate) async fn bind(configured: Option<u16>) -> Result<Listeners, AuthError> {
    match configured {
        Some(port) => bind_first(&[port]).await,
        None => bind_first(&DEFAULT_PORTS).await,
    }
}

/// Binds the first port of `ports` free on both loopback addresses (IPv6 only where the host
/// has it).
pub(crate) async fn bind_first(ports: &[u16]) -> Result<Listeners, AuthError> {
    for &port in ports {
        let v4 = match TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await {
            Ok(listener) => listener,
            // A busy port may belong to another process's login: leave it alone, try the next.
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                tracing::debug!(port, "login callback port is in use");
                continue;
            }
            Err(e) => return Err(AuthError::LoginServer(e)),
        };
        let bound = v4.local_addr().map_err(AuthError::LoginServer)?.port();
        match TcpListener::bind(SocketAddr::from((Ipv6Addr::LOCALHOST, bound))).await {
            Ok(v6) => return Ok(Listeners { v4, v6: Some(v6) }),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                tracing::debug!(port, "login callback port is in use on [::1]");
            }
            // No IPv6 loopback on this host: nothing else can bind it either.
            Err(_) => return Ok(Listeners { v4, v6: None }),
        }
    }
    Err(AuthError::LoginPortInUse {
        ports: ports.to_vec(),
    })
}

/// A running callback server.
#[derive(Debug)]
pub(crate) struct CallbackServer {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl CallbackServer {
    /// Serves `listener`, accepting callbacks whose `state` is `state`.
    pub(crate) fn start(listener: Listeners, state: String, events: mpsc::Sender<Event>) -> Self {
        let stop = CancellationToken::new();
        let routes = Arc::new(Routes { state, events });
        let task = tokio::spawn(accept_loop(listener, routes, stop.clone()));
        Self { stop, task }
    }

    /// Closes the listening socket, lets open connections finish their response (briefly),
    /// and returns once the port is free.
    pub(crate) async fn shutdown(self) {
        self.stop.cancel();
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "the login callback server ended abnormally");
        }
    }
}

async fn accept_loop(listener: Listeners, routes: Arc<Routes>, stop: CancellationToken) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(stream) if connections.len() >= MAX_CONNECTIONS => {
                    tracing::warn!("login callback server has {MAX_CONNECTIONS} connections open; closing a new one");
                    drop(stream);
                }
                Ok(stream) => {
                    connections.spawn(serve_connection(stream, routes.clone(), stop.clone()));
                }
                Err(e) => {
                    // Accept errors (e.g. too many open files) are usually momentary.
                    tracing::warn!(error = %e, "login callback server could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    // Free the port first; then give answers in flight a moment to reach the browser.
    drop(listener);
    let drained = tokio::time::timeout(DRAIN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        connections.abort_all();
    }
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    routes: Arc<Routes>,
    stop: CancellationToken,
) {
    let service = service_fn(move |request| {
        let routes = routes.clone();
        async move { Ok::<_, Infallible>(routes.handle(request).await) }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = tokio::time::sleep(CONNECTION_LIFETIME) => {
            tracing::debug!("login callback connection open too long; closed");
            return;
        }
        () = stop.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "login callback connection ended with an error");
    }
}

/// The routes of the callback server.
#[derive(Debug)]
struct Routes {
    state: String,
    events: mpsc::Sender<Event>,
}

impl Routes {
    async fn handle(&self, request: Request<Incoming>) -> Reply {
        match request.uri().path() {
            "/auth/callback" => self.callback(request.uri().query().unwrap_or("")).await,
            "/success" => {
                // The flow may already have stopped listening; the page is right either way.
                let _ = self.events.send(Event::SuccessServed).await;
                page(StatusCode::OK, pages::success())
            }
            _ => page(StatusCode::NOT_FOUND, pages::not_found()),
        }
    }

    async fn callback(&self, query: &str) -> Reply {
        let params = Callback::parse(query);
        // A request without the right state may come from anything on this machine; it must
        // neither complete nor cancel the login.
        if params.state.as_deref() != Some(self.state.as_str()) {
            tracing::warn!("login callback with a missing or wrong state was refused");
            return page(
                StatusCode::BAD_REQUEST,
                pages::bad_request("The request does not carry this login's state"),
            );
        }
        let (reply, answer) = oneshot::channel();
        let event = match (params.code, params.error) {
            (_, Some(error)) => Event::Denied {
                error,
                description: params.error_description,
                reply,
            },
            (Some(code), None) => Event::Code { code, reply },
            (None, None) => {
                return page(
                    StatusCode::BAD_REQUEST,
                    pages::bad_request("The request carries neither a code nor an error"),
                );
            }
        };
        if self.events.send(event).await.is_err() {
            return page(
                StatusCode::GONE,
                pages::failure("This login has already ended"),
            );
        }
        answer
            .await
            .unwrap_or_else(|_| page(StatusCode::GONE, pages::failure("This login was cancelled")))
    }
}

/// The query parameters of a callback.
#[derive(Debug, Default)]
struct Callback {
    code: Option<Secret>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

impl Callback {
    fn parse(query: &str) -> Self {
        let mut out = Self::default();
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let value = value.into_owned();
            match key.as_ref() {
                "code" => out.code = Some(Secret::new(value)),
                "state" => out.state = Some(value),
                "error" => out.error = Some(value),
                "error_description" => out.error_description = Some(value),
                _ => {}
            }
        }
        out
    }
}

/// An HTML page response.
pub(crate) fn page(status: StatusCode, html: String) -> Reply {
    let mut response = Response::new(Body::from(html));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response.headers_mut().insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-store"),
    );
    response
}

/// A `302` to `/success` on this server.
pub(crate) fn redirect_to_success() -> Reply {
    let mut response = Response::new(Body::default());
    *response.status_mut() = StatusCode::FOUND;
    response.headers_mut().insert(
        hyper::header::LOCATION,
        hyper::header::HeaderValue::from_static("/success"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[tokio::test]
    async fn busy_ports_are_skipped_and_all_busy_names_every_port() {
        let a = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let b = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (pa, pb) = (
            a.local_addr().unwrap().port(),
            b.local_addr().unwrap().port(),
        );
        let err = bind_first(&[pa, pb]).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            AuthError::LoginPortInUse {
                ports: vec![pa, pb]
            }
            .to_string()
        );
        drop(b);
        let bound = bind_first(&[pa, pb]).await.unwrap();
        assert_eq!(bound.local_addr().unwrap().port(), pb);
    }
}
