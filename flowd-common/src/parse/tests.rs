use super::*;
use crate::packets::{self, eth, tcp, udp};
use std::vec::Vec;

fn ipv4(proto: u8, payload_len: usize, frag: u16) -> Vec<u8> {
    packets::ipv4(packets::V4_A, packets::V4_B, proto, payload_len, frag)
}

fn ipv6(next: u8, payload_len: usize) -> Vec<u8> {
    packets::ipv6(packets::v6(1), packets::v6(2), next, payload_len)
}

fn frame(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

#[test]
fn ipv4_tcp() {
    let l4 = tcp(40000, 7070, 0x02);
    let pkt = frame(&[eth(ETH_P_IPV4), ipv4(IPPROTO_TCP, l4.len(), 0), l4]);
    let info = parse_packet(pkt.as_slice()).unwrap();
    assert_eq!(info.ip_version, 4);
    assert_eq!(info.protocol, IPPROTO_TCP);
    assert_eq!(info.src_addr, ipv4_mapped([198, 18, 0, 1]));
    assert_eq!(info.dst_addr, ipv4_mapped([198, 18, 0, 2]));
    assert_eq!((info.src_port, info.dst_port), (40000, 7070));
    assert_eq!(info.tcp_flags, 0x02);
    assert_eq!(info.ip_len, 40);
    assert_eq!(info.headers_len, 40);
    assert_eq!(info.l3_offset, 14);
}

#[test]
fn ipv4_udp_behind_two_vlan_tags() {
    let l4 = udp(5353, 53, 10);
    let mut pkt = eth(ETH_P_8021AD);
    pkt.extend_from_slice(&[0, 10, 0x81, 0x00]);
    pkt.extend_from_slice(&[0, 20, 0x08, 0x00]);
    pkt.extend(ipv4(IPPROTO_UDP, l4.len(), 0));
    pkt.extend(l4);
    let info = parse_packet(pkt.as_slice()).unwrap();
    assert_eq!(info.l3_offset, 22);
    assert_eq!((info.src_port, info.dst_port), (5353, 53));
    assert_eq!(info.ip_len, 20 + 8 + 10);
    assert_eq!(info.headers_len, 28);
}

#[test]
fn ipv6_udp_after_extension_headers() {
    let l4 = udp(1000, 2000, 4);
    // Hop-by-hop (8 bytes) then destination options (16 bytes) then UDP.
    let hop = vec![IPV6_DEST_OPTS, 0, 0, 0, 0, 0, 0, 0];
    let mut dest = vec![IPPROTO_UDP, 1];
    dest.extend_from_slice(&[0; 14]);
    let payload = hop.len() + dest.len() + l4.len();
    let pkt = frame(&[
        eth(ETH_P_IPV6),
        ipv6(IPV6_HOP_BY_HOP, payload),
        hop,
        dest,
        l4,
    ]);
    let info = parse_packet(pkt.as_slice()).unwrap();
    assert_eq!(info.ip_version, 6);
    assert_eq!(info.protocol, IPPROTO_UDP);
    assert_eq!((info.src_port, info.dst_port), (1000, 2000));
    assert_eq!(info.headers_len, 40 + 8 + 16 + 8);
    assert_eq!(info.src_addr[0], 0xfd);
    assert_eq!(info.ip_len as usize, 40 + payload);
}

#[test]
fn icmp_echo_uses_identifier_as_ports() {
    let icmp = vec![ICMP_ECHO_REQUEST, 0, 0, 0, 0x12, 0x34, 0, 1];
    let pkt = frame(&[eth(ETH_P_IPV4), ipv4(IPPROTO_ICMP, icmp.len(), 0), icmp]);
    let info = parse_packet(pkt.as_slice()).unwrap();
    assert_eq!((info.icmp_type, info.icmp_code), (8, 0));
    assert_eq!((info.src_port, info.dst_port), (0x1234, 0x1234));
}

#[test]
fn icmpv6_unreachable_has_no_ports() {
    let icmp = vec![1, 4, 0, 0, 0, 0, 0, 0];
    let pkt = frame(&[eth(ETH_P_IPV6), ipv6(IPPROTO_ICMPV6, icmp.len()), icmp]);
    let info = parse_packet(pkt.as_slice()).unwrap();
    assert_eq!((info.icmp_type, info.icmp_code), (1, 4));
    assert_eq!((info.src_port, info.dst_port), (0, 0));
}

#[test]
fn ipv4_non_first_fragment_has_no_ports() {
    let pkt = frame(&[eth(ETH_P_IPV4), ipv4(IPPROTO_UDP, 100, 185), vec![0; 100]]);
    let info = parse_packet(pkt.as_slice()).unwrap();
    assert!(info.fragment);
    assert_eq!((info.src_port, info.dst_port), (0, 0));
    assert_eq!(info.protocol, IPPROTO_UDP);
}

#[test]
fn ipv6_non_first_fragment_has_no_ports() {
    let frag = vec![IPPROTO_UDP, 0, 0x05, 0x00, 0, 0, 0, 1];
    let pkt = frame(&[
        eth(ETH_P_IPV6),
        ipv6(IPV6_FRAGMENT, 8 + 32),
        frag,
        vec![0; 32],
    ]);
    let info = parse_packet(pkt.as_slice()).unwrap();
    assert!(info.fragment);
    assert_eq!(info.protocol, IPPROTO_UDP);
    assert_eq!(info.src_port, 0);
}

#[test]
fn non_ip_is_not_an_error() {
    let pkt = frame(&[eth(0x0806), vec![0; 28]]);
    assert_eq!(parse_packet(pkt.as_slice()), Err(ParseError::NotIp));
}

#[test]
fn truncated_headers_are_rejected() {
    assert_eq!(parse_packet(&[0u8; 10][..]), Err(ParseError::Truncated));
    let pkt = frame(&[eth(ETH_P_IPV4), vec![0x45, 0, 0, 20]]);
    assert_eq!(parse_packet(pkt.as_slice()), Err(ParseError::Truncated));
    let pkt = frame(&[eth(ETH_P_IPV6), vec![0x60; 39]]);
    assert_eq!(parse_packet(pkt.as_slice()), Err(ParseError::Truncated));
    let mut vlan = eth(ETH_P_8021Q);
    vlan.extend_from_slice(&[0, 1]);
    assert_eq!(parse_packet(vlan.as_slice()), Err(ParseError::Truncated));
}

#[test]
fn truncated_transport_keeps_ip_level_flow() {
    let pkt = frame(&[
        eth(ETH_P_IPV4),
        ipv4(IPPROTO_TCP, 20, 0),
        vec![0x9c, 0x40, 0x1b],
    ]);
    let info = parse_packet(pkt.as_slice()).unwrap();
    assert_eq!(info.protocol, IPPROTO_TCP);
    assert_eq!((info.src_port, info.dst_port), (0, 0));
    assert_eq!(info.headers_len, 20);
}

#[test]
fn garbage_ip_headers_are_malformed() {
    let mut bad_ihl = ipv4(IPPROTO_TCP, 0, 0);
    bad_ihl[0] = 0x43;
    let pkt = frame(&[eth(ETH_P_IPV4), bad_ihl]);
    assert_eq!(parse_packet(pkt.as_slice()), Err(ParseError::Malformed));
    let mut wrong_version = ipv6(IPPROTO_TCP, 0);
    wrong_version[0] = 0x40;
    let pkt = frame(&[eth(ETH_P_IPV6), wrong_version]);
    assert_eq!(parse_packet(pkt.as_slice()), Err(ParseError::Malformed));
}

#[test]
fn endless_extension_header_chain_stops_at_the_bound() {
    let mut parts = vec![eth(ETH_P_IPV6), ipv6(IPV6_DEST_OPTS, 8 * 10)];
    for _ in 0..10 {
        parts.push(vec![IPV6_DEST_OPTS, 0, 0, 0, 0, 0, 0, 0]);
    }
    let pkt = frame(&parts);
    let info = parse_packet(pkt.as_slice()).unwrap();
    // Gave up after the bound: the transport protocol is the next extension header, no ports.
    assert_eq!(info.protocol, IPV6_DEST_OPTS);
    assert_eq!(info.src_port, 0);
}

#[test]
fn icmp_port_unreachable_quotes_the_udp_packet() {
    // 198.18.0.2 answers a UDP datagram 198.18.0.1:40000 -> 198.18.0.2:5353 it had no socket for.
    let quoted_udp = udp(40000, 5353, 0);
    let quoted = [
        packets::ipv4(
            packets::V4_A,
            packets::V4_B,
            IPPROTO_UDP,
            quoted_udp.len(),
            0,
        ),
        quoted_udp,
    ]
    .concat();
    let icmp = [vec![3, 3, 0, 0, 0, 0, 0, 0], quoted].concat();
    let pkt = frame(&[
        eth(ETH_P_IPV4),
        packets::ipv4(packets::V4_B, packets::V4_A, IPPROTO_ICMP, icmp.len(), 0),
        icmp,
    ]);
    let outer = parse_packet(pkt.as_slice()).unwrap();
    assert_eq!(unreachable_error(&outer), 0x0303);
    let mut inner = PacketInfo::default();
    parse_quoted_into(pkt.as_slice(), &outer, &mut inner).unwrap();
    assert_eq!(
        (inner.src_port, inner.dst_port, inner.protocol),
        (40000, 5353, IPPROTO_UDP)
    );
    assert_eq!(inner.src_addr, ipv4_mapped(packets::V4_A));
}
