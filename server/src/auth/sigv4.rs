//! AWS Signature Version 4 verification, as botocore and the AWS SDKs sign for non-S3
//! services: the `Authorization: AWS4-HMAC-SHA256 ...` header or a presigned query
//! (`X-Amz-Signature`, ...), any region and service name.
//!
//! The canonical request is rebuilt from what arrived: the path as sent, each byte outside
//! RFC 3986's unreserved set encoded once more (botocore quotes the already-encoded path;
//! dot segments removed), the query decoded and re-encoded strictly, sorted; the signed
//! headers with their values trimmed and inner whitespace collapsed; and the payload hash
//! of the body, which the caller hashes as it arrives (a sent `x-amz-content-sha256` must
//! equal it). The canonical request is written into a per-thread buffer and hashed in one
//! call, and the signing key of a scope is derived once per principal and day (see `signer`).
//! The date must be within 15 minutes of now (a presigned URL: within its `X-Amz-Expires`).
//! Signatures are compared in constant time. Pure functions: the caller passes the clock.

use std::borrow::Cow;

use axum::http::{HeaderMap, HeaderName};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub use super::amz_date::{format_amz_date, parse_amz_date};
use super::credentials::{Credentials, Principal};
use crate::error::AuthError;

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
const X_AMZ_DATE: HeaderName = HeaderName::from_static("x-amz-date");
const X_AMZ_CONTENT_SHA256: HeaderName = HeaderName::from_static("x-amz-content-sha256");
/// Headers the AWS SDKs for JavaScript (v3) and Java (v2) add to every request and sign
/// (botocore sends them unsigned).
const AMZ_SDK_INVOCATION_ID: HeaderName = HeaderName::from_static("amz-sdk-invocation-id");
const AMZ_SDK_REQUEST: HeaderName = HeaderName::from_static("amz-sdk-request");
const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// Allowed difference between a request's `X-Amz-Date` and the server clock.
pub const MAX_SKEW_SECS: u64 = 15 * 60;
/// Longest a presigned URL may live (AWS: 7 days).
const MAX_EXPIRES_SECS: u64 = 7 * 24 * 3600;

/// What the verifier reads of a request.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// `GET`, `POST`, ...
    pub method: &'a str,
    /// The path as received (still percent-encoded).
    pub path: &'a str,
    /// The raw query string, without `?` (empty when none).
    pub query: &'a str,
    /// The `Host` to use when the request has no `Host` header (HTTP/2's `:authority`).
    pub authority: Option<&'a str>,
    /// Request headers.
    pub headers: &'a HeaderMap,
    /// The SHA-256 of the whole body ([`sha256`]; the middleware hashes it as it arrives).
    pub body_sha256: [u8; 32],
}

/// The SHA-256 of a body, for [`Request::body_sha256`].
pub fn sha256(body: &[u8]) -> [u8; 32] {
    Sha256::digest(body).into()
}

/// Whether the request carries a SigV4 signature in its query (a presigned URL).
pub fn is_presigned(query: &str) -> bool {
    !query.is_empty()
        && query
            .split('&')
            .any(|pair| pair.split('=').next() == Some("X-Amz-Signature"))
}

/// The parsed signature fields, from the header (borrowed) or the query (decoded).
struct Signature<'a> {
    /// `AKID/DATE/REGION/SERVICE/aws4_request`, checked to have these five parts.
    credential: Cow<'a, str>,
    /// The offsets of the four `/` in `credential`.
    slashes: [usize; 4],
    /// The signed header names, lowercase, joined by `;`, none empty.
    signed_headers: Cow<'a, str>,
    signature: Cow<'a, str>,
    amz_date: Cow<'a, str>,
    /// A presigned URL's lifetime.
    expires: Option<u64>,
}

impl Signature<'_> {
    fn access_key_id(&self) -> &str {
        &self.credential[..self.slashes[0]]
    }

    /// `DATE/REGION/SERVICE/aws4_request`.
    fn scope(&self) -> &str {
        &self.credential[self.slashes[0] + 1..]
    }

    /// The scope's date, region and service.
    fn scope_parts(&self) -> (&str, &str, &str) {
        let [a, b, c, d] = self.slashes;
        let part = |from: usize, to: usize| &self.credential[from + 1..to];
        (part(a, b), part(b, c), part(c, d))
    }
}

/// Checks the signature of `request` (header or presigned) at `now` (UNIX seconds); the
/// signer's principal on success.
///
/// Allocation-free for a header-signed request with a plain path and no query (what the
/// AWS SDKs send to SageMaker), once the thread's buffer has grown to the usual canonical
/// request: the fields are borrowed from the header, the canonical request is written into
/// that per-thread buffer and hashed in one call, the signing key comes from the principal's
/// cache, and the signature is compared as the hex it was sent in.
pub fn verify<'c>(
    credentials: &'c Credentials,
    request: &Request<'_>,
    now: u64,
) -> Result<&'c Principal, AuthError> {
    let presigned = is_presigned(request.query);
    let sig = if presigned {
        parse_query(request.query)?
    } else {
        let header = request
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or(AuthError::Missing)?;
        // UTF-8 checked a word at a time (`to_str` checks byte by byte for visible ASCII;
        // anything else fails the parse or the signature anyway).
        let header = std::str::from_utf8(header.as_bytes())
            .map_err(|_| AuthError::Incomplete("the Authorization header is not UTF-8".into()))?;
        let date = request
            .headers
            .get(X_AMZ_DATE)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                AuthError::Incomplete(
                    "Authorization header requires existence of either a 'X-Amz-Date' or a \
                     'Date' header."
                        .into(),
                )
            })?;
        parse_header(header, date)?
    };
    let principal = credentials
        .key(sig.access_key_id())
        .ok_or(AuthError::UnknownKey)?;
    let date = parse_amz_date(&sig.amz_date).ok_or_else(|| {
        AuthError::Incomplete(format!(
            "X-Amz-Date {:?} is not in ISO 8601 basic format (YYYYMMDDTHHMMSSZ)",
            sig.amz_date
        ))
    })?;
    let (scope_date, _, _) = sig.scope_parts();
    if !sig.amz_date.starts_with(scope_date) {
        return Err(AuthError::BadSignature(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date \
             from HTTP: '{}' != '{}'",
            scope_date,
            &sig.amz_date[..8]
        )));
    }
    check_time(date, sig.expires, now)?;

    let query = canonical_query(request.query, presigned);
    let body_hash = hex64(&request.body_sha256);
    // Lowercase hex digits are ASCII.
    let body_hash = std::str::from_utf8(&body_hash).unwrap_or_default();
    let both = [UNSIGNED_PAYLOAD, body_hash];
    let payloads: &[&str] = if presigned {
        &both
    } else {
        if let Some(sent) = request
            .headers
            .get(X_AMZ_CONTENT_SHA256)
            .and_then(|v| v.to_str().ok())
            && !sent.eq_ignore_ascii_case(body_hash)
        {
            return Err(AuthError::BadSignature(
                "The provided 'x-amz-content-sha256' header does not match what was \
                 computed."
                    .into(),
            ));
        }
        &both[1..]
    };
    // botocore encodes the sent path once more; some signers (curl --aws-sigv4) sign it as
    // sent. Either is accepted (the same string for the usual path).
    let (path, as_sent): (Cow<'_, str>, Option<String>) = if is_plain_path(request.path) {
        (request.path.into(), None)
    } else {
        let normalized = canonical_uri(request.path);
        let as_sent = remove_dot_segments(request.path).filter(|p| *p != normalized);
        (normalized.into(), as_sent)
    };
    // The string to sign starts the same for every candidate: its HMAC state is kept.
    let mut to_sign = signer(principal, &sig);
    for piece in [ALGORITHM, "\n", &sig.amz_date, "\n", sig.scope(), "\n"] {
        to_sign.update(piece.as_bytes());
    }
    let matched = with_scratch(|canonical| {
        for path in std::iter::once(path.as_ref()).chain(as_sent.as_deref()) {
            // Written into one buffer and hashed in one call: the canonical request comes in
            // dozens of small pieces, and each `update` of a digest does its own buffering.
            canonical.clear();
            for piece in [request.method, "\n", path, "\n", &query, "\n"] {
                canonical.extend_from_slice(piece.as_bytes());
            }
            write_canonical_headers(canonical, request, &sig.signed_headers);
            for piece in ["\n", &sig.signed_headers, "\n"] {
                canonical.extend_from_slice(piece.as_bytes());
            }
            let before_payload = canonical.len();
            for payload in payloads {
                canonical.truncate(before_payload);
                canonical.extend_from_slice(payload.as_bytes());
                let mut mac = to_sign.clone();
                mac.update(&hex64(&Sha256::digest(&canonical[..]).into()));
                let expected = hex64(&mac.finalize().into_bytes().into());
                if hex_eq(&expected, sig.signature.as_bytes()) {
                    return true;
                }
            }
        }
        false
    });
    if matched {
        return Ok(principal);
    }
    Err(AuthError::BadSignature(
        "The request signature we calculated does not match the signature you provided. \
         Check your AWS Secret Access Key and signing method. Consult the service \
         documentation for details."
            .into(),
    ))
}

fn check_time(date: u64, expires: Option<u64>, now: u64) -> Result<(), AuthError> {
    if date > now + MAX_SKEW_SECS {
        return Err(AuthError::Expired(format!(
            "Signature not yet current: {} is still later than {} ({} + 15 min.)",
            format_amz_date(date),
            format_amz_date(now + MAX_SKEW_SECS),
            format_amz_date(now)
        )));
    }
    match expires {
        Some(expires) if now > date + expires => Err(AuthError::Expired(format!(
            "Request has expired: signed at {} for {expires} seconds, now {}",
            format_amz_date(date),
            format_amz_date(now)
        ))),
        Some(_) => Ok(()),
        None if date + MAX_SKEW_SECS < now => Err(AuthError::Expired(format!(
            "Signature expired: {} is now earlier than {} ({} - 15 min.)",
            format_amz_date(date),
            format_amz_date(now - MAX_SKEW_SECS),
            format_amz_date(now)
        ))),
        None => Ok(()),
    }
}

/// Parses `AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`, borrowing.
fn parse_header<'a>(header: &'a str, amz_date: &'a str) -> Result<Signature<'a>, AuthError> {
    let rest = header
        .strip_prefix(ALGORITHM)
        .filter(|r| r.starts_with(' '))
        .ok_or_else(|| {
            AuthError::Incomplete(format!(
                "unsupported Authorization scheme (expected {ALGORITHM} or Bearer)"
            ))
        })?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    // Split by bytes: `str::split` with a char pattern costs a searcher per piece, and this
    // runs on every signed request.
    let mut rest = rest;
    while !rest.is_empty() {
        let (part, next) = split_at_byte(rest, b',');
        rest = next;
        let part = part.trim_ascii();
        // A plain loop: the `=` comes within the first 14 bytes of every known field.
        let Some(eq) = part.bytes().position(|b| b == b'=') else {
            continue;
        };
        match (&part[..eq], &part[eq + 1..]) {
            ("Credential", v) => credential = Some(v),
            ("SignedHeaders", v) => signed = Some(v),
            ("Signature", v) => signature = Some(v),
            _ => {}
        }
    }
    let missing = |what: &str| {
        AuthError::Incomplete(format!(
            "Authorization header requires '{what}' parameter. Authorization={header}"
        ))
    };
    let credential = credential.ok_or_else(|| missing("Credential"))?;
    let signed = signed.ok_or_else(|| missing("SignedHeaders"))?;
    let signature = signature.ok_or_else(|| missing("Signature"))?;
    build(
        credential.into(),
        signed.into(),
        signature.into(),
        amz_date.into(),
        None,
    )
}

/// Parses a presigned URL's `X-Amz-*` parameters.
fn parse_query(query: &str) -> Result<Signature<'static>, AuthError> {
    let get = |name: &str| -> Result<String, AuthError> {
        query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| percent_decode(v))
            .ok_or_else(|| {
                AuthError::Incomplete(format!("the presigned URL has no {name} parameter"))
            })
    };
    let algorithm = get("X-Amz-Algorithm")?;
    if algorithm != ALGORITHM {
        return Err(AuthError::Incomplete(format!(
            "X-Amz-Algorithm {algorithm:?} is not supported (expected {ALGORITHM})"
        )));
    }
    let credential = get("X-Amz-Credential")?;
    let signed = get("X-Amz-SignedHeaders")?;
    let signature = get("X-Amz-Signature")?;
    let date = get("X-Amz-Date")?;
    let expires = get("X-Amz-Expires")?;
    let expires = expires
        .parse::<u64>()
        .ok()
        .filter(|e| *e <= MAX_EXPIRES_SECS)
        .ok_or_else(|| {
            AuthError::Incomplete(format!(
                "X-Amz-Expires must be a number of seconds up to {MAX_EXPIRES_SECS}, not {expires:?}"
            ))
        })?;
    build(
        credential.into(),
        signed.into(),
        signature.into(),
        date.into(),
        Some(expires),
    )
}

fn build<'a>(
    credential: Cow<'a, str>,
    signed: Cow<'a, str>,
    signature: Cow<'a, str>,
    amz_date: Cow<'a, str>,
    expires: Option<u64>,
) -> Result<Signature<'a>, AuthError> {
    let mut slashes = [0usize; 4];
    let mut found = 0;
    for i in memchr::memchr_iter(b'/', credential.as_bytes()) {
        if let Some(slot) = slashes.get_mut(found) {
            *slot = i;
        }
        found += 1;
    }
    if found != 4 || &credential[slashes[3] + 1..] != "aws4_request" {
        return Err(AuthError::Incomplete(format!(
            "Credential should be AKID/DATE/REGION/SERVICE/aws4_request, not {credential:?}"
        )));
    }
    let signed_headers = lowercase_names(signed);
    if signed_headers.is_empty() {
        return Err(AuthError::Incomplete(
            "SignedHeaders names no header".into(),
        ));
    }
    Ok(Signature {
        credential,
        slashes,
        signed_headers,
        signature,
        amz_date,
        expires,
    })
}

/// `SignedHeaders` as the canonical request lists it: lowercase, no empty name. The AWS
/// SDKs send it so already, and then it is borrowed.
fn lowercase_names(signed: Cow<'_, str>) -> Cow<'_, str> {
    let mut previous = b';';
    let canonical = signed.bytes().all(|b| {
        let ok = !b.is_ascii_uppercase() && (b != b';' || previous != b';');
        previous = b;
        ok
    }) && !signed.ends_with(';');
    if canonical {
        return signed;
    }
    let names: Vec<String> = signed
        .split(';')
        .filter(|h| !h.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    names.join(";").into()
}

/// A SHA-256 digest in lowercase hex, without allocating: one table lookup a byte.
fn hex64(digest: &[u8; 32]) -> [u8; 64] {
    const PAIRS: [[u8; 2]; 256] = {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut table = [[0u8; 2]; 256];
        let mut b = 0;
        while b < 256 {
            table[b] = [DIGITS[b >> 4], DIGITS[b & 0xf]];
            b += 1;
        }
        table
    };
    let mut out = [0u8; 64];
    for (pair, b) in out.chunks_exact_mut(2).zip(digest) {
        pair.copy_from_slice(&PAIRS[usize::from(*b)]);
    }
    out
}

/// Whether the sent signature is exactly `expected` (64 lowercase hex digits), compared in
/// constant time: the XOR of eight 64-bit words folded together, then judged once through
/// `subtle`. Only the length may end the comparison early, and the length is no secret.
fn hex_eq(expected: &[u8; 64], sent: &[u8]) -> bool {
    if sent.len() != expected.len() {
        return false;
    }
    let word = |bytes: &[u8]| u64::from_le_bytes(bytes.try_into().unwrap_or_default());
    // The differences of all eight words folded without a branch, judged once.
    let difference = expected
        .chunks_exact(8)
        .zip(sent.chunks_exact(8))
        .fold(0u64, |d, (a, b)| d | (word(a) ^ word(b)));
    bool::from(difference.ct_eq(&0))
}

/// Runs `f` with this thread's scratch buffer for a canonical request, empty: written
/// piece by piece and hashed in one call, without a buffer zeroed or allocated per request.
/// A buffer grown past 4 KiB by a large request is dropped afterwards rather than kept.
fn with_scratch<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    const KEEP: usize = 4096;
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    SCRATCH.with_borrow_mut(|buffer| {
        buffer.clear();
        let result = f(buffer);
        if buffer.capacity() > KEEP {
            *buffer = Vec::new();
        }
        result
    })
}

/// The HMAC keyed with the signing key of `sig`'s scope, from the principal's cache when
/// its scope is the last one seen.
fn signer(principal: &Principal, sig: &Signature<'_>) -> Hmac<Sha256> {
    let scope = sig.scope();
    if let Some(cached) = principal.signing_key.load().as_deref()
        && cached.0 == scope
    {
        return cached.1.clone();
    }
    let (date, region, service) = sig.scope_parts();
    let key = signing_key(&principal.secret_access_key, date, region, service);
    let mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).expect("HMAC takes any key length");
    principal
        .signing_key
        .store(Some(std::sync::Arc::new((scope.to_owned(), mac.clone()))));
    mac
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// The SigV4 signing key of a secret for a date, region and service.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k = hmac(&k, region.as_bytes());
    let k = hmac(&k, service.as_bytes());
    hmac(&k, b"aws4_request")
}

/// Writes the canonical headers (`name:value\n` for each signed name; repeated headers
/// joined by `,`).
fn write_canonical_headers(text: &mut Vec<u8>, request: &Request<'_>, signed: &str) {
    use axum::http::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, HOST};
    let mut names = signed;
    while !names.is_empty() {
        let (name, next) = split_at_byte(names, b';');
        names = next;
        text.extend_from_slice(name.as_bytes());
        text.push(b':');
        let mut first = true;
        // The names the AWS SDKs sign, as typed names: no parse of the name per lookup.
        let values = match name {
            "host" => request.headers.get_all(HOST),
            "content-type" => request.headers.get_all(CONTENT_TYPE),
            "x-amz-date" => request.headers.get_all(X_AMZ_DATE),
            "amz-sdk-invocation-id" => request.headers.get_all(AMZ_SDK_INVOCATION_ID),
            "amz-sdk-request" => request.headers.get_all(AMZ_SDK_REQUEST),
            "accept" => request.headers.get_all(ACCEPT),
            "content-length" => request.headers.get_all(CONTENT_LENGTH),
            "x-amz-content-sha256" => request.headers.get_all(X_AMZ_CONTENT_SHA256),
            _ => request.headers.get_all(name),
        };
        for value in values {
            if !first {
                text.push(b',');
            }
            first = false;
            let bytes = value.as_bytes();
            // Every byte visible ASCII, judged without an early exit so that the loop runs
            // in vector lanes (the values are short; a branch a byte cost more).
            let plain = bytes
                .iter()
                .fold(true, |plain, b| plain & b.is_ascii_graphic());
            if plain {
                // No whitespace to trim or collapse (the usual value).
                text.extend_from_slice(bytes);
            } else {
                collapse(&String::from_utf8_lossy(bytes), |piece| {
                    text.extend_from_slice(piece.as_bytes());
                });
            }
        }
        if first
            && name == "host"
            && let Some(authority) = request.authority
        {
            collapse(authority, |piece| text.extend_from_slice(piece.as_bytes()));
        }
        text.push(b'\n');
    }
}

/// `s` up to the first `byte` (ASCII) and what follows it (all of `s` and "" when there is
/// none). Measured natively: a plain loop for a short piece (a signed header's name), where
/// `memchr`'s dispatch and set-up cost more than the search, and `memchr`'s vector search
/// for a longer one (the fields of the `Authorization` header).
fn split_at_byte(s: &str, byte: u8) -> (&str, &str) {
    let at = if s.len() < 32 {
        s.bytes().position(|b| b == byte)
    } else {
        memchr::memchr(byte, s.as_bytes())
    };
    match at {
        Some(at) => (&s[..at], &s[at + 1..]),
        None => (s, ""),
    }
}

/// Emits a header value trimmed, with runs of spaces collapsed into one, in pieces.
fn collapse<'v>(value: &'v str, mut emit: impl FnMut(&'v str)) {
    for (i, word) in value.split_whitespace().enumerate() {
        if i > 0 {
            emit(" ");
        }
        emit(word);
    }
}

fn canonical_query(query: &str, presigned: bool) -> String {
    if query.is_empty() {
        return String::new();
    }
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (
                uri_encode(&percent_decode(k), true),
                uri_encode(&percent_decode(v), true),
            )
        })
        .filter(|(k, _)| !(presigned && k == "X-Amz-Signature"))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// The canonical URI of a non-S3 service: dot segments removed, then every byte outside
/// the unreserved set (and `/`) of the path as sent encoded again.
fn canonical_uri(path: &str) -> String {
    let path = remove_dot_segments(path).unwrap_or_else(|| "/".to_owned());
    uri_encode(&path, false)
}

/// RFC 3986 dot-segment removal, keeping a trailing slash; `None` for an empty path.
fn remove_dot_segments(path: &str) -> Option<String> {
    if path.is_empty() {
        return None;
    }
    let mut out: Vec<&str> = Vec::new();
    for segment in path.split('/').skip(1) {
        match segment {
            "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut joined = format!("/{}", out.join("/"));
    let trailing = path.ends_with('/') || path.ends_with("/.") || path.ends_with("/..");
    if trailing && !joined.ends_with('/') {
        joined.push('/');
    }
    Some(joined)
}

/// Whether `path` is its own canonical URI: it starts with `/`, holds only bytes
/// `uri_encode` keeps (unreserved and `/`, so no `%`) and no dot segment (`/.`).
fn is_plain_path(path: &str) -> bool {
    // Unreserved bytes, `/` and `.`, by table (no byte depends on the one before, so the
    // loop runs free); then no `.` right after a `/`, by the few slashes.
    const KEEP: [bool; 256] = {
        let mut table = [false; 256];
        let mut b = 0;
        while b < 256 {
            let c = b as u8;
            table[b] = c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'~' | b'/' | b'.');
            b += 1;
        }
        table
    };
    let bytes = path.as_bytes();
    bytes.first() == Some(&b'/')
        && bytes.iter().all(|&b| KEEP[usize::from(b)])
        && !bytes.windows(2).any(|pair| pair == b"/.")
}

/// Percent-encodes every byte outside `A-Z a-z 0-9 - _ . ~` (and `/` unless `slash`).
fn uri_encode(s: &str, slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (b == b'/' && !slash)
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes (malformed escapes are kept as they are).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = bytes.get(i + 1..i + 3)
            && let Ok(text) = std::str::from_utf8(hex)
            && let Ok(b) = u8::from_str_radix(text, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    const DATE: &str = "20150830T123600Z";

    fn credentials() -> Credentials {
        format!("[t]\naws_access_key_id = AKIDEXAMPLE\naws_secret_access_key = {SECRET}\n")
            .parse()
            .unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn now() -> u64 {
        parse_amz_date(DATE).unwrap() + 60
    }

    // AWS's SigV4 test suite, `get-vanilla` and `post-vanilla`.
    #[test]
    fn aws_test_suite_vectors() {
        let c = credentials();
        for (method, signature) in [
            (
                "GET",
                "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
            ),
            (
                "POST",
                "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
            ),
        ] {
            let auth = format!(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
                 SignedHeaders=host;x-amz-date, Signature={signature}"
            );
            let h = headers(&[
                ("host", "example.amazonaws.com"),
                ("x-amz-date", DATE),
                ("authorization", &auth),
            ]);
            let request = Request {
                method,
                path: "/",
                query: "",
                authority: None,
                headers: &h,
                body_sha256: sha256(b""),
            };
            assert_eq!(verify(&c, &request, now()).unwrap().name, "t", "{method}");
            // The same request a day later: expired.
            let late = parse_amz_date(DATE).unwrap() + 86_400;
            let e = verify(&c, &request, late).unwrap_err();
            assert!(
                e.to_string().starts_with(
                    "Signature expired: 20150830T123600Z is now earlier than 20150831T122100Z"
                ),
                "{e}"
            );
            // Another body: the payload hash differs.
            let tampered = Request {
                body_sha256: sha256(b"x"),
                ..request
            };
            assert!(matches!(
                verify(&c, &tampered, now()),
                Err(AuthError::BadSignature(_))
            ));
        }
    }

    #[test]
    fn signatures_compare_as_lowercase_hex_in_full() {
        let expected = hex64(&sha256(b"x"));
        assert!(hex_eq(&expected, &expected));
        let upper = expected.to_ascii_uppercase();
        let mut last = expected;
        last[63] = if last[63] == b'0' { b'1' } else { b'0' };
        for bad in [
            &b""[..],
            &expected[..63],
            &upper[..],
            &last[..],
            &[b' '; 64][..],
        ] {
            assert!(
                !hex_eq(&expected, bad),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let mut longer = expected.to_vec();
        longer.push(b'0');
        assert!(!hex_eq(&expected, &longer));
    }

    #[test]
    fn the_scratch_buffer_starts_empty_and_a_grown_one_is_not_kept() {
        with_scratch(|b| {
            assert!(b.is_empty());
            b.extend_from_slice(&[b'a'; 10_000]);
        });
        with_scratch(|b| {
            assert!(b.is_empty() && b.capacity() <= 4096, "{}", b.capacity());
            b.extend_from_slice(b"xy");
        });
        with_scratch(|b| assert!(b.is_empty() && b.capacity() >= 2));
    }

    #[test]
    fn a_canonical_request_past_the_kept_scratch_size_verifies() {
        let c = credentials();
        let body = b"1,2\n";
        let long = "v".repeat(6000);
        let canonical_headers =
            format!("host:example.amazonaws.com\nx-amz-date:{DATE}\nx-long:{long}\n");
        let signed = "host;x-amz-date;x-long";
        let signature = sign_as_string("POST", "/p", &canonical_headers, signed, body);
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders={signed}, Signature={signature}"
        );
        let h = headers(&[
            ("host", "example.amazonaws.com"),
            ("x-amz-date", DATE),
            ("x-long", &long),
            ("authorization", &auth),
        ]);
        let request = Request {
            method: "POST",
            path: "/p",
            query: "",
            authority: None,
            headers: &h,
            body_sha256: sha256(body),
        };
        assert_eq!(verify(&c, &request, now()).unwrap().name, "t");
        // Twice: the second starts from a fresh buffer.
        assert_eq!(verify(&c, &request, now()).unwrap().name, "t");
    }

    #[test]
    fn canonical_pieces() {
        assert_eq!(
            canonical_uri("/endpoints/a%20b/invocations"),
            "/endpoints/a%2520b/invocations"
        );
        assert_eq!(canonical_uri("/a/./b/../c/"), "/a/c/");
        assert_eq!(canonical_uri(""), "/");
        assert_eq!(
            canonical_query("b=2&a=x%20y&X-Amz-Signature=zz&a=1", true),
            "a=1&a=x%20y&b=2"
        );
        let mut collapsed = String::new();
        collapse("  a \t  b  ", |piece| collapsed.push_str(piece));
        assert_eq!(collapsed, "a b");
        assert_eq!(
            format_amz_date(parse_amz_date("20240229T235959Z").unwrap()),
            "20240229T235959Z"
        );
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
        assert_eq!(parse_amz_date("2015-08-30T12:36:00Z"), None);
        for (path, plain) in [
            ("/endpoints/demo-1/invocations", true),
            ("/v2/models/m.onnx/infer", true),
            ("/a./b.", true),
            ("/a/./b", false),
            ("/a/.b", false),
            ("/.", false),
            ("/a/b/..", false),
            ("/a%20b", false),
            ("/a b", false),
            ("a/b", false),
            ("", false),
        ] {
            assert_eq!(is_plain_path(path), plain, "{path}");
        }
        for (sent, canonical, borrowed) in [
            ("host;x-amz-date", "host;x-amz-date", true),
            ("Host;;X-Amz-Date", "host;x-amz-date", false),
            (";host", "host", false),
            ("host;", "host", false),
            (";", "", false),
        ] {
            let names = lowercase_names(sent.into());
            assert_eq!(names, canonical, "{sent}");
            assert_eq!(matches!(names, Cow::Borrowed(_)), borrowed, "{sent}");
        }
    }

    #[test]
    fn unknown_key_missing_and_malformed() {
        let c = credentials();
        let h = headers(&[
            ("x-amz-date", DATE),
            (
                "authorization",
                "AWS4-HMAC-SHA256 Credential=NOPE/20150830/r/s/aws4_request, SignedHeaders=host, Signature=00",
            ),
        ]);
        let r = Request {
            method: "GET",
            path: "/",
            query: "",
            authority: None,
            headers: &h,
            body_sha256: sha256(b""),
        };
        assert!(matches!(verify(&c, &r, now()), Err(AuthError::UnknownKey)));
        let h = headers(&[("x-amz-date", DATE)]);
        let r = Request { headers: &h, ..r };
        assert!(matches!(verify(&c, &r, now()), Err(AuthError::Missing)));
        let h = headers(&[
            ("x-amz-date", DATE),
            (
                "authorization",
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830",
            ),
        ]);
        let r = Request { headers: &h, ..r };
        assert!(matches!(
            verify(&c, &r, now()),
            Err(AuthError::Incomplete(_))
        ));
    }

    /// A signature made the long way (the canonical request built as a string), to check
    /// the streamed canonical form against.
    fn sign_as_string(
        method: &str,
        path: &str,
        canonical_headers: &str,
        signed: &str,
        body: &[u8],
    ) -> String {
        let canonical = format!(
            "{method}\n{path}\n\n{canonical_headers}\n{signed}\n{}",
            std::str::from_utf8(&hex64(&sha256(body))).unwrap()
        );
        let to_sign = format!(
            "{ALGORITHM}\n{DATE}\n20150830/us-east-1/service/aws4_request\n{}",
            std::str::from_utf8(&hex64(&sha256(canonical.as_bytes()))).unwrap()
        );
        let key = signing_key(SECRET, "20150830", "us-east-1", "service");
        std::str::from_utf8(&hex64(&hmac(&key, to_sign.as_bytes())))
            .unwrap()
            .to_owned()
    }

    #[test]
    fn streamed_canonical_request_matches_the_string_form() {
        let c = credentials();
        let body = b"5.1,3.5,1.4,0.2\n";
        // Repeated and padded header values, an encoded path signed both ways, names in
        // SignedHeaders with capitals and an empty entry (lowercased, dropped).
        let canonical_headers =
            "host:example.amazonaws.com\nx-amz-date:20150830T123600Z\nx-custom:a b,c\n";
        for (path, signed_path, signed_list) in [
            (
                "/endpoints/a%20b/invocations",
                "/endpoints/a%2520b/invocations",
                "host;x-amz-date;x-custom",
            ),
            (
                "/endpoints/a%20b/invocations",
                "/endpoints/a%20b/invocations",
                "Host;;X-Amz-Date;x-custom",
            ),
            (
                "/endpoints/ab/invocations",
                "/endpoints/ab/invocations",
                "host;x-amz-date;x-custom",
            ),
        ] {
            let signature = sign_as_string(
                "POST",
                signed_path,
                canonical_headers,
                "host;x-amz-date;x-custom",
                body,
            );
            let auth = format!(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
                 SignedHeaders={signed_list}, Signature={signature}"
            );
            let mut h = headers(&[
                ("host", "example.amazonaws.com"),
                ("x-amz-date", DATE),
                ("x-custom", "  a   b "),
                ("x-custom", "c"),
                ("authorization", &auth),
            ]);
            fn post<'a>(path: &'a str, headers: &'a HeaderMap, body: &[u8]) -> Request<'a> {
                Request {
                    method: "POST",
                    path,
                    query: "",
                    authority: None,
                    headers,
                    body_sha256: sha256(body),
                }
            }
            assert_eq!(
                verify(&c, &post(path, &h, body), now()).unwrap().name,
                "t",
                "{signed_path}"
            );
            // The payload hash sent along must be the body's.
            let hash = hex64(&sha256(body));
            h.insert(
                "x-amz-content-sha256",
                std::str::from_utf8(&hash).unwrap().parse().unwrap(),
            );
            assert!(verify(&c, &post(path, &h, body), now()).is_ok());
            h.insert(
                "x-amz-content-sha256",
                hex64(&sha256(b"other"))[..].try_into().unwrap(),
            );
            let e = verify(&c, &post(path, &h, body), now()).unwrap_err();
            assert!(e.to_string().contains("x-amz-content-sha256"), "{e}");
        }
    }
}
