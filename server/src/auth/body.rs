//! Reading a signed request's body whole while hashing it: the SigV4 payload hash is
//! computed frame by frame as the body arrives, so the bytes are walked once, and a body
//! that arrives in one frame (any small request) is kept without a copy.
//!
//! The reader is a poll function ([`HashedRead::poll`]) rather than an `async fn`, so the
//! layer's own future drives it: no boxed future per signed request.
//!
//! Concurrency: one call per request, on the request's task.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http_body::Body as _;
use sha2::{Digest, Sha256};

/// Why a body could not be read whole.
#[derive(Debug)]
pub(super) enum ReadError {
    /// Longer than the limit.
    TooLarge,
    /// The client's stream failed.
    Read(axum::Error),
}

/// A body being read whole (at most `limit` bytes) and hashed frame by frame; polled by
/// the authentication layer's future, so reading a signed body costs no boxed future.
#[derive(Debug)]
pub(super) struct HashedRead {
    hasher: Sha256,
    /// The first frame, kept as it is until a second one arrives.
    single: Option<Bytes>,
    joined: BytesMut,
    len: usize,
    limit: usize,
}

impl HashedRead {
    pub(super) fn new(limit: usize) -> Self {
        Self {
            hasher: Sha256::new(),
            single: None,
            joined: BytesMut::new(),
            len: 0,
            limit,
        }
    }

    /// Reads `body` until it ends: the whole body and its SHA-256.
    pub(super) fn poll(
        &mut self,
        mut body: Pin<&mut Body>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(Bytes, [u8; 32]), ReadError>> {
        loop {
            let Some(frame) = ready!(body.as_mut().poll_frame(cx)) else {
                let bytes = match self.single.take() {
                    Some(single) => single,
                    None => std::mem::take(&mut self.joined).freeze(),
                };
                let digest = std::mem::take(&mut self.hasher).finalize();
                return Poll::Ready(Ok((bytes, digest.into())));
            };
            let Ok(data) = frame.map_err(ReadError::Read)?.into_data() else {
                continue; // trailers: not part of the payload
            };
            self.len = self
                .len
                .checked_add(data.len())
                .filter(|n| *n <= self.limit)
                .ok_or(ReadError::TooLarge)?;
            self.hasher.update(&data);
            match self.single.take() {
                None if self.joined.is_empty() => self.single = Some(data),
                Some(first) => {
                    self.joined.reserve(first.len() + data.len());
                    self.joined.extend_from_slice(&first);
                    self.joined.extend_from_slice(&data);
                }
                None => self.joined.extend_from_slice(&data),
            }
        }
    }
}

/// The whole body (at most `limit` bytes) and its SHA-256.
#[cfg(test)]
pub(super) async fn read_hashed(
    mut body: Body,
    limit: usize,
) -> Result<(Bytes, [u8; 32]), ReadError> {
    let mut read = HashedRead::new(limit);
    std::future::poll_fn(|cx| read.poll(Pin::new(&mut body), cx)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunked(chunks: &[&'static [u8]]) -> Body {
        let frames = chunks
            .iter()
            .map(|c| Ok::<_, std::io::Error>(http_body::Frame::data(Bytes::from_static(c))));
        Body::new(http_body_util::StreamBody::new(futures::stream::iter(
            frames.collect::<Vec<_>>(),
        )))
    }

    #[tokio::test]
    async fn whole_body_and_its_hash_in_one_or_many_frames() {
        let whole = b"5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n";
        for chunks in [
            vec![&whole[..]],
            vec![&whole[..5], &whole[5..]],
            vec![&b""[..], &whole[..1], &whole[1..20], &b""[..], &whole[20..]],
            vec![],
        ] {
            let expected: &[u8] = if chunks.is_empty() { b"" } else { whole };
            let (bytes, digest) = read_hashed(chunked(&chunks), 64).await.unwrap();
            assert_eq!(&bytes[..], expected, "{chunks:?}");
            assert_eq!(digest, <[u8; 32]>::from(Sha256::digest(expected)));
        }
    }

    #[tokio::test]
    async fn over_the_limit_is_too_large() {
        let body = chunked(&[b"12345", b"67890"]);
        assert!(matches!(
            read_hashed(body, 9).await,
            Err(ReadError::TooLarge)
        ));
        assert_eq!(
            read_hashed(chunked(&[b"12345", b"67890"]), 10)
                .await
                .unwrap()
                .0,
            Bytes::from_static(b"1234567890")
        );
    }
}
