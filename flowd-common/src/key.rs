//! From a parsed packet to its connection's map key, shared by the kernel and host tests.

use crate::{
    flow::{FlowKey, SIDE_A, SIDE_B},
    parse::{PacketInfo, IPPROTO_ICMP, IPPROTO_ICMPV6},
    zeroed::Zeroable as _,
};

const ICMP_ECHO_REPLY: u8 = 0;
const ICMP_ECHO_REQUEST: u8 = 8;
const ICMPV6_ECHO_REQUEST: u8 = 128;
const ICMPV6_ECHO_REPLY: u8 = 129;

/// `true` when (a, a_port) sorts after (b, b_port): the packet travels from B to A. Compared
/// as two big-endian words each (the same order as byte by byte, in a fraction of the
/// instructions).
#[inline(always)]
fn sorts_after(a: &[u8; 16], a_port: u16, b: &[u8; 16], b_port: u16) -> bool {
    let words = |x: &[u8; 16]| {
        let (high, low) = x.split_at(8);
        (
            u64::from_be_bytes(high.try_into().unwrap_or([0; 8])),
            u64::from_be_bytes(low.try_into().unwrap_or([0; 8])),
        )
    };
    let (a_high, a_low) = words(a);
    let (b_high, b_low) = words(b);
    (a_high, a_low, a_port) > (b_high, b_low, b_port)
}

/// The connection key for `info` and which side (`SIDE_A`/`SIDE_B`) sent it.
#[inline(always)]
pub fn connection_key(info: &PacketInfo, ifindex: u32) -> (FlowKey, usize) {
    let mut key = FlowKey::zeroed();
    let side = connection_key_into(info, ifindex, &mut key);
    (key, side)
}

/// `connection_key` into a key the caller has zeroed (padding is never written here: a padding
/// byte left as garbage would hash one connection into many). Returns the sending side.
#[inline(always)]
pub fn connection_key_into(info: &PacketInfo, ifindex: u32, key: &mut FlowKey) -> usize {
    let from_b = sorts_after(&info.src_addr, info.src_port, &info.dst_addr, info.dst_port);
    let icmp_type = match (info.protocol, info.icmp_type) {
        (IPPROTO_ICMP, ICMP_ECHO_REPLY) => ICMP_ECHO_REQUEST,
        (IPPROTO_ICMPV6, ICMPV6_ECHO_REPLY) => ICMPV6_ECHO_REQUEST,
        (_, other) => other,
    };
    if from_b {
        key.addr_a = info.dst_addr;
        key.port_a = info.dst_port;
        key.addr_b = info.src_addr;
        key.port_b = info.src_port;
    } else {
        key.addr_a = info.src_addr;
        key.port_a = info.src_port;
        key.addr_b = info.dst_addr;
        key.port_b = info.dst_port;
    }
    key.ifindex = ifindex;
    key.protocol = info.protocol;
    key.ip_version = info.ip_version;
    key.icmp_type = icmp_type;
    key.icmp_code = info.icmp_code;
    if from_b {
        SIDE_B
    } else {
        SIDE_A
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{ipv4_mapped, IPPROTO_TCP};

    fn packet(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> PacketInfo {
        PacketInfo {
            ip_version: 4,
            protocol: IPPROTO_TCP,
            src_addr: ipv4_mapped(src),
            dst_addr: ipv4_mapped(dst),
            src_port: sport,
            dst_port: dport,
            ..PacketInfo::default()
        }
    }

    #[test]
    fn request_and_reply_share_a_key_from_opposite_sides() {
        let request = packet([198, 18, 0, 1], 40000, [198, 18, 0, 2], 80);
        let reply = packet([198, 18, 0, 2], 80, [198, 18, 0, 1], 40000);
        let (k1, s1) = connection_key(&request, 3);
        let (k2, s2) = connection_key(&reply, 3);
        assert_eq!(k1, k2);
        assert_ne!(s1, s2);
        assert_eq!(k1.addr_a, ipv4_mapped([198, 18, 0, 1]));
        assert_eq!((k1.port_a, k1.port_b), (40000, 80));
    }

    #[test]
    fn same_addresses_are_ordered_by_port() {
        let p = packet([127, 0, 0, 1], 9000, [127, 0, 0, 1], 80);
        let (key, side) = connection_key(&p, 1);
        assert_eq!(side, SIDE_B);
        assert_eq!((key.port_a, key.port_b), (80, 9000));
    }

    #[test]
    fn echo_reply_folds_onto_request() {
        let mut request = packet([198, 18, 0, 1], 7, [198, 18, 0, 2], 7);
        request.protocol = IPPROTO_ICMP;
        request.icmp_type = ICMP_ECHO_REQUEST;
        let mut reply = packet([198, 18, 0, 2], 7, [198, 18, 0, 1], 7);
        reply.protocol = IPPROTO_ICMP;
        reply.icmp_type = ICMP_ECHO_REPLY;
        assert_eq!(connection_key(&request, 1).0, connection_key(&reply, 1).0);
    }

    #[test]
    fn different_interfaces_stay_apart() {
        let p = packet([198, 18, 0, 1], 1, [198, 18, 0, 2], 2);
        assert_ne!(connection_key(&p, 1).0, connection_key(&p, 2).0);
    }
}
