//! The store's own relay: an iroh-relay server a store runs on its back-office
//! machine, so tills that cannot reach each other directly still sync without the
//! internet. Plain HTTP is fine on a store LAN (the traffic inside is end-to-end
//! encrypted QUIC between tills either way).

use std::net::SocketAddr;

use iroh_relay::server::{RelayConfig, Server, ServerConfig};

/// A running relay.
#[derive(Debug)]
pub struct Relay {
    server: Server,
    url: String,
}

impl Relay {
    /// Start a relay listening on `bind` (plain HTTP).
    pub async fn spawn(bind: SocketAddr) -> Result<Relay, crate::NodeError> {
        let mut cfg = ServerConfig::default();
        cfg.relay = Some(RelayConfig::new(bind));
        cfg.quic = None;
        let server = Server::spawn(cfg)
            .await
            .map_err(|e| crate::NodeError::Bind(e.to_string()))?;
        let addr = server
            .http_addr()
            .ok_or_else(|| crate::NodeError::Bind("the relay has no HTTP address".into()))?;
        Ok(Relay {
            server,
            url: format!("http://{addr}"),
        })
    }

    /// The URL tills use to reach it.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Stop it.
    pub async fn shutdown(self) {
        if let Err(e) = self.server.shutdown().await {
            tracing::warn!(error = %e, "relay shutdown");
        }
    }
}
