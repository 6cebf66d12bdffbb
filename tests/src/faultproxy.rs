//! An in-test TCP fault proxy: agents talk to the controller through it, and
//! the test decides at run time what the network does.
//!
//! Faults ([`Fault`]), applied to existing and new connections alike:
//! - [`Fault::Pass`]: bytes flow both ways.
//! - [`Fault::BlackHole`]: connections are accepted, nothing is forwarded in
//!   either direction (bytes already in flight wait in the socket buffers,
//!   as TCP retransmissions would); a new connection does not even reach the
//!   upstream. Healing (back to `Pass` or `Delay`) lets the held bytes go on.
//! - [`Fault::Delay`]: every chunk waits the given time before it is written
//!   on (both directions).
//! - [`Fault::Reset`]: every open connection is closed with a TCP RST, and so
//!   is every new one, until the fault changes.
//!
//! [`FaultProxy::reset_existing`] resets the connections open now and lets new
//! ones through. The upstream address is fixed (a restarted controller binds
//! the same port). Dropping the proxy stops it and closes its connections.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the proxy does to the traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward everything.
    Pass,
    /// Accept, forward nothing (both directions, existing connections included).
    BlackHole,
    /// Forward each chunk after this delay.
    Delay(Duration),
    /// Reset every existing and new connection.
    Reset,
}

/// The control state every connection watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Control {
    fault: Fault,
    /// Connections opened before this epoch are reset.
    reset_epoch: u64,
}

/// Counters, for tests and summaries.
#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    resets: AtomicU64,
    to_upstream: AtomicU64,
    to_client: AtomicU64,
}

/// A snapshot of the proxy's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Connections accepted.
    pub accepted: u64,
    /// Connections closed with a reset.
    pub resets: u64,
    /// Bytes forwarded client → upstream.
    pub to_upstream: u64,
    /// Bytes forwarded upstream → client.
    pub to_client: u64,
}

/// A running proxy; stops when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    control: watch::Sender<Control>,
    counters: Arc<Counters>,
    accept: JoinHandle<()>,
}

/// Why a pump stopped.
enum End {
    /// A side closed or failed: close the other one normally.
    Closed,
    /// The test asked for a reset.
    Reset,
}

impl FaultProxy {
    /// Listen on `127.0.0.1:0`, forwarding to `upstream`, in [`Fault::Pass`].
    pub async fn start(upstream: SocketAddr) -> Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("bind the fault proxy")?;
        let addr = listener.local_addr()?;
        let (control, _) = watch::channel(Control {
            fault: Fault::Pass,
            reset_epoch: 0,
        });
        let counters = Arc::new(Counters::default());
        let accept = tokio::spawn(accept_loop(
            listener,
            upstream,
            control.clone(),
            counters.clone(),
        ));
        Ok(FaultProxy {
            addr,
            upstream,
            control,
            counters,
            accept,
        })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The upstream it forwards to.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// `http://<addr>`, for an agent's `controller_url`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The current fault.
    pub fn fault(&self) -> Fault {
        self.control.borrow().fault
    }

    /// Change the fault; existing connections follow at once.
    pub fn set(&self, fault: Fault) {
        self.control.send_modify(|c| c.fault = fault);
    }

    /// Forward everything again (heals a black hole or a reset).
    pub fn pass(&self) {
        self.set(Fault::Pass);
    }

    /// Forward nothing, both directions.
    pub fn black_hole(&self) {
        self.set(Fault::BlackHole);
    }

    /// Delay every chunk by `by`.
    pub fn delay(&self, by: Duration) {
        self.set(Fault::Delay(by));
    }

    /// Reset existing and new connections until the fault changes.
    pub fn reset(&self) {
        self.set(Fault::Reset);
    }

    /// Reset the connections open now; new ones follow the current fault.
    pub fn reset_existing(&self) {
        self.control.send_modify(|c| c.reset_epoch += 1);
    }

    /// The counters so far.
    pub fn stats(&self) -> Stats {
        let c = &self.counters;
        Stats {
            accepted: c.accepted.load(Ordering::Relaxed),
            resets: c.resets.load(Ordering::Relaxed),
            to_upstream: c.to_upstream.load(Ordering::Relaxed),
            to_client: c.to_client.load(Ordering::Relaxed),
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        // Connection tasks end when the control channel closes.
        self.control.send_modify(|c| c.fault = Fault::Reset);
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    control: watch::Sender<Control>,
    counters: Arc<Counters>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        counters.accepted.fetch_add(1, Ordering::Relaxed);
        let rx = control.subscribe();
        tokio::spawn(connection(client, upstream, rx, counters.clone()));
    }
}

/// Whether the connection born in `epoch` must be reset now.
fn must_reset(c: &Control, epoch: u64) -> bool {
    c.fault == Fault::Reset || c.reset_epoch > epoch
}

/// Close with RST (zero linger), counting it.
fn rst(stream: TcpStream, counters: &Counters) {
    let _ = stream.set_zero_linger();
    counters.resets.fetch_add(1, Ordering::Relaxed);
    drop(stream);
}

/// Wait until traffic may flow: Ok(delay) then, Err on reset or shutdown.
async fn flow(rx: &mut watch::Receiver<Control>, epoch: u64) -> Result<Option<Duration>, End> {
    loop {
        let c = *rx.borrow_and_update();
        if must_reset(&c, epoch) {
            return Err(End::Reset);
        }
        match c.fault {
            Fault::Pass => return Ok(None),
            Fault::Delay(d) => return Ok(Some(d)),
            Fault::BlackHole | Fault::Reset => {}
        }
        if rx.changed().await.is_err() {
            return Err(End::Reset);
        }
    }
}

async fn connection(
    client: TcpStream,
    upstream: SocketAddr,
    mut rx: watch::Receiver<Control>,
    counters: Arc<Counters>,
) {
    let epoch = rx.borrow().reset_epoch;
    // A black hole holds the connection before it reaches the upstream.
    if flow(&mut rx, epoch).await.is_err() {
        rst(client, &counters);
        return;
    }
    let server = match TcpStream::connect(upstream).await {
        Ok(s) => s,
        Err(_) => {
            // The upstream is down (a killed controller): refuse like it would.
            rst(client, &counters);
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_r, client_w) = client.into_split();
    let (server_r, server_w) = server.into_split();
    let up = pump(client_r, server_w, rx.clone(), epoch, &counters.to_upstream);
    let down = pump(server_r, client_w, rx.clone(), epoch, &counters.to_client);
    tokio::pin!(up, down);
    // One direction ending (EOF) lets the other drain, unless it is a reset.
    let (first, other_up) = tokio::select! {
        r = &mut up => (r, false),
        r = &mut down => (r, true),
    };
    let (client_halves, server_halves) = match first {
        (End::Reset, a, b) => {
            // Take the other pump's halves too and reset both sockets.
            let (_, c, d) = if other_up { up.await } else { down.await };
            if other_up {
                ((c, b), (a, d))
            } else {
                ((a, d), (c, b))
            }
        }
        (End::Closed, a, b) => {
            let (end, c, d) = if other_up { up.await } else { down.await };
            if !matches!(end, End::Reset) {
                return;
            }
            if other_up {
                ((c, b), (a, d))
            } else {
                ((a, d), (c, b))
            }
        }
    };
    if let Ok(s) = client_halves.0.reunite(client_halves.1) {
        rst(s, &counters);
    }
    if let Ok(s) = server_halves.0.reunite(server_halves.1) {
        rst(s, &counters);
    }
}

/// Copy `from` to `to` under the current fault. Returns why it stopped and the halves.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut rx: watch::Receiver<Control>,
    epoch: u64,
    bytes: &AtomicU64,
) -> (End, OwnedReadHalf, OwnedWriteHalf) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        // Do not even read while black-holed: the bytes stay in flight.
        if let Err(end) = flow(&mut rx, epoch).await {
            return (end, from, to);
        }
        let n = tokio::select! {
            r = from.read(&mut buf) => match r {
                Ok(0) | Err(_) => {
                    let _ = to.shutdown().await;
                    return (End::Closed, from, to);
                }
                Ok(n) => n,
            },
            changed = rx.changed() => {
                if changed.is_err() {
                    return (End::Reset, from, to);
                }
                continue;
            }
        };
        // The fault may change while the chunk is held: apply the newest.
        let delay = match flow(&mut rx, epoch).await {
            Ok(d) => d,
            Err(end) => return (end, from, to),
        };
        if let Some(d) = delay {
            tokio::select! {
                () = tokio::time::sleep(d) => {}
                () = wait_reset(&mut rx, epoch) => return (End::Reset, from, to),
            }
            // A black hole that began during the delay still holds the chunk.
            if let Err(end) = flow(&mut rx, epoch).await {
                return (end, from, to);
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return (End::Closed, from, to);
        }
        bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Resolves when the connection born in `epoch` must be reset (or the proxy is gone).
async fn wait_reset(rx: &mut watch::Receiver<Control>, epoch: u64) {
    loop {
        if must_reset(&rx.borrow_and_update(), epoch) {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests;
