//! A TCP tunnel through an account's proxy (`accounts[].proxy`), for the connections reqwest
//! does not make: the upstream WebSocket ([`super::websocket`]). The same proxies reqwest takes
//! for HTTP (`AccountSpec::validate`): `http://` and `https://` (TLS to the proxy, checked like
//! any upstream) with an HTTP `CONNECT`, `socks5://` (the gateway resolves the name) and
//! `socks5h://` (the proxy does), each with optional `user:password@` credentials (Basic for
//! HTTP, RFC 1929 for SOCKS5). What comes back is a byte stream to `host:port`; TLS to the
//! upstream, if any, goes over it.

use std::io;
use std::net::IpAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest answer head an HTTP proxy may send to `CONNECT`.
const MAX_HEAD: usize = 8 * 1024;

pub(super) trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// A proxy URL, read the way reqwest reads it.
#[derive(Debug, PartialEq, Eq)]
struct Proxy {
    scheme: Scheme,
    host: String,
    port: u16,
    credentials: Option<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Http,
    Https,
    Socks5,
    Socks5h,
}

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message.into())
}

fn refused(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionRefused, message.into())
}

impl Proxy {
    fn parse(url: &str) -> io::Result<Proxy> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| invalid("the proxy URL has no scheme"))?;
        let (scheme, default_port) = match scheme.to_ascii_lowercase().as_str() {
            "http" => (Scheme::Http, 80),
            "https" => (Scheme::Https, 443),
            "socks5" => (Scheme::Socks5, 1080),
            "socks5h" => (Scheme::Socks5h, 1080),
            _ => {
                return Err(invalid(
                    "the proxy URL's scheme is not http, https, socks5 or socks5h",
                ))
            }
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let (credentials, host_port) = match authority.rsplit_once('@') {
            Some((userinfo, host_port)) => {
                let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                (
                    Some((percent_decode(user)?, percent_decode(password)?)),
                    host_port,
                )
            }
            None => (None, authority),
        };
        let (host, port) = match host_port.strip_prefix('[') {
            Some(v6) => {
                let (host, after) = v6
                    .split_once(']')
                    .ok_or_else(|| invalid("the proxy URL's IPv6 address is not closed"))?;
                (host, after.strip_prefix(':'))
            }
            None => match host_port.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (host_port, None),
            },
        };
        if host.is_empty() {
            return Err(invalid("the proxy URL has no host"));
        }
        let port = match port {
            Some(port) => port
                .parse()
                .map_err(|_| invalid("the proxy URL's port is not a number"))?,
            None => default_port,
        };
        Ok(Proxy {
            scheme,
            host: host.to_owned(),
            port,
            credentials,
        })
    }
}

fn percent_decode(text: &str) -> io::Result<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| invalid("the proxy URL's credentials have a bad %-escape"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| invalid("the proxy URL's credentials are not UTF-8"))
}

/// Standard base64 with padding (for `Proxy-Authorization: Basic`).
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for group in input.chunks(3) {
        let b = [
            group[0],
            group.get(1).copied().unwrap_or(0),
            group.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= group.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `host:port` as a request target (an IPv6 address in brackets).
fn authority(host: &str, port: u16) -> String {
    if host.parse::<std::net::Ipv6Addr>().is_ok() {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A byte stream to `host:port` through `proxy_url` (the caller bounds the time it takes).
pub(super) async fn open(proxy_url: &str, host: &str, port: u16) -> io::Result<Box<dyn Io>> {
    let proxy = Proxy::parse(proxy_url)?;
    let tcp = super::h2_connection::connect_tcp(&proxy.host, proxy.port).await?;
    match proxy.scheme {
        Scheme::Http => http_connect(Box::new(tcp), &proxy, host, port).await,
        Scheme::Https => {
            let mut config = super::trust::client_config().map_err(io::Error::other)?;
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            let name = rustls::pki_types::ServerName::try_from(proxy.host.clone())
                .map_err(|e| invalid(e.to_string()))?;
            let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
                .connect(name, tcp)
                .await?;
            http_connect(Box::new(tls), &proxy, host, port).await
        }
        Scheme::Socks5 | Scheme::Socks5h => socks5(Box::new(tcp), &proxy, host, port).await,
    }
}

/// `CONNECT host:port` on an HTTP proxy; a 2xx answer opens the tunnel.
async fn http_connect(
    mut stream: Box<dyn Io>,
    proxy: &Proxy,
    host: &str,
    port: u16,
) -> io::Result<Box<dyn Io>> {
    let target = authority(host, port);
    let mut head = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some((user, password)) = &proxy.credentials {
        let token = base64(format!("{user}:{password}").as_bytes());
        head.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    stream.flush().await?;
    // One byte at a time: what follows the head is the tunnel's, not ours to read.
    let mut answer = Vec::with_capacity(256);
    while !answer.ends_with(b"\r\n\r\n") {
        if answer.len() >= MAX_HEAD {
            return Err(refused("the proxy's answer to CONNECT has no end"));
        }
        let byte = stream.read_u8().await?;
        answer.push(byte);
    }
    let status_line = answer.split(|&b| b == b'\n').next().unwrap_or_default();
    let status = std::str::from_utf8(status_line)
        .ok()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| refused("the proxy answered CONNECT with something that is not HTTP"))?;
    if !(200..300).contains(&status) {
        return Err(refused(format!("the proxy answered CONNECT with {status}")));
    }
    Ok(stream)
}

/// SOCKS5 `CONNECT` (RFC 1928), with username/password authentication (RFC 1929) when the URL
/// has credentials. `socks5h`: the proxy resolves `host`; `socks5`: the gateway does.
async fn socks5(
    mut stream: Box<dyn Io>,
    proxy: &Proxy,
    host: &str,
    port: u16,
) -> io::Result<Box<dyn Io>> {
    let methods: &[u8] = if proxy.credentials.is_some() {
        &[5, 2, 0, 2]
    } else {
        &[5, 1, 0]
    };
    stream.write_all(methods).await?;
    let mut choice = [0u8; 2];
    stream.read_exact(&mut choice).await?;
    match (choice, &proxy.credentials) {
        ([5, 0], _) => {}
        ([5, 2], Some((user, password))) => {
            let (user, password) = (user.as_bytes(), password.as_bytes());
            let (Ok(user_len), Ok(password_len)) =
                (u8::try_from(user.len()), u8::try_from(password.len()))
            else {
                return Err(invalid("SOCKS5 credentials are at most 255 bytes each"));
            };
            let mut auth = vec![1, user_len];
            auth.extend_from_slice(user);
            auth.push(password_len);
            auth.extend_from_slice(password);
            stream.write_all(&auth).await?;
            let mut verdict = [0u8; 2];
            stream.read_exact(&mut verdict).await?;
            if verdict[1] != 0 {
                return Err(refused("the SOCKS5 proxy rejected the credentials"));
            }
        }
        _ => return Err(refused("the SOCKS5 proxy accepts none of our methods")),
    }
    let mut request = vec![5, 1, 0];
    let address = match host.parse::<IpAddr>() {
        Ok(ip) => Some(ip),
        Err(_) if proxy.scheme == Scheme::Socks5 => {
            // One address can be asked for: an IPv4 one if the name has any (the proxy may
            // have no IPv6 route), else the first.
            let resolved: Vec<IpAddr> = tokio::net::lookup_host((host, port))
                .await?
                .map(|a| a.ip())
                .collect();
            let ip = resolved
                .iter()
                .find(|ip| ip.is_ipv4())
                .or_else(|| resolved.first())
                .ok_or_else(|| refused(format!("{host} resolves to no address")))?;
            Some(*ip)
        }
        Err(_) => None,
    };
    match address {
        Some(IpAddr::V4(ip)) => {
            request.push(1);
            request.extend_from_slice(&ip.octets());
        }
        Some(IpAddr::V6(ip)) => {
            request.push(4);
            request.extend_from_slice(&ip.octets());
        }
        None => {
            let name = u8::try_from(host.len())
                .map_err(|_| invalid("a host name is at most 255 bytes for SOCKS5"))?;
            request.push(3);
            request.push(name);
            request.extend_from_slice(host.as_bytes());
        }
    }
    request.extend_from_slice(&port.to_be_bytes());
    stream.write_all(&request).await?;
    let mut reply = [0u8; 4];
    stream.read_exact(&mut reply).await?;
    if reply[0] != 5 || reply[1] != 0 {
        return Err(refused(format!(
            "the SOCKS5 proxy refused the connection (reply {})",
            reply[1]
        )));
    }
    let bound = match reply[3] {
        1 => 4,
        4 => 16,
        3 => usize::from(stream.read_u8().await?),
        _ => {
            return Err(refused(
                "the SOCKS5 proxy's reply has an unknown address type",
            ))
        }
    };
    let mut rest = vec![0u8; bound + 2];
    stream.read_exact(&mut rest).await?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn proxy_urls_are_read_like_reqwest_reads_them() {
        let p = Proxy::parse("socks5h://us%40er:p%3Ass@proxy.example:1081").unwrap();
        assert_eq!(
            p,
            Proxy {
                scheme: Scheme::Socks5h,
                host: "proxy.example".into(),
                port: 1081,
                credentials: Some(("us@er".into(), "p:ss".into())),
            }
        );
        let p = Proxy::parse("http://[::1]").unwrap();
        assert_eq!(
            (p.host.as_str(), p.port, p.scheme),
            ("::1", 80, Scheme::Http)
        );
        assert_eq!(Proxy::parse("https://p/").unwrap().port, 443);
        assert!(Proxy::parse("ftp://p").is_err());
        assert!(Proxy::parse("http://p:x").is_err());
    }

    #[test]
    fn basic_credentials_are_standard_base64() {
        assert_eq!(
            base64(b"proxy-user:proxy-pass"),
            "cHJveHktdXNlcjpwcm94eS1wYXNz"
        );
        assert_eq!(base64(b"a"), "YQ==");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b""), "");
    }
}
