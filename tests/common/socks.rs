//! A minimal SOCKS5 proxy on loopback (no auth, CONNECT only) that counts the connections it
//! carried, to prove an account's traffic went through its own proxy. Hosts under `.invalid` are
//! connected to 127.0.0.1 (see `http_proxy::route`).

#![allow(
    clippy::disallowed_methods,
    reason = "tests may block, spawn freely and touch their own temporary files"
)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub struct Socks5 {
    pub url: String,
    carried: Arc<AtomicUsize>,
    /// Per connection carried: the host name the client asked for (`socks5h`: the proxy
    /// resolves), or `None` for an address (`socks5`: the client resolved it).
    names: Arc<Mutex<Vec<Option<String>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Socks5 {
    pub async fn start() -> Socks5 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("socks5://{}", listener.local_addr().unwrap());
        let carried = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&carried);
        let names = Arc::new(Mutex::new(Vec::new()));
        let asked = Arc::clone(&names);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (count, asked) = (Arc::clone(&count), Arc::clone(&asked));
                tokio::spawn(async move {
                    let _ = relay(client, count, asked).await;
                });
            }
        });
        Socks5 {
            url,
            carried,
            names,
            task,
        }
    }

    pub fn connections(&self) -> usize {
        self.carried.load(Ordering::SeqCst)
    }

    /// What each carried connection asked for: a host name, or `None` for an address.
    pub fn names(&self) -> Vec<Option<String>> {
        self.names.lock().unwrap().clone()
    }
}

impl Drop for Socks5 {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(
    mut client: TcpStream,
    count: Arc<AtomicUsize>,
    names: Arc<Mutex<Vec<Option<String>>>>,
) -> std::io::Result<()> {
    // greeting: VER, NMETHODS, METHODS
    let mut head = [0u8; 2];
    client.read_exact(&mut head).await?;
    let mut methods = vec![0u8; head[1] as usize];
    client.read_exact(&mut methods).await?;
    client.write_all(&[5, 0]).await?;
    // request: VER CMD RSV ATYP ADDR PORT
    let mut req = [0u8; 4];
    client.read_exact(&mut req).await?;
    let host = match req[3] {
        1 => {
            let mut ip = [0u8; 4];
            client.read_exact(&mut ip).await?;
            std::net::Ipv4Addr::from(ip).to_string()
        }
        3 => {
            let mut len = [0u8; 1];
            client.read_exact(&mut len).await?;
            let mut name = vec![0u8; len[0] as usize];
            client.read_exact(&mut name).await?;
            String::from_utf8_lossy(&name).into_owned()
        }
        _ => return Ok(()),
    };
    let mut port = [0u8; 2];
    client.read_exact(&mut port).await?;
    let mut upstream =
        TcpStream::connect((super::http_proxy::route(&host), u16::from_be_bytes(port))).await?;
    count.fetch_add(1, Ordering::SeqCst);
    names.lock().unwrap().push((req[3] == 3).then_some(host));
    client.write_all(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0]).await?;
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}
