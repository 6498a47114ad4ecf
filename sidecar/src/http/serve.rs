//! The accept loops: HTTP/1.1 keep-alive connections on the public listener (and the control
//! listener, when there is one), each within `--max-connections` and the time and size
//! limits of a connection, every reply stamped with `x-served-by`, until shutdown; then a
//! bounded drain (none while stalled: a stuck run would only hold it to its timeout).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::app::App;
use super::conn::{Guarded, Phase, refuse};
use super::connection::Waits;
use super::control;
use super::router::handle;
use crate::signals::meta::SERVED_BY;

/// The sockets the sidecar serves.
pub struct Listeners {
    /// `/infer` and the small endpoints (`--listen`).
    pub public: TcpListener,
    /// The latch endpoint for the gateways (`--control-listen`).
    pub control: Option<TcpListener>,
}

/// Which listener a connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Public,
    Control,
}

async fn accept(
    listener: Option<&TcpListener>,
) -> std::io::Result<(TcpStream, std::net::SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// Accepts connections until `shutdown` resolves, then stops accepting, lets in-flight
/// requests finish (at most `--drain-timeout-s`) and returns.
pub async fn serve(app: Arc<App>, listeners: Listeners, shutdown: impl Future<Output = ()>) {
    let limits = app.cfg.limits;
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    // hyper's header timer would also cut idle keep-alive connections at the header limit;
    // `Guarded` keeps the two limits apart.
    http.timer(TokioTimer::new())
        .header_read_timeout(None)
        .max_header_size(limits.max_header_bytes)
        // A client that shuts down its sending side once its request is out still gets the
        // reply (hyper would otherwise take the end of its input for a hang-up and drop it).
        .half_close(true)
        .keep_alive(true);
    let waits = Waits {
        header_read: limits.header_read,
        idle: limits.idle,
    };
    // One cap per listener: a flood on one cannot lock the gateways out of the other.
    let public_slots = Arc::new(Semaphore::new(limits.max_connections));
    let control_slots = Arc::new(Semaphore::new(limits.max_connections));
    let Listeners { public, control } = listeners;
    tokio::pin!(shutdown);
    loop {
        let (accepted, side) = tokio::select! {
            a = public.accept() => (a, Side::Public),
            a = accept(control.as_ref()) => (a, Side::Control),
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(e) => {
                // EMFILE and friends: back off rather than spin.
                log::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let slots = match side {
            Side::Public => &public_slots,
            Side::Control => &control_slots,
        };
        let Ok(permit) = Arc::clone(slots).try_acquire_owned() else {
            refuse(&app, stream, side == Side::Public);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let phase = Phase::new(waits, app.clock.now());
        let io = TokioIo::new(Guarded::new(stream, phase.clone(), Arc::clone(&app)));
        let service_app = Arc::clone(&app);
        let service = service_fn(move |req| {
            let (app, phase) = (Arc::clone(&service_app), phase.clone());
            phase.request();
            async move {
                let mut reply = match side {
                    Side::Public => handle(Arc::clone(&app), req).await,
                    Side::Control => control::handle(Arc::clone(&app), req).await,
                };
                if let Ok(r) = &mut reply {
                    r.headers_mut().insert(SERVED_BY, app.served_by.clone());
                }
                phase.reply(app.clock.now());
                reply
            }
        });
        let conn = graceful.watch(http.serve_connection(io, service));
        let app = Arc::clone(&app);
        app.metrics.open_connections.inc();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                log::debug!("connection: {e}");
            }
            app.metrics.open_connections.dec();
            drop(permit);
        });
    }
    drop(public);
    drop(control);
    app.set_draining();
    let in_flight = app.in_flight.load(Ordering::SeqCst);
    if app.stalled(app.clock.now()) {
        // The stuck run (and whatever waits behind it) cannot finish: waiting for it would
        // only delay the restart a liveness failure asked for.
        log::warn!("shutting down while stalled: {in_flight} request(s) in flight are dropped");
        return;
    }
    log::info!("shutting down: draining {in_flight} in-flight request(s)");
    match tokio::time::timeout(app.cfg.drain_timeout, graceful.shutdown()).await {
        Ok(()) => log::info!("drained; bye"),
        Err(_) => log::warn!(
            "drain timeout ({:?}) reached with {} request(s) in flight",
            app.cfg.drain_timeout,
            app.in_flight.load(Ordering::SeqCst)
        ),
    }
}
