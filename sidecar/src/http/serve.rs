//! The accept loop: HTTP/1.1 keep-alive connections until shutdown, then a bounded drain.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use super::app::App;
use super::router::handle;

/// Accepts connections until `shutdown` resolves, then stops accepting, lets in-flight
/// requests finish (at most `--drain-timeout-s`) and returns.
pub async fn serve(app: Arc<App>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    // Slow-header clients are cut off instead of holding a connection forever.
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(s) => s,
                    Err(e) => {
                        // EMFILE and friends: back off rather than spin.
                        log::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let app = Arc::clone(&app);
                let service = service_fn(move |req| handle(Arc::clone(&app), req));
                let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        log::debug!("connection: {e}");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    app.set_draining();
    let in_flight = app.in_flight.load(Ordering::SeqCst);
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
