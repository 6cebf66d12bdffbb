//! A SQL Server Browser (SSRP, MS-SQLR) test responder on UDP `127.0.0.1:0`:
//! answers `CLNT_UCAST_INST` (0x04 + instance name) for the instances it
//! knows with `SVR_RESP` (0x05, u16 LE length, `ServerName;…;tcp;<port>;;`),
//! and, like the real service, stays silent for an unknown instance.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use tokio::net::UdpSocket;

/// A running responder; stops when dropped.
#[derive(Debug)]
pub struct SqlBrowser {
    addr: SocketAddr,
    asked: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl SqlBrowser {
    /// Answer for these `(instance, tcp port)` pairs (names compared
    /// case-insensitively, as SQL Server does).
    pub async fn start(instances: &[(&str, u16)]) -> Result<SqlBrowser> {
        let socket = UdpSocket::bind("127.0.0.1:0").await?;
        let addr = socket.local_addr()?;
        let known: BTreeMap<String, u16> = instances
            .iter()
            .map(|(n, p)| (n.to_uppercase(), *p))
            .collect();
        let asked = Arc::new(Mutex::new(Vec::new()));
        let log = asked.clone();
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            loop {
                let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                    continue;
                };
                // CLNT_UCAST_INST: 0x04, then the instance name (MBCS, at most
                // 32 bytes, optionally NUL-terminated).
                if n < 2 || buf[0] != 0x04 {
                    continue;
                }
                let name = String::from_utf8_lossy(&buf[1..n])
                    .trim_end_matches('\0')
                    .to_owned();
                if let Ok(mut l) = log.lock() {
                    l.push(name.clone());
                }
                let Some(port) = known.get(&name.to_uppercase()) else {
                    continue;
                };
                let data = format!(
                    "ServerName;TDSTEST;InstanceName;{name};IsClustered;No;Version;16.0.1000.6;tcp;{port};;"
                );
                let Ok(len) = u16::try_from(data.len()) else {
                    continue;
                };
                let mut reply = vec![0x05];
                reply.extend_from_slice(&len.to_le_bytes());
                reply.extend_from_slice(data.as_bytes());
                let _ = socket.send_to(&reply, from).await;
            }
        });
        Ok(SqlBrowser { addr, asked, task })
    }

    /// The UDP port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Instance names asked so far.
    pub fn asked(&self) -> Vec<String> {
        self.asked.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl Drop for SqlBrowser {
    fn drop(&mut self) {
        self.task.abort();
    }
}
