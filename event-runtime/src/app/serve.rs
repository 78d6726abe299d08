//! Serving the app: binding, the embedded broker, graceful shutdown.

use axum::Router;

use crate::app::checks::{mode_notice, refused};
use crate::app::App;
use crate::config::Mode;

/// How much longer than a handler's timeout a shutdown waits for open connections.
const SHUTDOWN_SLACK: std::time::Duration = std::time::Duration::from_secs(5);

impl App {
    /// The port [`App::serve`] binds: its [`Config`](crate::config::Config)'s `app_port`
    /// (`APP_PORT`, else 8080).
    pub fn app_port(&self) -> u16 {
        self.io.app_port
    }

    /// Serves the app on `0.0.0.0:$APP_PORT` (default 8080), with your own routes merged in;
    /// in embedded mode also runs the broker, and with `App::with_outbox` (feature `sqlx`) the outbox's relay.
    /// Stops on SIGTERM or Ctrl-C, letting in-flight
    /// deliveries finish (those waiting on a retry delay are answered RETRY); connections still
    /// open a handler timeout (and 5 s) later are closed.
    ///
    /// An idempotent handler whose timeout is not shorter than the claim lease (see
    /// [`App::with_claim_lease`]), or a name a builder method set that breaks its rule, stops it
    /// before it binds, with an error of kind `InvalidInput` that wraps the [`AppError`](crate::AppError).
    pub async fn serve(self) -> std::io::Result<()> {
        self.serve_with(Router::new()).await
    }

    /// [`App::serve`] with `routes` (your REST API, say) merged into the event routes.
    pub async fn serve_with(self, routes: Router) -> std::io::Result<()> {
        self.check_startup().map_err(refused)?;
        let addr = std::net::SocketAddr::from(([0, 0, 0, 0], self.io.app_port));
        let listener = tokio::net::TcpListener::bind(addr).await?;
        self.serve_on(listener, routes).await
    }

    /// [`App::serve_with`] on a listener you bound (tests bind port 0).
    pub async fn serve_on(
        self,
        listener: tokio::net::TcpListener,
        routes: Router,
    ) -> std::io::Result<()> {
        self.check_startup().map_err(refused)?;
        let router = self.router().merge(routes);
        #[cfg(feature = "grpc")]
        let streams = self.start_streams();
        #[cfg(not(feature = "grpc"))]
        if self.streamed() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "EVENTS_TRANSPORT=grpc-stream needs event-runtime's `grpc` feature",
            ));
        }
        crate::http::server::log_startup(&self, listener.local_addr()?);
        if let Some((level, notice)) = mode_notice(self.io.mode, self.io.mode_source) {
            if level == tracing::Level::WARN {
                tracing::warn!("{notice}");
            } else {
                tracing::info!("{notice}");
            }
        }
        if self.io.mode == Mode::Embedded {
            self.io
                .broker
                .start(router.clone(), self.run.settings.app_api_token.clone())
                .await
                .map_err(std::io::Error::other)?;
        }
        #[cfg(feature = "sqlx")]
        let relay = self.outbox().map(|o| o.start_relay(self.publisher()));
        let shutdown = self.shutdown.clone();
        let serving = axum::serve(listener, router).with_graceful_shutdown(async move {
            let mut requested = shutdown.subscribe();
            tokio::select! {
                _ = crate::http::server::shutdown_signal() => {}
                _ = requested.wait_for(|stopping| *stopping) => {}
            }
            tracing::info!("shutting down: finishing in-flight deliveries");
            let _ = shutdown.send(true);
        });
        // Once shutting down, in-flight deliveries end within their timeout; a connection that
        // stays open longer (a client's idle socket, a stream) does not hold the process.
        let grace = self.run.settings.handler_timeout + SHUTDOWN_SLACK;
        let mut stopping = self.shutdown.subscribe();
        let result = tokio::select! {
            result = std::future::IntoFuture::into_future(serving) => result,
            _ = async {
                let _ = stopping.wait_for(|stopping| *stopping).await;
                tokio::time::sleep(grace).await;
            } => {
                tracing::warn!(?grace, "connections still open after the shutdown's grace: closing them");
                Ok(())
            }
        };
        #[cfg(feature = "sqlx")]
        if let Some(relay) = relay {
            relay.stop().await;
        }
        #[cfg(feature = "grpc")]
        if let Some(streams) = streams {
            streams.stop().await;
        }
        self.io.broker.stop();
        result
    }
}
