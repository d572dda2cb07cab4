//! The PROXY protocol header (HAProxy's v1 text line and v2 binary block) that a load balancer
//! puts in front of a connection to name the real client. Sans-IO: [`parse`] reads a prefix of
//! the stream and says how many bytes the header takes; `listen.rs` believes it only from
//! `rtmp.trusted_proxies`. Hand-written: it is ~100 lines, and the crates for it carry far
//! more (TLV builders, both directions) than a receiver needs.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The v2 signature: `\r\n\r\n\0\r\nQUIT\n`.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// Longest v1 line, CRLF included (the spec's bound).
pub const V1_MAX: usize = 107;
/// Largest v2 block accepted: addresses plus a few TLVs (ALPN, authority, SSL info).
pub const V2_MAX: usize = 16 + 1024;

/// What a stream's first bytes say.
#[derive(Debug, PartialEq, Eq)]
pub enum Header {
    /// Not (the start of) a PROXY header: the client itself is talking.
    Absent,
    /// A header may be here; more bytes are needed to tell.
    Incomplete,
    /// A header of `len` bytes naming `source` (`None`: v1 `UNKNOWN`, v2 `LOCAL` or a
    /// non-TCP family, e.g. the balancer's own health check: keep the peer address).
    Found {
        len: usize,
        source: Option<SocketAddr>,
    },
}

/// Why a header that started like one was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("PROXY v1 line longer than {V1_MAX} bytes")]
    V1TooLong,
    #[error("malformed PROXY v1 line: {0}")]
    V1Malformed(&'static str),
    #[error("PROXY v2 header of {0} bytes is over the {V2_MAX}-byte limit")]
    V2TooLong(usize),
    #[error("PROXY v2 version/command byte {0:#04x} is not v2 LOCAL or PROXY")]
    V2Command(u8),
    #[error("PROXY v2 address block too short for its family")]
    V2Short,
}

/// Looks for a PROXY header at the start of `buf`.
pub fn parse(buf: &[u8]) -> Result<Header, HeaderError> {
    if buf.len() < 6 && b"PROXY ".starts_with(buf)
        || buf.len() < 12 && V2_SIGNATURE.starts_with(buf)
    {
        return Ok(Header::Incomplete);
    }
    if buf.starts_with(b"PROXY ") {
        return parse_v1(buf);
    }
    if buf.starts_with(V2_SIGNATURE) {
        return parse_v2(buf);
    }
    Ok(Header::Absent)
}

fn parse_v1(buf: &[u8]) -> Result<Header, HeaderError> {
    let window = &buf[..buf.len().min(V1_MAX)];
    let Some(end) = window.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() >= V1_MAX {
            Err(HeaderError::V1TooLong)
        } else {
            Ok(Header::Incomplete)
        };
    };
    let len = end + 2;
    let line =
        std::str::from_utf8(&buf[6..end]).map_err(|_| HeaderError::V1Malformed("not ASCII"))?;
    let fields: Vec<&str> = line.split(' ').collect();
    let source = match fields.as_slice() {
        ["UNKNOWN", ..] => None,
        [family @ ("TCP4" | "TCP6"), src, dst, sport, dport] => {
            let src: IpAddr = src
                .parse()
                .map_err(|_| HeaderError::V1Malformed("source address"))?;
            let dst: IpAddr = dst
                .parse()
                .map_err(|_| HeaderError::V1Malformed("destination address"))?;
            if (*family == "TCP4") != (src.is_ipv4() && dst.is_ipv4())
                || src.is_ipv4() != dst.is_ipv4()
            {
                return Err(HeaderError::V1Malformed("address family"));
            }
            let port = |p: &str| {
                p.parse::<u16>()
                    .map_err(|_| HeaderError::V1Malformed("port"))
            };
            let sport = port(sport)?;
            port(dport)?;
            Some(SocketAddr::new(src, sport))
        }
        _ => {
            return Err(HeaderError::V1Malformed(
                "expected TCP4/TCP6 with two addresses and two ports, or UNKNOWN",
            ));
        }
    };
    Ok(Header::Found { len, source })
}

fn parse_v2(buf: &[u8]) -> Result<Header, HeaderError> {
    if buf.len() < 16 {
        return Ok(Header::Incomplete);
    }
    let (ver_cmd, family) = (buf[12], buf[13]);
    let body = u16::from_be_bytes([buf[14], buf[15]]) as usize;
    let len = 16 + body;
    if len > V2_MAX {
        return Err(HeaderError::V2TooLong(len));
    }
    let local = match ver_cmd {
        0x20 => true,
        0x21 => false,
        other => return Err(HeaderError::V2Command(other)),
    };
    if buf.len() < len {
        return Ok(Header::Incomplete);
    }
    let a = &buf[16..len];
    let source = match family {
        _ if local => None,
        // TCP over IPv4: source, destination, source port, destination port.
        0x11 => {
            let a: &[u8; 12] = a
                .get(..12)
                .and_then(|s| s.try_into().ok())
                .ok_or(HeaderError::V2Short)?;
            let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
            Some(SocketAddr::new(ip.into(), u16::from_be_bytes([a[8], a[9]])))
        }
        // TCP over IPv6.
        0x21 => {
            let a: &[u8; 36] = a
                .get(..36)
                .and_then(|s| s.try_into().ok())
                .ok_or(HeaderError::V2Short)?;
            let mut ip = [0u8; 16];
            ip.copy_from_slice(&a[..16]);
            Some(SocketAddr::new(
                Ipv6Addr::from(ip).into(),
                u16::from_be_bytes([a[32], a[33]]),
            ))
        }
        // UNSPEC, UDP, unix sockets: nothing a TCP client table can use.
        _ => None,
    };
    Ok(Header::Found { len, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(cmd: u8, family: u8, addrs: &[u8], tlvs: &[u8]) -> Vec<u8> {
        let mut b = V2_SIGNATURE.to_vec();
        b.push(cmd);
        b.push(family);
        b.extend_from_slice(&((addrs.len() + tlvs.len()) as u16).to_be_bytes());
        b.extend_from_slice(addrs);
        b.extend_from_slice(tlvs);
        b
    }

    #[test]
    fn v1_lines_name_the_client_and_their_length() {
        let line = b"PROXY TCP4 203.0.113.7 192.0.2.1 56324 1935\r\n\x03rest";
        assert_eq!(
            parse(line),
            Ok(Header::Found {
                len: line.len() - 5,
                source: Some("203.0.113.7:56324".parse().unwrap()),
            })
        );
        let line = b"PROXY TCP6 2001:db8::7 2001:db8::1 4000 80\r\n";
        assert_eq!(
            parse(line),
            Ok(Header::Found {
                len: line.len(),
                source: Some("[2001:db8::7]:4000".parse().unwrap()),
            })
        );
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\n"),
            Ok(Header::Found {
                len: 15,
                source: None
            })
        );
    }

    #[test]
    fn prefixes_wait_and_other_protocols_pass() {
        for prefix in [
            &b""[..],
            b"P",
            b"PROXY",
            b"PROXY TCP4 1.2.3.4",
            b"\r\n\r\n\0",
            &V2_SIGNATURE[..],
            &v2(0x21, 0x11, &[0; 12], &[])[..20],
        ] {
            assert_eq!(parse(prefix), Ok(Header::Incomplete), "{prefix:?}");
        }
        for other in [
            &b"\x03\x00\x00\x00"[..],
            b"POST /open/1 HTTP/1.1\r\n",
            b"\x16\x03\x01",
            b"PROXZ",
        ] {
            assert_eq!(parse(other), Ok(Header::Absent), "{other:?}");
        }
    }

    #[test]
    fn malformed_v1_lines_are_refused_with_the_reason() {
        let long = format!("PROXY TCP4 {}\r\n", "1".repeat(120));
        assert_eq!(parse(long.as_bytes()), Err(HeaderError::V1TooLong));
        for (line, why) in [
            (&b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"[..], "expected TCP4"),
            (b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", "source address"),
            (b"PROXY TCP4 ::1 ::1 1 2\r\n", "address family"),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 70000 2\r\n", "port"),
            (b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", "expected TCP4"),
        ] {
            let e = parse(line).unwrap_err();
            assert!(e.to_string().contains(why), "{e} lacks {why}");
        }
    }

    #[test]
    fn v2_blocks_for_both_families_local_and_tlvs() {
        let mut addrs = vec![203, 0, 113, 7, 192, 0, 2, 1];
        addrs.extend_from_slice(&56324u16.to_be_bytes());
        addrs.extend_from_slice(&1935u16.to_be_bytes());
        let tlv = [0x01, 0x00, 0x02, b'h', b'2'];
        let b = v2(0x21, 0x11, &addrs, &tlv);
        assert_eq!(
            parse(&b),
            Ok(Header::Found {
                len: b.len(),
                source: Some("203.0.113.7:56324".parse().unwrap()),
            })
        );
        let mut six = [0u8; 36];
        six[15] = 7;
        six[31] = 1;
        six[32..34].copy_from_slice(&4000u16.to_be_bytes());
        assert_eq!(
            parse(&v2(0x21, 0x21, &six, &[])),
            Ok(Header::Found {
                len: 52,
                source: Some("[::7]:4000".parse().unwrap()),
            })
        );
        assert_eq!(
            parse(&v2(0x20, 0x00, &[], &[])),
            Ok(Header::Found {
                len: 16,
                source: None
            })
        );
        assert_eq!(
            parse(&v2(0x22, 0x11, &addrs, &[])),
            Err(HeaderError::V2Command(0x22))
        );
        assert_eq!(
            parse(&v2(0x21, 0x21, &addrs, &[])),
            Err(HeaderError::V2Short)
        );
        let mut huge = v2(0x21, 0x11, &addrs, &[]);
        huge[14..16].copy_from_slice(&2000u16.to_be_bytes());
        assert_eq!(parse(&huge), Err(HeaderError::V2TooLong(2016)));
    }
}
