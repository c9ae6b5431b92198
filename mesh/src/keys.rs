//! `tillmesh/keys/1`: a member fetches the store's backup keys from the till that
//! holds them (the admin till), after a key rotation.
//!
//! Backup keys never travel in a synced document. The admin till announces the
//! current key's id in the configuration (`backup/key`); a till that lacks it asks
//! the holder over this protocol. The holder's endpoint hook has already refused
//! anyone who is not a certified, unrevoked member before the request is read, and
//! the holder checks membership once more before answering, so a revoked till never
//! receives a key made after its revocation.

use std::time::Duration;

use iroh::EndpointId;
use iroh::endpoint::{Connection, VarInt};
use iroh::protocol::{AcceptError, ProtocolHandler};
use serde::{Deserialize, Serialize};
use tillmesh_store::{MemberStatus, StoreSecret, TillId};

use crate::join::{CONNECT_TIMEOUT, REQUEST_TIMEOUT, within};
use crate::wire::{read_msg, request, write_msg};
use tillmesh_store::StoreHandle;

/// The ALPN of key fetching.
pub const KEYS_ALPN: &[u8] = b"tillmesh/keys/1";

/// What a till asks (version 1).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeysRequest {
    /// Protocol version (1).
    pub version: u8,
}

/// What the holder answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum KeysReply {
    /// Every backup key of the store, oldest first.
    Keys(Vec<StoreSecret>),
    /// Refused, with the reason.
    Refused(String),
}

/// The holder's side.
#[derive(Debug, Clone)]
pub(crate) struct KeysProto {
    pub store: StoreHandle,
}

impl ProtocolHandler for KeysProto {
    async fn accept(&self, conn: Connection) -> Result<(), AcceptError> {
        let peer = TillId::from_bytes(*conn.remote_id().as_bytes());
        let read = async {
            let (send, mut recv) = conn.accept_bi().await?;
            let req = read_msg::<_, KeysRequest>(&mut recv).await;
            Ok::<_, AcceptError>((send, req))
        };
        let (mut send, req) = match tokio::time::timeout(REQUEST_TIMEOUT, read).await {
            Ok(r) => r?,
            Err(_) => {
                tracing::info!(peer = %peer.fmt_short(), "no keys request in time");
                conn.close(VarInt::from_u32(408), b"request timeout");
                return Ok(());
            }
        };
        if let Err(e) = req {
            tracing::warn!(peer = %peer.fmt_short(), error = %e, "unreadable keys request");
            conn.close(VarInt::from_u32(400), b"bad request");
            return Ok(());
        }
        let reply = self
            .store
            .call(move |s| match s.member_status(&peer) {
                Ok(MemberStatus::Member(_)) => match s.store_secrets() {
                    Ok(keys) => KeysReply::Keys(keys),
                    Err(e) => KeysReply::Refused(e.to_string()),
                },
                Ok(_) => {
                    let _ = s.record_refused(&peer.to_string(), "keys: not a member");
                    KeysReply::Refused("not a member of this store".into())
                }
                Err(e) => KeysReply::Refused(e.to_string()),
            })
            .await
            .unwrap_or_else(|e| KeysReply::Refused(e.to_string()));
        if let KeysReply::Keys(k) = &reply {
            tracing::info!(peer = %peer.fmt_short(), keys = k.len(), "handed the backup keys to a member");
        }
        let _ = tokio::time::timeout(REQUEST_TIMEOUT, write_msg(&mut send, &reply)).await;
        let _ = send.finish();
        let _ = tokio::time::timeout(Duration::from_secs(5), conn.closed()).await;
        Ok(())
    }
}

/// Ask `holder` for the store's backup keys.
pub(crate) async fn fetch(
    endpoint: &iroh::Endpoint,
    holder: TillId,
) -> Result<Vec<StoreSecret>, crate::NodeError> {
    let unreachable = |reason: String| crate::NodeError::Unreachable {
        peer: holder.fmt_short(),
        reason,
    };
    let eid = EndpointId::from_bytes(holder.as_bytes()).map_err(|e| unreachable(e.to_string()))?;
    let reply: KeysReply = within(
        CONNECT_TIMEOUT + REQUEST_TIMEOUT,
        &holder,
        "keys",
        request(
            endpoint,
            eid,
            KEYS_ALPN,
            &holder,
            &KeysRequest { version: 1 },
        ),
    )
    .await?;
    match reply {
        KeysReply::Keys(keys) => Ok(keys),
        KeysReply::Refused(why) => Err(unreachable(format!("refused: {why}"))),
    }
}
