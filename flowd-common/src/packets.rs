//! Crafted frames for tests and benchmarks: parser unit tests here, kernel tests through
//! BPF_PROG_TEST_RUN in the agent. Addresses default to 198.18.0.0/15 and fd00::/8 test ranges.

extern crate std;

use std::{vec, vec::Vec};

pub use crate::parse::{ETH_P_8021AD, ETH_P_8021Q, ETH_P_IPV4, ETH_P_IPV6};

pub const V4_A: [u8; 4] = [198, 18, 0, 1];
pub const V4_B: [u8; 4] = [198, 18, 0, 2];

pub fn v6(last: u8) -> [u8; 16] {
    let mut addr = [0u8; 16];
    addr[0] = 0xfd;
    addr[15] = last;
    addr
}

pub fn eth(ethertype: u16) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

/// An 802.1Q/802.1ad tag carrying `vlan` and announcing `inner` next.
pub fn vlan_tag(vlan: u16, inner: u16) -> Vec<u8> {
    let mut t = vlan.to_be_bytes().to_vec();
    t.extend_from_slice(&inner.to_be_bytes());
    t
}

/// IPv4 header without options; `frag` is the flags/fragment-offset field.
pub fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, payload_len: usize, frag: u16) -> Vec<u8> {
    let total = (20 + payload_len) as u16;
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&total.to_be_bytes());
    h.extend_from_slice(&[0, 1]);
    h.extend_from_slice(&frag.to_be_bytes());
    h.extend_from_slice(&[64, proto, 0, 0]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h
}

pub fn ipv6(src: [u8; 16], dst: [u8; 16], next: u8, payload_len: usize) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(payload_len as u16).to_be_bytes());
    h.extend_from_slice(&[next, 64]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h
}

/// TCP header without options.
pub fn tcp(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    h.extend_from_slice(&[0; 8]);
    h.push(5 << 4);
    h.push(flags);
    h.extend_from_slice(&[0; 6]);
    h
}

/// UDP header and `payload` bytes.
pub fn udp(sport: u16, dport: u16, payload: usize) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    h.extend_from_slice(&((8 + payload) as u16).to_be_bytes());
    h.extend_from_slice(&[0, 0]);
    h.extend(core::iter::repeat_n(0xab, payload));
    h
}

/// A whole IPv4 TCP frame.
pub fn tcp4(
    src: [u8; 4],
    sport: u16,
    dst: [u8; 4],
    dport: u16,
    flags: u8,
    payload: usize,
) -> Vec<u8> {
    let l4 = [tcp(sport, dport, flags), vec![0x5a; payload]].concat();
    [eth(ETH_P_IPV4), ipv4(src, dst, 6, l4.len(), 0), l4].concat()
}

/// A whole IPv6 UDP frame.
pub fn udp6(src: [u8; 16], sport: u16, dst: [u8; 16], dport: u16, payload: usize) -> Vec<u8> {
    let l4 = udp(sport, dport, payload);
    [eth(ETH_P_IPV6), ipv6(src, dst, 17, l4.len()), l4].concat()
}
