//! Frames of the `tillmesh/sync/1` protocol: a 4-byte big-endian length, then a
//! postcard-encoded [`Frame`]. Frames larger than [`MAX_FRAME`] are refused before
//! they are read, so a peer cannot make a till allocate without bound.

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The ALPN of the sync protocol; a change of wire format bumps it. Version 2:
/// sync messages carry the proofs of authorship of their changes (an envelope
/// the store writes and reads, `tillmesh_store::ENVELOPE`); a till of version 1
/// cannot prove its changes, so the two do not talk.
pub const SYNC_ALPN: &[u8] = b"tillmesh/sync/2";

/// The protocol version carried in [`Frame::Hello`].
pub const PROTOCOL_VERSION: u32 = 2;

/// Largest frame accepted, in bytes.
pub const MAX_FRAME: usize = 16 * 1024 * 1024;

/// One protocol message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Frame {
    /// First frame each way: who is talking, for which store, and its clock.
    Hello {
        /// [`PROTOCOL_VERSION`].
        version: u32,
        /// The store id.
        store: [u8; 16],
        /// The sender's wall clock, unix milliseconds (for clock skew).
        wall_ms: u64,
    },
    /// The sender's 256 manifest bucket digests.
    Buckets(Vec<[u8; 32]>),
    /// The documents of the differing buckets, with their heads.
    Manifest(Vec<(String, Vec<[u8; 32]>)>),
    /// An Automerge sync message for one document.
    Sync {
        /// The document id.
        doc: String,
        /// The encoded sync message.
        msg: Vec<u8>,
    },
    /// End of one round: how many `Sync` frames the sender sent in it.
    RoundEnd {
        /// Sync frames sent this round.
        sent: u32,
    },
    /// The session is over.
    Bye,
    /// A leading piece of a sync message too large for one frame; the pieces
    /// of one message follow each other, and its last piece comes as an
    /// ordinary [`Frame::Sync`] for the same document (added after version 1
    /// shipped: a peer that does not know it could not send or take such a
    /// message anyway).
    SyncPart {
        /// The document id.
        doc: String,
        /// This piece.
        part: Vec<u8>,
    },
}

/// Sync messages are sent in pieces of at most this many bytes.
pub const SYNC_PART: usize = 8 * 1024 * 1024;

/// Largest sync message taken in pieces, in bytes: a document larger than this
/// cannot be synced (and is logged as such).
pub const MAX_SYNC_MESSAGE: usize = 1024 * 1024 * 1024;

/// Write the sync message `msg` for `doc`: one [`Frame::Sync`] when it fits,
/// else [`Frame::SyncPart`]s of `part` bytes and a last [`Frame::Sync`]. Gives
/// the bytes written.
pub async fn write_sync<W: AsyncWrite + Unpin>(
    w: &mut W,
    doc: &str,
    msg: Vec<u8>,
    part: usize,
) -> Result<usize, WireError> {
    let part = part.max(1);
    let mut written = 0;
    let mut rest = msg.as_slice();
    while rest.len() > part {
        let (head, tail) = rest.split_at(part);
        written += write_frame(
            w,
            &Frame::SyncPart {
                doc: doc.to_string(),
                part: head.to_vec(),
            },
        )
        .await?;
        rest = tail;
    }
    written += write_frame(
        w,
        &Frame::Sync {
            doc: doc.to_string(),
            msg: rest.to_vec(),
        },
    )
    .await?;
    Ok(written)
}

/// Puts sync messages sent in pieces back together.
#[derive(Debug, Default)]
pub struct Pieces {
    doc: Option<String>,
    bytes: Vec<u8>,
}

impl Pieces {
    /// Take a [`Frame::SyncPart`].
    pub fn part(&mut self, doc: String, part: Vec<u8>) -> Result<(), WireError> {
        if self.doc.as_ref().is_some_and(|d| *d != doc) {
            return Err(WireError::Malformed(format!(
                "a piece of {doc} in the middle of another document's message"
            )));
        }
        if self.bytes.len() + part.len() > MAX_SYNC_MESSAGE {
            return Err(WireError::TooLarge(self.bytes.len() + part.len()));
        }
        self.doc = Some(doc);
        self.bytes.extend_from_slice(&part);
        Ok(())
    }

    /// Take a [`Frame::Sync`]: the whole message for `doc`, with any pieces
    /// before it.
    pub fn last(&mut self, doc: &str, msg: Vec<u8>) -> Result<Vec<u8>, WireError> {
        match self.doc.take() {
            None => Ok(msg),
            Some(d) if d == doc => {
                let mut whole = std::mem::take(&mut self.bytes);
                whole.extend_from_slice(&msg);
                Ok(whole)
            }
            Some(d) => Err(WireError::Malformed(format!(
                "the message for {d} ended with a piece for {doc}"
            ))),
        }
    }

    /// Whether a message is half received.
    pub fn pending(&self) -> bool {
        self.doc.is_some()
    }
}

/// Reading or writing a frame failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The connection failed or closed.
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    /// The peer announced a frame over the limit.
    #[error("peer sent a {0}-byte frame, over the {MAX_FRAME}-byte limit")]
    TooLarge(usize),
    /// The frame does not decode.
    #[error("peer sent a malformed frame: {0}")]
    Malformed(String),
}

/// Write one frame.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    frame: &Frame,
) -> Result<usize, WireError> {
    write_msg(w, frame).await
}

/// Read one frame, with its size on the wire.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Result<(Frame, usize), WireError> {
    read_msg(r).await
}

/// Write any message with the same framing.
pub async fn write_msg<W: AsyncWrite + Unpin, T: Serialize>(
    w: &mut W,
    msg: &T,
) -> Result<usize, WireError> {
    let bytes = postcard::to_stdvec(msg).map_err(|e| WireError::Malformed(e.to_string()))?;
    if bytes.len() > MAX_FRAME {
        return Err(WireError::TooLarge(bytes.len()));
    }
    w.write_all(&(bytes.len() as u32).to_be_bytes()).await?;
    w.write_all(&bytes).await?;
    Ok(bytes.len() + 4)
}

/// Read any message with the same framing, with its size on the wire.
pub async fn read_msg<R: AsyncRead + Unpin, T: serde::de::DeserializeOwned>(
    r: &mut R,
) -> Result<(T, usize), WireError> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(WireError::TooLarge(len));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf).await?;
    let msg = postcard::from_bytes(&buf).map_err(|e| WireError::Malformed(e.to_string()))?;
    Ok((msg, len + 4))
}

/// One request and its reply over a new connection to `peer` on `alpn` (the join
/// and keys protocols), closed after the reply.
pub(crate) async fn request<Req: Serialize, Rep: serde::de::DeserializeOwned>(
    endpoint: &iroh::Endpoint,
    addr: impl Into<iroh::EndpointAddr>,
    alpn: &[u8],
    peer: &tillmesh_store::TillId,
    req: &Req,
) -> Result<Rep, crate::NodeError> {
    let unreachable = |reason: String| crate::NodeError::Unreachable {
        peer: peer.fmt_short(),
        reason,
    };
    let conn = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        endpoint.connect(addr, alpn),
    )
    .await
    .map_err(|_| unreachable("timed out".into()))?
    .map_err(|e| unreachable(e.to_string()))?;
    let (mut send, mut recv) = conn
        .open_bi()
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    write_msg(&mut send, req)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let _ = send.finish();
    let (reply, _) = read_msg::<_, Rep>(&mut recv)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    conn.close(iroh::endpoint::VarInt::from_u32(0), b"done");
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_limits_hold() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        let f = Frame::Sync {
            doc: "catalog".into(),
            msg: vec![1, 2, 3],
        };
        write_frame(&mut a, &f).await.expect("write");
        assert_eq!(read_frame(&mut b).await.expect("read").0, f);

        // An oversized length is refused before anything is allocated.
        a.write_all(&(MAX_FRAME as u32 + 1).to_be_bytes())
            .await
            .expect("write");
        assert!(matches!(
            read_frame(&mut b).await,
            Err(WireError::TooLarge(_))
        ));

        // A message in pieces comes back whole; pieces of two documents mixed,
        // or a message that never ends before the round does, are refused.
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        let big: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        let n = write_sync(&mut a, "catalog", big.clone(), 300)
            .await
            .expect("write");
        assert!(n > big.len());
        let mut pieces = Pieces::default();
        let mut frames = 0;
        let whole = loop {
            frames += 1;
            match read_frame(&mut b).await.expect("read").0 {
                Frame::SyncPart { doc, part } => {
                    assert!(part.len() <= 300);
                    pieces.part(doc, part).expect("piece");
                }
                Frame::Sync { doc, msg } => break pieces.last(&doc, msg).expect("whole"),
                other => panic!("unexpected {other:?}"),
            }
        };
        assert_eq!(frames, 4, "three pieces of 300 bytes and a last of 100");
        assert_eq!(whole, big);
        assert!(!pieces.pending());
        let mut mixed = Pieces::default();
        mixed.part("catalog".into(), vec![1]).expect("piece");
        assert!(mixed.part("config".into(), vec![2]).is_err());
        assert!(mixed.pending());
        assert!(mixed.last("config", vec![3]).is_err());
        let mut small = Pieces::default();
        assert_eq!(small.last("config", vec![7]).expect("one frame"), vec![7]);

        // Garbage is a clear error, not a panic.
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        a.write_all(&3u32.to_be_bytes()).await.expect("write");
        a.write_all(&[0xff, 0xff, 0xff]).await.expect("write");
        assert!(matches!(
            read_frame(&mut b).await,
            Err(WireError::Malformed(_))
        ));
    }
}
