//! `gateway.connect_timeout` on paused time: a connect to a dead host fails as a connect error
//! (failover) after exactly the configured time, on both senders.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::Bytes;

use super::Sender;
use crate::domain::Secret;

/// A listening socket on 127.0.0.1 whose accept queue is full and never drained: a new connect
/// gets no SYN-ACK and hangs like one to a dead host.
fn black_hole() -> (tokio::net::TcpListener, Vec<TcpStream>, SocketAddr) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut filling = Vec::new();
    for _ in 0..64 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            Ok(stream) => filling.push(stream),
            Err(_) => return (listener, filling, addr),
        }
    }
    panic!("the accept queue of a listen(1) socket never filled");
}

fn request(addr: SocketAddr) -> http::Request<Bytes> {
    http::Request::post(format!("http://{addr}/v1/responses"))
        .body(Bytes::from_static(b"{}"))
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_dead_host_fails_as_a_connect_error_after_connect_timeout() {
    let (_listener, _filling, addr) = black_hole();
    let limit = Duration::from_secs(7);
    let direct = Sender::new(None, &super::client(None, limit).unwrap(), limit);
    // A proxy that is itself a dead host: reqwest's connect timeout covers reaching it.
    let proxy = Secret::new(format!("http://{addr}"));
    let proxied = Sender::new(
        Some(&proxy),
        &super::client(Some(&proxy), limit).unwrap(),
        limit,
    );
    for sender in [direct, proxied] {
        let start = tokio::time::Instant::now();
        let err = sender.send(request(addr)).await.err().unwrap();
        assert!(err.connect, "{}", err.message);
        assert_eq!(start.elapsed(), limit, "{}", err.message);
    }
}
