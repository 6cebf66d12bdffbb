//! An S3-compatible object store client: requests signed by `rusty-s3`
//! (SigV4, presigned URLs carrying the signed `x-amz-*` headers), sent with
//! the agent's reqwest (rustls, aws-lc-rs; a pinned CA when the store has
//! `ca_file`). Each request is retried with backon on 5xx, 429 and
//! connection errors and stalls, and once at once on a refused time (see
//! below); never on other 4xx (403: bad keys, a clear error). A request that makes no progress for the store's
//! `read_timeout` is stalled ([`stall`]; [`Error::Stalled`]).
//! Requests are signed with the store's clock when the host's is more than
//! 5 min off it ([`clock`]: from the answers' `Date` header); a 403
//! `RequestTimeTooSkewed` is sent again at once, signed with the store's time.
//! Multipart uploads (create, part, complete, abort) are in [`multipart`].
//! The upload executor sees [`Client`], [`Error`] and plain values only.

use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use base64::Engine as _;
use rusty_s3::actions::{ListObjectsV2, ListObjectsV2Response};
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};

use crate::config::store::{S3Store, Sse};

mod clock;
mod multipart;
mod stall;

use clock::StoreClock;
use stall::Progress;

/// How long a signed URL is valid.
const SIGNED_FOR: Duration = Duration::from_secs(900);
/// Attempts per request (the first plus retries).
const ATTEMPTS: usize = 6;
/// Connecting (TCP and TLS) to the store's endpoint.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors of the object store client.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store's settings or keys cannot be used.
    #[error("store {store}: {message}")]
    Setup {
        /// Store name.
        store: String,
        /// Why.
        message: String,
    },
    /// The server answered with an error status.
    #[error("{op} {key}: HTTP {status} {code}: {message}")]
    Status {
        /// What was tried.
        op: &'static str,
        /// Object key.
        key: String,
        /// HTTP status.
        status: u16,
        /// S3 error code (`AccessDenied`, `SignatureDoesNotMatch`, …).
        code: String,
        /// The server's message.
        message: String,
    },
    /// No answer (connection refused or reset, timeout).
    #[error("{op} {key}: {message}")]
    Transport {
        /// What was tried.
        op: &'static str,
        /// Object key.
        key: String,
        /// Why (the error chain).
        message: String,
    },
    /// No progress for the store's `read_timeout`: the server neither sent
    /// anything nor took any more of the request's body.
    #[error(
        "{op} {key}: stalled: the server sent nothing for {} (the store's read_timeout)",
        humantime::format_duration(*idle)
    )]
    Stalled {
        /// What was tried.
        op: &'static str,
        /// Object key.
        key: String,
        /// How long nothing moved.
        idle: Duration,
    },
    /// An answer that could not be read.
    #[error("{op} {key}: unexpected answer: {message}")]
    Answer {
        /// What was tried.
        op: &'static str,
        /// Object key.
        key: String,
        /// Why.
        message: String,
    },
}

impl Error {
    /// Whether trying again may help (5xx, 429, no answer, a stall).
    pub fn retryable(&self) -> bool {
        match self {
            Error::Status { status, .. } if self.clock_skewed() => *status == 403,
            Error::Status { status, .. } => *status >= 500 || *status == 429,
            Error::Transport { .. } | Error::Stalled { .. } => true,
            Error::Setup { .. } | Error::Answer { .. } => false,
        }
    }

    /// Whether the keys were refused (403 and the codes of bad keys).
    /// (A 403 `RequestTimeTooSkewed` is a clock, not the keys.)
    pub fn bad_credentials(&self) -> bool {
        !self.clock_skewed() && matches!(self, Error::Status { status: 403, .. })
            || matches!(self, Error::Status { code, .. } if code == "InvalidAccessKeyId"
                || code == "SignatureDoesNotMatch")
    }

    /// Whether the server refused the request's time: `RequestTimeTooSkewed`,
    /// or a presigned URL it takes as expired or not valid yet (403
    /// `AccessDenied` "Request has expired" / "Request is not valid yet",
    /// as MinIO and S3 answer presigned requests from a skewed host).
    pub fn clock_skewed(&self) -> bool {
        match self {
            Error::Status { code, .. } if code == "RequestTimeTooSkewed" => true,
            Error::Status {
                status: 403,
                code,
                message,
                ..
            } if code == "AccessDenied" => {
                let m = message.to_ascii_lowercase();
                m.contains("request has expired")
                    || m.contains("not valid yet")
                    || m.contains("not yet valid")
            }
            _ => false,
        }
    }
}

/// How parts are checksummed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checksum {
    /// `x-amz-checksum-sha256` (the server echoed the algorithm).
    Sha256,
    /// `Content-MD5` (a server without additional checksums).
    Md5,
}

/// A part sent: its number, ETag and checksum (base64).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// 1-based.
    pub number: u16,
    /// As the server returned it (quoted).
    pub etag: String,
    /// Base64 sha256 of the part (sha256 mode).
    pub sha256: Option<String>,
}

/// What HEAD says about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// Bytes.
    pub size: u64,
    /// `x-amz-meta-sha256`.
    pub sha256: Option<String>,
    /// ETag.
    pub etag: String,
}

/// One listed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Key.
    pub key: String,
    /// Bytes.
    pub size: u64,
    /// `LastModified` (the store's clock), when the server sent it.
    pub modified: Option<chrono::DateTime<chrono::Utc>>,
}

/// An object's body being read ([`Client::get`]).
#[derive(Debug)]
pub struct Body {
    store: String,
    key: String,
    read_timeout: Duration,
    resp: reqwest::Response,
    /// `x-amz-meta-sha256`.
    pub sha256: Option<String>,
    /// `Content-Length`, when the server sent it.
    pub size: Option<u64>,
}

impl Body {
    /// The next chunk; `None` at the end. [`Error::Stalled`] when none
    /// comes within the store's `read_timeout` (not retried here: the
    /// caller starts over).
    pub async fn chunk(&mut self) -> Result<Option<bytes::Bytes>, Error> {
        let op = "GetObject";
        match tokio::time::timeout(self.read_timeout, self.resp.chunk()).await {
            Ok(r) => r.map_err(|e| transport(op, &self.key, e)),
            Err(_) => Err(stalled(&self.store, op, &self.key, self.read_timeout)),
        }
    }
}

/// A store's bucket with the keys read at creation.
pub struct Client {
    http: reqwest::Client,
    bucket: Bucket,
    creds: Credentials,
    store: S3Store,
    clock: Arc<StoreClock>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("store", &self.store.name)
            .finish_non_exhaustive()
    }
}

/// An HTTP answer: status, headers, body.
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: bytes::Bytes,
}

impl Client {
    /// A client for `store`, its keys read now.
    pub fn new(store: &S3Store) -> Result<Client, Error> {
        let setup = |message: String| Error::Setup {
            store: store.name.clone(),
            message,
        };
        let keys = store.keys.read().map_err(setup)?;
        let creds = match keys.token {
            Some(t) => Credentials::new_with_token(keys.access, keys.secret, t),
            None => Credentials::new(keys.access, keys.secret),
        };
        let endpoint = reqwest::Url::parse(&store.endpoint).map_err(|e| setup(e.to_string()))?;
        let style = if store.path_style {
            UrlStyle::Path
        } else {
            UrlStyle::VirtualHost
        };
        let bucket = Bucket::new(endpoint, style, store.bucket.clone(), store.region.clone())
            .map_err(|e| setup(e.to_string()))?;
        // No reqwest read_timeout: before the answer's head it is a deadline
        // for the whole request, body included ([`stall`] does it instead).
        let mut builder = reqwest::Client::builder().connect_timeout(CONNECT_TIMEOUT);
        if let Some(ca) = &store.ca_file {
            // Only this CA: the system roots are not trusted for the store.
            let bundle = crate::tls::CaBundle::load(ca)
                .map_err(|e| setup(format!("ca_file {}: {e}", ca.display())))?;
            let certs = bundle
                .certs_der()
                .map(reqwest::Certificate::from_der)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| setup(format!("ca_file {}: {e}", ca.display())))?;
            builder = builder.tls_certs_only(certs);
        }
        let http = builder.build().map_err(|e| setup(e.to_string()))?;
        Ok(Client {
            http,
            bucket,
            creds,
            store: store.clone(),
            clock: StoreClock::for_store(&store.name),
        })
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.store.bucket
    }

    /// `sent` (a request's answer head), or [`Error::Stalled`] once
    /// `progress` has not moved for the store's `read_timeout`.
    async fn unless_stalled(
        &self,
        op: &'static str,
        key: &str,
        progress: &Progress,
        sent: impl std::future::Future<Output = Result<reqwest::Response, reqwest::Error>>,
    ) -> Result<reqwest::Response, Error> {
        let limit = self.store.read_timeout;
        tokio::select! {
            r = sent => r.map_err(|e| transport(op, key, e)),
            () = progress.stalled(limit) => Err(stalled(&self.store.name, op, key, limit)),
        }
    }

    /// An answer's whole body (small: XML, a manifest, a tail), each chunk
    /// within the store's `read_timeout` of the previous one.
    async fn read_all(
        &self,
        op: &'static str,
        key: &str,
        mut resp: reqwest::Response,
    ) -> Result<bytes::Bytes, Error> {
        let limit = self.store.read_timeout;
        let mut out = bytes::BytesMut::new();
        loop {
            match tokio::time::timeout(limit, resp.chunk()).await {
                Ok(Ok(Some(c))) => out.extend_from_slice(&c),
                Ok(Ok(None)) => return Ok(out.freeze()),
                Ok(Err(e)) => return Err(transport(op, key, e)),
                Err(_) => return Err(stalled(&self.store.name, op, key, limit)),
            }
        }
    }

    /// Send one signed request, retrying what may pass on a second try.
    async fn send(
        &self,
        op: &'static str,
        key: &str,
        method: reqwest::Method,
        action: &(dyn Fn() -> (reqwest::Url, Vec<(String, String)>) + Sync),
        body: bytes::Bytes,
    ) -> Result<Answer, Error> {
        let attempt = || async {
            let (url, headers) = action();
            let mut req = self.http.request(method.clone(), url);
            for (k, v) in &headers {
                req = req.header(k, v);
            }
            let progress = Progress::new();
            let sent = req.body(progress.body(body.clone())).send();
            let resp = self.unless_stalled(op, key, &progress, sent).await?;
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let body = self.read_all(op, key, resp).await?;
            let text = (status >= 300).then(|| String::from_utf8_lossy(&body));
            self.observe(&headers, text.as_deref());
            if let Some(text) = text {
                return Err(Error::Status {
                    op,
                    key: key.to_owned(),
                    status,
                    code: xml_field(&text, "Code").unwrap_or_default(),
                    message: xml_field(&text, "Message").unwrap_or_default(),
                });
            }
            Ok(Answer {
                status,
                headers,
                body,
            })
        };
        let once = || self.skew_retry(attempt);
        once.retry(retries())
        .when(Error::retryable)
        .notify(|e, after| {
            tracing::warn!(store = %self.store.name, error = %e, retry_in = ?after, "Object store request failed; retrying");
        })
        .await
    }

    /// Headers every new object gets: SSE, storage class, user metadata.
    fn object_headers(&self, sha256_hex: &str) -> Vec<(String, String)> {
        let mut h = vec![("x-amz-meta-sha256".to_owned(), sha256_hex.to_owned())];
        match &self.store.sse {
            Some(Sse::Aes256) => h.push(("x-amz-server-side-encryption".into(), "AES256".into())),
            Some(Sse::Kms(id)) => {
                h.push(("x-amz-server-side-encryption".into(), "aws:kms".into()));
                if let Some(id) = id {
                    h.push((
                        "x-amz-server-side-encryption-aws-kms-key-id".into(),
                        id.clone(),
                    ));
                }
            }
            None => {}
        }
        if let Some(c) = &self.store.storage_class {
            h.push(("x-amz-storage-class".into(), c.clone()));
        }
        h
    }

    /// Sign `action` with `headers` added to it; the URL and the headers to send.
    fn signed<'a, A: S3Action<'a>>(
        &self,
        mut action: A,
        headers: &'a [(String, String)],
        query: &'a [(String, String)],
    ) -> (reqwest::Url, Vec<(String, String)>) {
        for (k, v) in headers {
            action.headers_mut().insert(k.as_str(), v.as_str());
        }
        for (k, v) in query {
            action.query_mut().insert(k.as_str(), v.as_str());
        }
        (self.sign(&action), headers.to_vec())
    }

    /// A small object in one PUT (a manifest), with Content-MD5.
    pub async fn put_small(
        &self,
        key: &str,
        data: bytes::Bytes,
        sha256_hex: &str,
    ) -> Result<(), Error> {
        use md5::Digest as _;
        let mut headers = self.object_headers(sha256_hex);
        headers.push((
            "content-md5".into(),
            base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(&data)),
        ));
        self.send(
            "PutObject",
            key,
            reqwest::Method::PUT,
            &|| {
                self.signed(
                    self.bucket.put_object(Some(&self.creds), key),
                    &headers,
                    &[],
                )
            },
            data.clone(),
        )
        .await
        .map(drop)
    }

    /// HEAD an object; `None` when there is none.
    pub async fn head(&self, key: &str) -> Result<Option<Head>, Error> {
        let r = self
            .send(
                "HeadObject",
                key,
                reqwest::Method::HEAD,
                &|| self.signed(self.bucket.head_object(Some(&self.creds), key), &[], &[]),
                bytes::Bytes::new(),
            )
            .await;
        let a = match r {
            Ok(a) => a,
            Err(Error::Status { status: 404, .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let size = header(&a.headers, "content-length")
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Error::Answer {
                op: "HeadObject",
                key: key.to_owned(),
                message: "no Content-Length".into(),
            })?;
        Ok(Some(Head {
            size,
            sha256: header(&a.headers, "x-amz-meta-sha256"),
            etag: header(&a.headers, "etag").unwrap_or_default(),
        }))
    }

    /// The last `n` bytes of an object (a ranged GET).
    pub async fn tail(&self, key: &str, n: u64) -> Result<bytes::Bytes, Error> {
        let range = [("range".to_owned(), format!("bytes=-{n}"))];
        self.send(
            "GetObject",
            key,
            reqwest::Method::GET,
            &|| self.signed(self.bucket.get_object(Some(&self.creds), key), &range, &[]),
            bytes::Bytes::new(),
        )
        .await
        .map(|a| a.body)
    }

    /// GET an object for reading chunk by chunk ([`Body::chunk`]: bounded
    /// memory whatever its size). The request is retried as every other one
    /// until the answer's head arrives; a failure while the body is read is
    /// returned to the caller, who starts over.
    pub async fn get(&self, key: &str) -> Result<Body, Error> {
        let op = "GetObject";
        let attempt = || async {
            let url = self.sign(&self.bucket.get_object(Some(&self.creds), key));
            let progress = Progress::new();
            let sent = self.http.get(url).send();
            let resp = self.unless_stalled(op, key, &progress, sent).await?;
            let status = resp.status().as_u16();
            if status >= 300 {
                let headers = resp.headers().clone();
                let body = self.read_all(op, key, resp).await.unwrap_or_default();
                let text = String::from_utf8_lossy(&body);
                self.observe(&headers, Some(&text));
                return Err(Error::Status {
                    op,
                    key: key.to_owned(),
                    status,
                    code: xml_field(&text, "Code").unwrap_or_default(),
                    message: xml_field(&text, "Message").unwrap_or_default(),
                });
            }
            self.observe(resp.headers(), None);
            Ok(resp)
        };
        let once = || self.skew_retry(attempt);
        let resp = once
            .retry(retries())
            .when(Error::retryable)
            .notify(|e, after| {
                tracing::warn!(store = %self.store.name, error = %e, retry_in = ?after, "Object store request failed; retrying");
            })
            .await?;
        let headers = resp.headers();
        Ok(Body {
            store: self.store.name.clone(),
            key: key.to_owned(),
            read_timeout: self.store.read_timeout,
            sha256: header(headers, "x-amz-meta-sha256"),
            size: header(headers, "content-length").and_then(|s| s.parse().ok()),
            resp,
        })
    }

    /// Every object under `prefix` (ListObjectsV2, all pages).
    pub async fn list(&self, prefix: &str) -> Result<Vec<Listed>, Error> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let t = token.clone();
            let a = self
                .send(
                    "ListObjectsV2",
                    prefix,
                    reqwest::Method::GET,
                    &|| {
                        let mut l: ListObjectsV2<'_> =
                            self.bucket.list_objects_v2(Some(&self.creds));
                        l.with_prefix(prefix);
                        if let Some(t) = &t {
                            l.with_continuation_token(t.clone());
                        }
                        (self.sign(&l), Vec::new())
                    },
                    bytes::Bytes::new(),
                )
                .await?;
            let text = String::from_utf8_lossy(&a.body);
            let page: ListObjectsV2Response =
                ListObjectsV2::parse_response(&text).map_err(|e| Error::Answer {
                    op: "ListObjectsV2",
                    key: prefix.to_owned(),
                    message: e.to_string(),
                })?;
            out.extend(page.contents.into_iter().map(|c| Listed {
                key: c.key,
                size: c.size.unwrap_or(0),
                modified: c.last_modified.as_deref().and_then(clock::parse_s3_time),
            }));
            match page.next_continuation_token {
                Some(t) => token = Some(t),
                None => return Ok(out),
            }
        }
    }

    /// Delete an object.
    pub async fn delete(&self, key: &str) -> Result<(), Error> {
        self.send(
            "DeleteObject",
            key,
            reqwest::Method::DELETE,
            &|| self.signed(self.bucket.delete_object(Some(&self.creds), key), &[], &[]),
            bytes::Bytes::new(),
        )
        .await
        .map(drop)
    }
}

/// A request that got no answer (the error chain, without the signed URL).
fn transport(op: &'static str, key: &str, e: reqwest::Error) -> Error {
    Error::Transport {
        op,
        key: key.to_owned(),
        message: chain(&e.without_url()),
    }
}

/// A request that made no progress for `idle`, logged as it is seen.
fn stalled(store: &str, op: &'static str, key: &str, idle: Duration) -> Error {
    tracing::warn!(store, op, key, read_timeout = %humantime::format_duration(idle), "Store request stalled: the server sent nothing within read_timeout");
    Error::Stalled {
        op,
        key: key.to_owned(),
        idle,
    }
}

/// An error and its causes, one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn header(h: &reqwest::header::HeaderMap, name: &str) -> Option<String> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// The text of the first `<name>` element (S3's answers are flat enough).
pub fn xml_field(text: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = text.find(&open)? + open.len();
    let end = text[start..].find(&format!("</{name}>"))? + start;
    Some(text[start..end].to_owned())
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// How a failed request is retried: [`ATTEMPTS`] in all, exponential
/// backoff from 200 ms to 5 s with jitter (only [`Error::retryable`]).
fn retries() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(5))
        .with_max_times(ATTEMPTS - 1)
        .with_jitter()
}

#[cfg(test)]
mod tests;
