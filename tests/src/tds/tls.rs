//! TLS for the TDS test server, in its two forms:
//!
//! - TDS 8.0 strict: TLS (ALPN `tds/8.0`) wraps the TCP stream before the
//!   PRELOGIN ([`acceptor`], [`accept`]).
//! - TDS 7.4 with TLS negotiated in PRELOGIN (SQL Server with "Force
//!   Encryption"): the PRELOGIN travels in the clear, the reply says
//!   `ENCRYPT_ON` (or `ENCRYPT_REQ` to a client that offered `ENCRYPT_OFF`),
//!   then the TLS handshake records travel as the payload of PRELOGIN (0x12)
//!   packets in both directions; once it completes, TLS runs directly on the
//!   TCP stream and carries the rest of the session (LOGIN7 and every later
//!   packet) — what tiberius's `TlsPreloginWrapper` expects
//!   ([`prelogin_acceptor`], [`negotiate`]). As with SQL Server, TLS 1.3 is
//!   only offered in strict mode; this form is TLS 1.2. A client that does
//!   not support encryption is told `ENCRYPT_REQ` and disconnected (SQL
//!   Server logs error 17835).

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use std::task::{Context as TaskContext, Poll, ready};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::login::{
    ENCRYPT_NOT_SUP, ENCRYPT_OFF, ENCRYPT_ON, ENCRYPT_REQ, instance_valid, parse_prelogin,
    prelogin_reply,
};
use super::packet::{DEFAULT_PACKET_SIZE, HEADER_LEN, MessageReader, MessageWriter, PRELOGIN};

pub(crate) const ALPN_TDS_80: &[u8] = b"tds/8.0";

/// How long a client may take over PRELOGIN and the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

fn load(cert: &Path, key: &Path) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let chain = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing {}", cert.display()))?;
    let key =
        PrivateKeyDer::from_pem_file(key).with_context(|| format!("reading {}", key.display()))?;
    Ok((chain, key))
}

/// How a server's connections start.
#[derive(Clone)]
pub(crate) enum Mode {
    /// Plain TDS 7.4: PRELOGIN answers "encryption not supported".
    Plain,
    /// TDS 8.0 strict: TLS before the PRELOGIN.
    Strict(TlsAcceptor),
    /// TDS 7.4 with TLS negotiated in PRELOGIN (encryption forced).
    Prelogin(TlsAcceptor),
}

/// A TDS 8.0 strict TLS acceptor for a PEM certificate chain and key.
pub(crate) fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor> {
    let (chain, key) = load(cert, key)?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![ALPN_TDS_80.to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// A TLS acceptor for TLS negotiated in PRELOGIN: TLS 1.2, no ALPN.
pub(crate) fn prelogin_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor> {
    let (chain, key) = load(cert, key)?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Complete a strict handshake; the client must have negotiated `tds/8.0`.
pub(crate) async fn accept(acceptor: &TlsAcceptor, tcp: TcpStream) -> Result<TlsStream<TcpStream>> {
    let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
        .await
        .context("TLS handshake timed out")?
        .context("TLS handshake")?;
    let alpn = stream.get_ref().1.alpn_protocol();
    ensure!(
        alpn == Some(ALPN_TDS_80),
        "client did not negotiate ALPN tds/8.0 (got {alpn:?})"
    );
    Ok(stream)
}

/// The encryption a server that forces it answers to the client's PRELOGIN
/// ENCRYPTION value (MS-TDS 2.2.6.5): `ENCRYPT_ON` to a client asking for
/// it (`ON`/`REQ`), `ENCRYPT_REQ` to one offering login-only encryption
/// (`OFF`: the whole session is then encrypted) and to one that cannot
/// encrypt (`NOT_SUP`: the connection is then closed).
pub(crate) fn forced_encryption_reply(client: u8) -> u8 {
    match client & 0x7F {
        ENCRYPT_ON | ENCRYPT_REQ => ENCRYPT_ON,
        ENCRYPT_OFF | ENCRYPT_NOT_SUP => ENCRYPT_REQ,
        _ => ENCRYPT_REQ,
    }
}

/// PRELOGIN in the clear, then the TLS handshake inside PRELOGIN packets;
/// returns the TLS stream the session continues on (its next message is the
/// LOGIN7). `own_instance` is the instance this server is (INSTOPT check).
pub(crate) async fn negotiate(
    acceptor: &TlsAcceptor,
    mut tcp: TcpStream,
    spid: u16,
    own_instance: Option<String>,
) -> Result<TlsStream<PreloginTls<TcpStream>>> {
    let work = async {
        let size = Arc::new(AtomicU32::new(DEFAULT_PACKET_SIZE));
        let msg = MessageReader::new(&mut tcp, size.clone())
            .next()
            .await?
            .context("connection closed before PRELOGIN")?;
        ensure!(
            msg.ty == PRELOGIN,
            "expected PRELOGIN, got packet type 0x{:02X}",
            msg.ty
        );
        let pre = parse_prelogin(&msg.payload)?;
        let encryption = forced_encryption_reply(pre.encryption);
        let valid = instance_valid(own_instance.as_deref(), &pre.instance);
        let mut writer = MessageWriter::new(&mut tcp, size, spid);
        writer
            .send(&prelogin_reply(encryption, valid), true)
            .await?;
        if pre.encryption & 0x7F == ENCRYPT_NOT_SUP {
            bail!(
                "error 17835: Encryption is required to connect to this server but the client \
                 library does not support encryption; the connection has been closed."
            );
        }
        if !valid {
            // The client ends the connection after an invalid INSTOPT.
            bail!("PRELOGIN named instance {:?}, not this one", pre.instance);
        }
        let mut stream = acceptor
            .accept(PreloginTls::new(tcp, spid))
            .await
            .context("TLS handshake (inside PRELOGIN packets)")?;
        stream.get_mut().0.handshake_complete();
        Ok(stream)
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, work)
        .await
        .context("PRELOGIN and TLS handshake timed out")?
}

/// The server side of TLS negotiated in PRELOGIN: while the handshake runs,
/// reads strip PRELOGIN packet headers (any other packet type is refused)
/// and writes are framed as PRELOGIN packets at each flush; afterwards the
/// bytes pass through unchanged.
pub(crate) struct PreloginTls<S> {
    inner: S,
    handshaking: bool,
    spid: u16,
    packet_id: u8,
    header: [u8; HEADER_LEN],
    header_pos: usize,
    /// Payload bytes of the current incoming packet not read yet.
    remaining: usize,
    /// TLS bytes written since the last flush.
    out: Vec<u8>,
    /// Framed packets being written, and how much of them is written.
    framed: Vec<u8>,
    framed_pos: usize,
}

impl<S> PreloginTls<S> {
    pub(crate) fn new(inner: S, spid: u16) -> Self {
        PreloginTls {
            inner,
            handshaking: true,
            spid,
            packet_id: 1,
            header: [0; HEADER_LEN],
            header_pos: 0,
            remaining: 0,
            out: Vec::new(),
            framed: Vec::new(),
            framed_pos: 0,
        }
    }

    /// The handshake is over: pass bytes through from now on.
    pub(crate) fn handshake_complete(&mut self) {
        self.handshaking = false;
    }

    /// Move the buffered TLS bytes into PRELOGIN packets of at most the
    /// default packet size; the last carries END OF MESSAGE.
    fn frame(&mut self) {
        let chunk = DEFAULT_PACKET_SIZE as usize - HEADER_LEN;
        let parts: Vec<Vec<u8>> = self.out.chunks(chunk).map(<[u8]>::to_vec).collect();
        let count = parts.len();
        for (i, part) in parts.into_iter().enumerate() {
            let status = u8::from(i + 1 == count);
            let len = (part.len() + HEADER_LEN) as u16;
            self.framed.push(PRELOGIN);
            self.framed.push(status);
            self.framed.extend_from_slice(&len.to_be_bytes());
            self.framed.extend_from_slice(&self.spid.to_be_bytes());
            self.framed.push(self.packet_id);
            self.framed.push(0);
            self.framed.extend_from_slice(&part);
            self.packet_id = self.packet_id.wrapping_add(1);
        }
        self.out.clear();
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

impl<S: AsyncRead + Unpin> AsyncRead for PreloginTls<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.handshaking {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        while this.remaining == 0 {
            while this.header_pos < HEADER_LEN {
                let mut rb = ReadBuf::new(&mut this.header[this.header_pos..]);
                ready!(Pin::new(&mut this.inner).poll_read(cx, &mut rb))?;
                let n = rb.filled().len();
                if n == 0 {
                    if this.header_pos == 0 {
                        return Poll::Ready(Ok(()));
                    }
                    return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
                }
                this.header_pos += n;
            }
            let ty = this.header[0];
            if ty != PRELOGIN {
                return Poll::Ready(Err(invalid(format!(
                    "packet type 0x{ty:02X} during the TLS handshake (expected PRELOGIN)"
                ))));
            }
            let len = usize::from(u16::from_be_bytes([this.header[2], this.header[3]]));
            if !(HEADER_LEN..=DEFAULT_PACKET_SIZE as usize).contains(&len) {
                return Poll::Ready(Err(invalid(format!(
                    "PRELOGIN packet length {len} during the TLS handshake"
                ))));
            }
            this.remaining = len - HEADER_LEN;
            this.header_pos = 0;
        }
        let mut tmp = [0u8; DEFAULT_PACKET_SIZE as usize];
        let want = this.remaining.min(buf.remaining()).min(tmp.len());
        let mut rb = ReadBuf::new(&mut tmp[..want]);
        ready!(Pin::new(&mut this.inner).poll_read(cx, &mut rb))?;
        let n = rb.filled().len();
        if n == 0 && want > 0 {
            return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
        }
        buf.put_slice(rb.filled());
        this.remaining -= n;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for PreloginTls<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if !this.handshaking {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        }
        this.out.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.out.is_empty() {
            this.frame();
        }
        while this.framed_pos < this.framed.len() {
            let n =
                ready!(Pin::new(&mut this.inner).poll_write(cx, &this.framed[this.framed_pos..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            this.framed_pos += n;
        }
        this.framed.clear();
        this.framed_pos = 0;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(Pin::new(&mut *this).poll_flush(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
