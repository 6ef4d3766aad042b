//! Runs a node: builds the broker, binds the public and internal listeners, and drains
//! on SIGTERM/SIGINT.
//!
//! Drain: readiness turns false at once (`/readyz` 503; new connections refused with
//! 503), after `MURMUR_DRAIN_DELAY` every client is told to leave (WebSocket close
//! 1001; Helios clients keep their recovery token), then the node leaves the cluster
//! and the process exits by `MURMUR_DRAIN_TIMEOUT` at the latest.

use std::fmt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use actix_http::body::BoxBody;
use actix_http::error::DispatchError;
use actix_http::HttpService;
use actix_rt::net::TcpStream;
use actix_service::{IntoServiceFactory, ServiceFactory, ServiceFactoryExt};
use actix_web::dev::{AppConfig, ServiceRequest, ServiceResponse};
use actix_web::{web, App, HttpServer};
use murmur_broker::auth::{RecoveryTokens, Verifier};
use murmur_broker::{BrokerConfig, Node, SetupError};
use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info, warn};

use crate::config::{JwtKey, Settings};
use crate::state::AppState;
use crate::{api, chat, demo, health, helios, sink, telemetry, timestick};

/// Runs until drained; the process exit code.
pub fn run(settings: Settings) -> ExitCode {
    telemetry::init(&settings.log, settings.log_format);
    for w in &settings.warnings {
        warn!("{w}");
    }
    let system = actix_rt::System::new();
    match system.block_on(serve(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            eprintln!("murmur: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Why a node could not start, or stopped with an error.
#[derive(Debug)]
pub enum ServeError {
    /// `MURMUR_JWT_PUBLIC_KEY` could not be read.
    KeyFile(PathBuf, std::io::Error),
    /// The broker (its key, its Redis clients) could not be set up.
    Setup(SetupError),
    /// A listener could not be bound.
    Listen(String, std::io::Error),
    /// The Sink TLS listener could not be configured.
    Tls(String),
    /// A server failed while running.
    Server(std::io::Error),
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServeError::KeyFile(path, e) => {
                write!(
                    f,
                    "cannot read MURMUR_JWT_PUBLIC_KEY {}: {e}",
                    path.display()
                )
            }
            ServeError::Setup(e) => e.fmt(f),
            ServeError::Listen(addr, e) => write!(f, "cannot listen on {addr}: {e}"),
            ServeError::Tls(m) => f.write_str(m),
            ServeError::Server(e) => write!(f, "server error: {e}"),
        }
    }
}

impl std::error::Error for ServeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ServeError::KeyFile(_, e) | ServeError::Listen(_, e) | ServeError::Server(e) => Some(e),
            ServeError::Setup(e) => Some(e),
            ServeError::Tls(_) => None,
        }
    }
}

impl From<SetupError> for ServeError {
    fn from(e: SetupError) -> Self {
        ServeError::Setup(e)
    }
}

fn verifier(settings: &Settings) -> Result<Verifier, ServeError> {
    match &settings.jwt {
        JwtKey::Hs256(secret) => Ok(Verifier::hs256(secret.as_bytes())),
        JwtKey::PublicKeyPem(path) => {
            let pem = std::fs::read(path).map_err(|e| ServeError::KeyFile(path.clone(), e))?;
            Ok(Verifier::from_public_pem(&pem)?)
        }
    }
}

async fn serve(settings: Settings) -> Result<(), ServeError> {
    let verifier = verifier(&settings)?;
    let mut config = BrokerConfig::new(settings.node_id.clone());
    config.heartbeat_ttl = settings.heartbeat_ttl;
    config.heartbeat_interval = settings.heartbeat_ttl / 5;
    config.recovery_ttl = settings.recovery_window;
    config.timestick_idle = settings.timestick_idle;
    config.timestick_quarantine = settings.timestick_quarantine;
    config.outbound_queue = settings.outbound.max_frames;
    config.channel_history.len = settings.channel_history;
    config.push = settings.push.clone();
    let recovery = RecoveryTokens::new(
        settings.recovery_secret.as_bytes(),
        config.recovery_token_ttl,
    );
    let node = match &settings.redis_url {
        None => Node::embedded(config).await,
        Some(url) => Node::clustered(config, url, &settings.redis_prefix).await?,
    };
    let outbound_budget = crate::edge::OutboundBudget::new(
        settings.outbound_node_max_bytes,
        node.metrics.outbound_bytes.clone(),
    );
    let state = web::Data::new(AppState {
        node: node.clone(),
        verifier,
        recovery,
        settings,
        outbound_budget,
    });
    let settings = &state.settings;
    let grace = settings.drain_timeout.as_secs().max(1);

    let public_state = state.clone();
    let public = actix_server::Server::build()
        .disable_signals()
        .shutdown_timeout(grace)
        .bind("murmur-public", &settings.listen, move || {
            public_service(public_state.clone())
        })
        .map_err(|e| ServeError::Listen(settings.listen.clone(), e))?
        .run();

    let internal_state = state.clone();
    let internal = HttpServer::new(move || {
        App::new()
            .app_data(internal_state.clone())
            .service(health::healthz)
            .service(health::readyz)
            .service(health::metrics)
            .configure(api::configure)
    })
    .disable_signals()
    .workers(1)
    .tcp_nodelay(true)
    .shutdown_timeout(grace)
    .bind(&settings.internal_listen)
    .map_err(|e| ServeError::Listen(settings.internal_listen.clone(), e))?
    .run();

    info!(
        node = %node.id(),
        public = %settings.listen,
        internal = %settings.internal_listen,
        mode = if settings.redis_url.is_some() { "cluster" } else { "embedded" },
        "murmur node serving"
    );

    let sink_server = sink_listener(&state)?;
    let public_handle = public.handle();
    let internal_handle = internal.handle();
    let sink_handle = sink_server.as_ref().map(|s| s.handle());
    let drain_state = state.clone();
    actix_rt::spawn(async move {
        wait_for_signal().await;
        drain(drain_state.into_inner()).await;
        public_handle.stop(true).await;
        internal_handle.stop(true).await;
        if let Some(h) = sink_handle {
            h.stop(true).await;
        }
    });

    let sink_run = async move {
        match sink_server {
            Some(s) => s.await,
            None => Ok(()),
        }
    };
    let (a, b, c) = futures_util::future::join3(public, internal, sink_run).await;
    a.and(b).and(c).map_err(ServeError::Server)?;
    info!("murmur node stopped");
    Ok(())
}

/// The public application: the client protocols' routes.
fn public_app(
    state: web::Data<AppState>,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<BoxBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let dev = state.settings.dev;
    App::new()
        .app_data(state)
        .configure(demo::routes(dev))
        .route("/starling", web::get().to(helios::starling))
        .route("/chat", web::get().to(chat::chat))
        .configure(timestick::configure)
        .route("/sink", web::get().to(sink::connect::sink))
}

/// One public connection: HTTP/1, with WebSocket upgrades handed over to
/// [`crate::ws::handover`] (they leave the dispatcher). Small frames (notifications, RPC
/// answers) go out at once, not after the client's delayed ACK (`TCP_NODELAY`; Nagle
/// adds up to ~40 ms otherwise). A refused upgrade's response has
/// [`crate::ws::CLOSE_LINGER`] to be read before the socket is dropped.
fn public_service(
    state: web::Data<AppState>,
) -> impl actix_service::ServiceFactory<
    TcpStream,
    Config = (),
    Response = (),
    Error = DispatchError,
    InitError = (),
> {
    let upgrade_state = state.clone();
    let upgrade = actix_service::fn_factory(move || {
        let state = upgrade_state.clone();
        async move {
            let app = public_app(state)
                .into_factory()
                .new_service(AppConfig::default())
                .await
                .map_err(|_| ())?;
            let app = Rc::new(app);
            Ok::<_, ()>(actix_service::fn_service(move |(req, framed)| {
                crate::ws::handover::serve(app.clone(), req, framed)
            }))
        }
    });
    let h1 = HttpService::build()
        .client_disconnect_timeout(crate::ws::CLOSE_LINGER)
        .upgrade(upgrade)
        .h1(actix_service::map_config(public_app(state), |_| {
            AppConfig::default()
        }));
    actix_service::fn_service(|io: TcpStream| {
        let _ = io.set_nodelay(true);
        let peer = io.peer_addr().ok();
        std::future::ready(Ok::<_, DispatchError>((io, peer)))
    })
    .and_then(h1)
}

/// The Sink TCP listener: TLS with client certificates when configured, plaintext in
/// development mode, none otherwise.
fn sink_listener(state: &web::Data<AppState>) -> Result<Option<actix_server::Server>, ServeError> {
    let settings = &state.settings;
    let tls = match &settings.sink_tls {
        Some((cert, key, ca)) => {
            Some(sink::connect::tls_acceptor(cert, key, ca).map_err(ServeError::Tls)?)
        }
        None if settings.dev => None,
        None => {
            info!("Sink over TCP disabled: set MURMUR_SINK_TLS_* (or MURMUR_DEV=1 for plaintext)");
            return Ok(None);
        }
    };
    let mode = if tls.is_some() {
        "tls"
    } else {
        "plaintext (development)"
    };
    let app = state.clone().into_inner();
    let server = actix_server::Server::build()
        .disable_signals()
        .shutdown_timeout(settings.drain_timeout.as_secs().max(1))
        .bind("murmur-sink", &settings.sink_listen, move || {
            let app = app.clone();
            let tls = tls.clone();
            actix_service::fn_service(move |stream: actix_rt::net::TcpStream| {
                let app = app.clone();
                let tls = tls.clone();
                async move {
                    sink::connect::accept(app, tls, stream).await;
                    Ok::<_, ()>(())
                }
            })
        })
        .map_err(|e| ServeError::Listen(settings.sink_listen.clone(), e))?
        .run();
    info!(sink = %settings.sink_listen, mode, "sink listener");
    Ok(Some(server))
}

async fn wait_for_signal() {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        error!("cannot install signal handlers; the node will not drain on SIGTERM");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM: draining"),
        _ = int.recv() => info!("SIGINT: draining"),
    }
}

/// See the module docs.
async fn drain(state: Arc<AppState>) {
    let node = &state.node;
    let settings = &state.settings;
    node.begin_drain();
    let deadline = tokio::time::Instant::now() + settings.drain_timeout;
    tokio::time::sleep(settings.drain_delay.min(settings.drain_timeout)).await;
    if !node.is_clustered() {
        // An embedded node's TimeStick sessions end with its process: their callers get
        // a receiver STOP now, which open polls and streams deliver. (In a cluster they
        // live on, served by the other nodes.)
        let n = murmur_broker::timestick::stop_all(node, "draining").await;
        info!(sessions = n, "TimeStick sessions stopped: draining");
    }
    let n = node
        .disconnect_all_in_batches(
            "node draining; reconnect to another node",
            DRAIN_BATCH,
            DRAIN_PAUSE,
        )
        .await;
    info!(sessions = n, "clients told to leave");
    // Wait until every transport is gone, or the deadline (minus a moment to exit).
    let exit_by = deadline - Duration::from_millis(500).min(settings.drain_timeout);
    let open = || {
        ["helios", "chat", "sink", "timestick"]
            .iter()
            .map(|p| node.metrics.connections.with_label_values(&[p]).get())
            .sum::<i64>()
    };
    while open() > 0 && tokio::time::Instant::now() < exit_by {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // What this node accepted reaches Redis before it leaves.
    if !node
        .flush_bus(exit_by.saturating_duration_since(tokio::time::Instant::now()))
        .await
    {
        warn!("bus not fully flushed before the drain deadline");
    }
    node.shutdown().await;
}

/// Clients told to leave per batch while draining, and the pause between batches.
const DRAIN_BATCH: usize = 500;
const DRAIN_PAUSE: Duration = Duration::from_millis(50);
