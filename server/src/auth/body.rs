//! Reading a signed request's body whole while hashing it: the SigV4 payload hash is
//! computed frame by frame as the body arrives, so the bytes are walked once, and a body
//! that arrives in one frame (any small request) is kept without a copy.
//!
//! Concurrency: one call per request, on the request's task.

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};

/// Why a body could not be read whole.
#[derive(Debug)]
pub(super) enum ReadError {
    /// Longer than the limit.
    TooLarge,
    /// The client's stream failed.
    Read(axum::Error),
}

/// The whole body (at most `limit` bytes) and its SHA-256.
pub(super) async fn read_hashed(
    mut body: Body,
    limit: usize,
) -> Result<(Bytes, [u8; 32]), ReadError> {
    let mut hasher = Sha256::new();
    // The first frame, kept as it is until a second one arrives.
    let mut single: Option<Bytes> = None;
    let mut joined = BytesMut::new();
    let mut len = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(ReadError::Read)?.into_data() else {
            continue; // trailers: not part of the payload
        };
        len = len
            .checked_add(data.len())
            .filter(|n| *n <= limit)
            .ok_or(ReadError::TooLarge)?;
        hasher.update(&data);
        match single.take() {
            None if joined.is_empty() => single = Some(data),
            Some(first) => {
                joined.reserve(first.len() + data.len());
                joined.extend_from_slice(&first);
                joined.extend_from_slice(&data);
            }
            None => joined.extend_from_slice(&data),
        }
    }
    let bytes = single.unwrap_or_else(|| joined.freeze());
    Ok((bytes, hasher.finalize().into()))
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
