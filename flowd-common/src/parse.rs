//! Header parsing shared by the tc programs and host-side tests.
//!
//! The parser reads through [`PacketSource`], so the kernel program can back it with
//! `bpf_skb_load_bytes` (bounds checked by the helper, works on non-linear skbs) while tests back
//! it with a byte slice. Every loop is bounded so the verifier accepts it.

const ETH_HLEN: usize = 14;
pub const ETH_P_IPV4: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86DD;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88A8;
const MAX_VLAN_TAGS: usize = 2;
const MAX_IPV6_EXT_HEADERS: usize = 6;

pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMPV6: u8 = 58;
pub const IPPROTO_SCTP: u8 = 132;

const IPV6_HOP_BY_HOP: u8 = 0;
const IPV6_ROUTING: u8 = 43;
const IPV6_FRAGMENT: u8 = 44;
const IPV6_AUTH: u8 = 51;
const IPV6_DEST_OPTS: u8 = 60;

const ICMP_ECHO_REPLY: u8 = 0;
const ICMP_ECHO_REQUEST: u8 = 8;
const ICMPV6_ECHO_REQUEST: u8 = 128;
const ICMPV6_ECHO_REPLY: u8 = 129;

/// Random access to a packet's bytes.
pub trait PacketSource {
    /// The `N` bytes at `offset`, or `None` when the packet is shorter.
    fn bytes<const N: usize>(&self, offset: usize) -> Option<[u8; N]>;

    /// The `N` bytes at `offset` written into `out`; `false` when the packet is shorter. A
    /// source that can copy straight into place (a kernel helper) saves assembling the value.
    #[inline(always)]
    fn copy_into<const N: usize>(&self, offset: usize, out: &mut [u8; N]) -> bool {
        match self.bytes::<N>(offset) {
            Some(bytes) => {
                *out = bytes;
                true
            }
            None => false,
        }
    }
}

impl PacketSource for [u8] {
    #[inline(always)]
    fn bytes<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        let end = offset.checked_add(N)?;
        let slice = self.get(offset..end)?;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Some(out)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Not IPv4 or IPv6 (ARP, LLDP...): not a flow, not an error.
    NotIp,
    /// The packet ends before a header it announces.
    Truncated,
    /// A header field holds an impossible value (IPv4 IHL < 5, wrong IP version...).
    Malformed,
}

/// What the flow key and counters need from one packet. Laid out for the BPF target, whose
/// compiler-builtins copy and zero byte by byte: 8-byte alignment with the addresses first lets
/// zeroing and copying compile to word stores instead of calls into those loops.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketInfo {
    /// IPv4 as IPv4-mapped IPv6.
    pub src_addr: [u8; 16],
    pub dst_addr: [u8; 16],
    /// Offset of the IP header from the start of the frame.
    pub l3_offset: u32,
    /// IP length announced by the header (IPv4 total length, IPv6 payload length + 40).
    pub ip_len: u32,
    /// IP header, extension headers and transport header: repeated on every GSO segment.
    pub headers_len: u32,
    pub src_port: u16,
    pub dst_port: u16,
    pub tcp_flags: u16,
    pub ip_version: u8,
    pub protocol: u8,
    pub icmp_type: u8,
    pub icmp_code: u8,
    /// A non-first fragment: no transport header, so no ports.
    pub fragment: bool,
    pub _pad: u8,
}

crate::zeroed::zeroable!(PacketInfo);

#[inline(always)]
fn be16(b: [u8; 2]) -> u16 {
    u16::from_be_bytes(b)
}

/// Parses Ethernet (with up to two VLAN tags), IPv4/IPv6 and TCP/UDP/SCTP/ICMP/ICMPv6.
///
/// A transport header cut short is not an error: the packet still counts towards its IP-level flow
/// with ports left at zero, because losing the bytes would make counters lie.
#[inline(always)]
pub fn parse_packet<P: PacketSource + ?Sized>(pkt: &P) -> Result<PacketInfo, ParseError> {
    let mut info = PacketInfo::default();
    parse_packet_into(pkt, &mut info)?;
    Ok(info)
}

/// [`parse_packet`] writing into the caller's `info` (which must start zeroed): saves the BPF
/// stack a copy of the result.
#[inline(always)]
pub fn parse_packet_into<P: PacketSource + ?Sized>(
    pkt: &P,
    info: &mut PacketInfo,
) -> Result<(), ParseError> {
    // Reads stay as small as the fields needed: the kernel gives a program 512 bytes of stack.
    let mut ethertype = be16(pkt.bytes(ETH_HLEN - 2).ok_or(ParseError::Truncated)?);
    let mut offset = ETH_HLEN;
    for _ in 0..MAX_VLAN_TAGS {
        if ethertype != ETH_P_8021Q && ethertype != ETH_P_8021AD {
            break;
        }
        ethertype = be16(pkt.bytes(offset + 2).ok_or(ParseError::Truncated)?);
        offset += 4;
    }
    info.l3_offset = offset as u32;
    parse_network_into(pkt, offset, ethertype, info)
}

/// Parses from the network header at `offset`, given the ethertype announcing it: for callers
/// that know where the IP header is (a dropped skb's `network_header`) rather than the frame.
/// `info` must start zeroed, as for [`parse_packet_into`].
#[inline(always)]
pub fn parse_network_into<P: PacketSource + ?Sized>(
    pkt: &P,
    offset: usize,
    ethertype: u16,
    info: &mut PacketInfo,
) -> Result<(), ParseError> {
    let l4_offset = match ethertype {
        ETH_P_IPV4 => parse_ipv4(pkt, offset, info)?,
        ETH_P_IPV6 => parse_ipv6(pkt, offset, info)?,
        _ => return Err(ParseError::NotIp),
    };
    if let Some(l4_offset) = l4_offset {
        parse_transport(pkt, l4_offset, info);
    }
    Ok(())
}

/// Returns the transport header's offset, or `None` for a non-first fragment.
#[inline(always)]
fn parse_ipv4<P: PacketSource + ?Sized>(
    pkt: &P,
    offset: usize,
    info: &mut PacketInfo,
) -> Result<Option<usize>, ParseError> {
    let hdr: [u8; 20] = pkt.bytes(offset).ok_or(ParseError::Truncated)?;
    if hdr[0] >> 4 != 4 {
        return Err(ParseError::Malformed);
    }
    let ihl = ((hdr[0] & 0x0f) as usize) * 4;
    if ihl < 20 {
        return Err(ParseError::Malformed);
    }
    info.ip_version = 4;
    info.ip_len = be16([hdr[2], hdr[3]]) as u32;
    info.protocol = hdr[9];
    // IPv4-mapped (`::ffff:a.b.c.d`) written byte by byte into the zeroed addresses: building
    // whole 16-byte values costs the BPF target a word assembly per address.
    for (address, first) in [(&mut info.src_addr, 12), (&mut info.dst_addr, 16)] {
        address[10] = 0xff;
        address[11] = 0xff;
        address[12] = hdr[first];
        address[13] = hdr[first + 1];
        address[14] = hdr[first + 2];
        address[15] = hdr[first + 3];
    }
    info.headers_len = ihl as u32;
    let fragment_offset = be16([hdr[6], hdr[7]]) & 0x1fff;
    if fragment_offset != 0 {
        info.fragment = true;
        return Ok(None);
    }
    Ok(Some(offset + ihl))
}

#[inline(always)]
fn parse_ipv6<P: PacketSource + ?Sized>(
    pkt: &P,
    offset: usize,
    info: &mut PacketInfo,
) -> Result<Option<usize>, ParseError> {
    // Piecewise: one 40-byte copy costs more stack than the kernel's 512 bytes allow here.
    let hdr: [u8; 8] = pkt.bytes(offset).ok_or(ParseError::Truncated)?;
    if hdr[0] >> 4 != 6 {
        return Err(ParseError::Malformed);
    }
    info.ip_version = 6;
    info.ip_len = be16([hdr[4], hdr[5]]) as u32 + 40;
    if !pkt.copy_into(offset + 8, &mut info.src_addr)
        || !pkt.copy_into(offset + 24, &mut info.dst_addr)
    {
        return Err(ParseError::Truncated);
    }
    let mut next = hdr[6];
    let mut cursor = offset + 40;
    for _ in 0..MAX_IPV6_EXT_HEADERS {
        let len = match next {
            IPV6_HOP_BY_HOP | IPV6_ROUTING | IPV6_DEST_OPTS => {
                let ext: [u8; 2] = pkt.bytes(cursor).ok_or(ParseError::Truncated)?;
                next = ext[0];
                (ext[1] as usize + 1) * 8
            }
            IPV6_AUTH => {
                let ext: [u8; 2] = pkt.bytes(cursor).ok_or(ParseError::Truncated)?;
                next = ext[0];
                (ext[1] as usize + 2) * 4
            }
            IPV6_FRAGMENT => {
                let ext: [u8; 8] = pkt.bytes(cursor).ok_or(ParseError::Truncated)?;
                next = ext[0];
                if be16([ext[2], ext[3]]) >> 3 != 0 {
                    info.protocol = next;
                    info.headers_len = (cursor + 8 - offset) as u32;
                    info.fragment = true;
                    return Ok(None);
                }
                8
            }
            _ => break,
        };
        cursor += len;
    }
    info.protocol = next;
    info.headers_len = (cursor - offset) as u32;
    Ok(Some(cursor))
}

#[inline(always)]
fn parse_transport<P: PacketSource + ?Sized>(pkt: &P, offset: usize, info: &mut PacketInfo) {
    match info.protocol {
        IPPROTO_TCP => {
            // The fixed 20-byte header must be there; only ports, data offset and flags are read.
            if let (Some(ports), Some(off_flags), Some(_)) = (
                pkt.bytes::<4>(offset),
                pkt.bytes::<2>(offset + 12),
                pkt.bytes::<1>(offset + 19),
            ) {
                info.src_port = be16([ports[0], ports[1]]);
                info.dst_port = be16([ports[2], ports[3]]);
                info.tcp_flags = off_flags[1] as u16;
                let data_offset = ((off_flags[0] >> 4) as u32) * 4;
                info.headers_len += if data_offset >= 20 { data_offset } else { 20 };
            }
        }
        IPPROTO_UDP | IPPROTO_SCTP => {
            if let Some(ports) = pkt.bytes::<4>(offset) {
                info.src_port = be16([ports[0], ports[1]]);
                info.dst_port = be16([ports[2], ports[3]]);
                info.headers_len += if info.protocol == IPPROTO_UDP { 8 } else { 12 };
            }
        }
        IPPROTO_ICMP | IPPROTO_ICMPV6 => {
            if let Some(icmp) = pkt.bytes::<8>(offset) {
                info.icmp_type = icmp[0];
                info.icmp_code = icmp[1];
                info.headers_len += 8;
                let echo = matches!(
                    (info.protocol, icmp[0]),
                    (IPPROTO_ICMP, ICMP_ECHO_REQUEST | ICMP_ECHO_REPLY)
                        | (IPPROTO_ICMPV6, ICMPV6_ECHO_REQUEST | ICMPV6_ECHO_REPLY)
                );
                if echo {
                    // The echo identifier tells apart concurrent pings between the same hosts.
                    let id = be16([icmp[4], icmp[5]]);
                    info.src_port = id;
                    info.dst_port = id;
                }
            }
        }
        _ => {}
    }
}

/// For an ICMP destination-unreachable (or ICMPv6 type 1) message: `type << 8 | code`, else 0.
#[inline(always)]
pub fn unreachable_error(info: &PacketInfo) -> u16 {
    match (info.protocol, info.icmp_type) {
        (IPPROTO_ICMP, 3) | (IPPROTO_ICMPV6, 1) => {
            (u16::from(info.icmp_type) << 8) | u16::from(info.icmp_code)
        }
        _ => 0,
    }
}

/// Parses the packet an ICMP error quotes (it starts right after the ICMP header).
#[inline(always)]
pub fn parse_quoted_into<P: PacketSource + ?Sized>(
    pkt: &P,
    outer: &PacketInfo,
    inner: &mut PacketInfo,
) -> Result<(), ParseError> {
    let ethertype = if outer.ip_version == 4 {
        ETH_P_IPV4
    } else {
        ETH_P_IPV6
    };
    let offset = (outer.l3_offset + outer.headers_len) as usize;
    parse_network_into(pkt, offset, ethertype, inner)
}

#[inline(always)]
pub fn ipv4_mapped(v4: [u8; 4]) -> [u8; 16] {
    [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, v4[0], v4[1], v4[2], v4[3],
    ]
}

#[cfg(test)]
mod tests;
