//! The test network's "internet": an HTTP server (`/ip` answers the
//! caller's address, `/bytes/N` sends N bytes of a fixed pattern) and a DNS
//! resolver that knows one name, [`WEB_NAME`](crate::trine::WEB_NAME).
//! Every request is logged with its source address, so tests can see who
//! asked. Plus the fetcher the client's side uses, which checks the
//! pattern byte for byte.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs, UdpSocket};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::trine::WEB_NAME;

/// Byte `i` of every `/bytes/N` body.
pub fn pattern(i: u64) -> u8 {
    (i % 251) as u8
}

/// The largest `/bytes/N` served.
const MAX_BYTES: u64 = 1 << 30;

type Log = Arc<Mutex<std::fs::File>>;

fn record(log: &Log, line: &str) {
    if let Ok(mut file) = log.lock() {
        let _ = writeln!(file, "{line}");
    }
}

/// Serves HTTP on `address:80` and DNS on `resolver:53` (answering with
/// `address`) until killed.
pub fn serve(address: Ipv4Addr, resolver: Ipv4Addr, log: &Path) -> std::io::Result<()> {
    let log: Log = Arc::new(Mutex::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?,
    ));
    let dns = UdpSocket::bind((resolver, 53))?;
    let dns_log = log.clone();
    std::thread::spawn(move || serve_dns(&dns, address, &dns_log));
    let http = TcpListener::bind((address, 80))?;
    for stream in http.incoming() {
        let Ok(stream) = stream else { continue };
        let log = log.clone();
        std::thread::spawn(move || {
            let _ = serve_http(stream, &log);
        });
    }
    Ok(())
}

fn serve_http(stream: TcpStream, log: &Log) -> std::io::Result<()> {
    let peer = stream.peer_addr()?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
    record(log, &format!("http {} {path}", peer.ip()));
    let mut stream = stream;
    if path == "/ip" {
        let body = format!("{}\n", peer.ip());
        return respond(&mut stream, "200 OK", body.as_bytes());
    }
    if let Some(n) = path
        .strip_prefix("/bytes/")
        .and_then(|n| n.parse::<u64>().ok())
    {
        if n <= MAX_BYTES {
            // One write for the header (a formatted write would be several
            // small segments, each waiting on the last under Nagle).
            let header =
                format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\nConnection: close\r\n\r\n");
            stream.write_all(header.as_bytes())?;
            let mut chunk = vec![0u8; 64 * 1024];
            let mut sent = 0u64;
            while sent < n {
                let len = (n - sent).min(chunk.len() as u64) as usize;
                for (k, byte) in chunk[..len].iter_mut().enumerate() {
                    *byte = pattern(sent + k as u64);
                }
                stream.write_all(&chunk[..len])?;
                sent += len as u64;
            }
            return Ok(());
        }
    }
    respond(&mut stream, "404 Not Found", b"not found\n")
}

fn respond(stream: &mut TcpStream, status: &str, body: &[u8]) -> std::io::Result<()> {
    let mut answer = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    answer.extend_from_slice(body);
    stream.write_all(&answer)
}

fn serve_dns(socket: &UdpSocket, address: Ipv4Addr, log: &Log) {
    let mut buf = [0u8; 512];
    while let Ok((len, from)) = socket.recv_from(&mut buf) {
        let Some((name, qtype, question_end)) = parse_query(&buf[..len]) else {
            continue;
        };
        record(log, &format!("dns {} {name}", from.ip()));
        let known = name.eq_ignore_ascii_case(WEB_NAME);
        let mut answer = Vec::with_capacity(question_end + 16);
        answer.extend_from_slice(&buf[..2]); // id
        answer.extend_from_slice(&[0x81, if known { 0x80 } else { 0x83 }]);
        let answers = u8::from(known && qtype == 1);
        answer.extend_from_slice(&[0, 1, 0, answers, 0, 0, 0, 0]);
        answer.extend_from_slice(&buf[12..question_end]);
        if answers == 1 {
            answer.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
            answer.extend_from_slice(&address.octets());
        }
        let _ = socket.send_to(&answer, from);
    }
}

/// The name, type and end offset of a DNS query's one question.
fn parse_query(packet: &[u8]) -> Option<(String, u16, usize)> {
    if packet.len() < 12 || packet[2] & 0x80 != 0 || packet[4..6] != [0, 1] {
        return None;
    }
    let mut labels = Vec::new();
    let mut at = 12;
    loop {
        let len = usize::from(*packet.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None;
        }
        labels.push(String::from_utf8_lossy(packet.get(at..at + len)?).into_owned());
        at += len;
    }
    let qtype = u16::from_be_bytes([*packet.get(at)?, *packet.get(at + 1)?]);
    packet.get(at + 3)?;
    Some((labels.join("."), qtype, at + 4))
}

/// What [`fetch`] got.
#[derive(Debug)]
pub struct Fetched {
    /// The body.
    pub body: Vec<u8>,
    /// Where it came from: the address the name resolved to, or the
    /// host as given to the SOCKS proxy.
    pub from: String,
    /// From the start of the connect to the last byte.
    pub took: Duration,
}

/// An open request: the stream after the request was sent.
struct Request {
    stream: TcpStream,
    from: String,
    started: Instant,
}

/// Connects for `url` (`http://host[:port]/path`) and sends the GET:
/// straight (resolving `host` with the system resolver), or through the
/// SOCKS5 proxy `socks` (which gets the name; Tor resolves at the exit).
fn request(url: &str, timeout: Duration, socks: Option<SocketAddr>) -> Result<Request, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// URLs"))?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (
            host,
            port.parse::<u16>()
                .map_err(|_| format!("{authority}: bad port"))?,
        ),
        None => (authority, 80),
    };
    let started = Instant::now();
    let (mut stream, from) = match socks {
        None => {
            let address = (host, port)
                .to_socket_addrs()
                .map_err(|e| format!("cannot resolve {host}: {e}"))?
                .find(SocketAddr::is_ipv4)
                .ok_or_else(|| format!("{host} has no IPv4 address"))?;
            let stream = TcpStream::connect_timeout(&address, timeout)
                .map_err(|e| format!("cannot connect to {address}: {e}"))?;
            (stream, address.to_string())
        }
        Some(proxy) => {
            let mut stream = TcpStream::connect_timeout(&proxy, timeout)
                .map_err(|e| format!("cannot connect to the SOCKS proxy {proxy}: {e}"))?;
            stream
                .set_read_timeout(Some(timeout))
                .map_err(|e| e.to_string())?;
            socks5_connect(&mut stream, host, port)?;
            (stream, format!("{host}:{port} via {proxy}"))
        }
    };
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    // One write: a formatted write is several small segments, and Nagle
    // would hold each until the last is acknowledged (a round trip each).
    let get = format!("GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(get.as_bytes())
        .map_err(|e| format!("cannot send the request: {e}"))?;
    Ok(Request {
        stream,
        from,
        started,
    })
}

/// The SOCKS5 handshake (no authentication) and CONNECT to `host`
/// (an IPv4 address, or a name the proxy resolves) and `port`.
fn socks5_connect(stream: &mut TcpStream, host: &str, port: u16) -> Result<(), String> {
    let failed = |e: std::io::Error| format!("SOCKS handshake: {e}");
    stream.write_all(&[5, 1, 0]).map_err(failed)?;
    let mut chosen = [0u8; 2];
    stream.read_exact(&mut chosen).map_err(failed)?;
    if chosen != [5, 0] {
        return Err(format!("the SOCKS proxy wants authentication ({chosen:?})"));
    }
    let mut connect = vec![5, 1, 0];
    match host.parse::<Ipv4Addr>() {
        Ok(ip) => {
            connect.push(1);
            connect.extend_from_slice(&ip.octets());
        }
        Err(_) => {
            let name = u8::try_from(host.len()).map_err(|_| format!("{host}: name too long"))?;
            connect.push(3);
            connect.push(name);
            connect.extend_from_slice(host.as_bytes());
        }
    }
    connect.extend_from_slice(&port.to_be_bytes());
    stream.write_all(&connect).map_err(failed)?;
    let mut reply = [0u8; 4];
    stream.read_exact(&mut reply).map_err(failed)?;
    if reply[1] != 0 {
        return Err(format!(
            "the SOCKS proxy could not connect to {host}:{port} (reply {})",
            reply[1]
        ));
    }
    let bound = match reply[3] {
        1 => 4 + 2,
        4 => 16 + 2,
        3 => {
            let mut length = [0u8; 1];
            stream.read_exact(&mut length).map_err(failed)?;
            usize::from(length[0]) + 2
        }
        other => return Err(format!("SOCKS reply with address type {other}")),
    };
    let mut skip = vec![0u8; bound];
    stream.read_exact(&mut skip).map_err(failed)
}

/// GETs `url` (`http://host[:port]/path`), straight or through the SOCKS5
/// proxy `socks`, and checks the status and length.
pub fn fetch(url: &str, timeout: Duration, socks: Option<SocketAddr>) -> Result<Fetched, String> {
    let Request {
        mut stream,
        from,
        started,
    } = request(url, timeout, socks)?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|e| format!("reading the answer: {e} (after {} bytes)", response.len()))?;
    let took = started.elapsed();
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no HTTP header in the answer")?;
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("answer: {}", head.lines().next().unwrap_or("")));
    }
    let length: Option<usize> = head.lines().find_map(|l| {
        l.strip_prefix("Content-Length: ")
            .and_then(|n| n.trim().parse().ok())
    });
    let body = response[split + 4..].to_vec();
    if let Some(length) = length {
        if body.len() != length {
            return Err(format!("got {} of {length} bytes", body.len()));
        }
    }
    Ok(Fetched { body, from, took })
}

/// Times one GET of `url`, straight or through the SOCKS5 proxy `socks`:
/// from the start of the connect to the first byte of the answer.
pub fn time_to_first_byte(
    url: &str,
    timeout: Duration,
    socks: Option<SocketAddr>,
) -> Result<Duration, String> {
    let Request {
        mut stream,
        started,
        ..
    } = request(url, timeout, socks)?;
    let mut first = [0u8; 1];
    stream
        .read_exact(&mut first)
        .map_err(|e| format!("no answer: {e}"))?;
    let elapsed = started.elapsed();
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    Ok(elapsed)
}

/// Whether `body` is the `/bytes/N` pattern.
pub fn is_pattern(body: &[u8]) -> bool {
    body.iter()
        .enumerate()
        .all(|(i, byte)| *byte == pattern(i as u64))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn dns_queries_are_parsed_and_junk_is_not() {
        let mut query = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in ["web", "trine", "test"] {
            query.push(label.len() as u8);
            query.extend_from_slice(label.as_bytes());
        }
        query.extend_from_slice(&[0, 0, 1, 0, 1]);
        let (name, qtype, end) = parse_query(&query).unwrap();
        assert_eq!(
            (name.as_str(), qtype, end),
            ("web.trine.test", 1, query.len())
        );
        for cut in 0..query.len() {
            assert!(parse_query(&query[..cut]).is_none());
        }
    }

    #[test]
    fn the_pattern_is_checked_byte_for_byte() {
        let mut body: Vec<u8> = (0..1000).map(pattern).collect();
        assert!(is_pattern(&body));
        body[999] ^= 1;
        assert!(!is_pattern(&body));
    }
}
