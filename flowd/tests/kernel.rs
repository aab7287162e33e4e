//! Deterministic tests of the tc programs through BPF_PROG_TEST_RUN: crafted frames go through the
//! real, verifier-approved program in the running kernel; assertions read its maps afterwards.

mod support;

use aya::{
    maps::{HashMap, MapData},
    programs::{ProgramError, SchedClassifier, TestRun, TestRunOptions},
};
use flowd::capture::{load_programs, LoadOptions, LoadedPrograms, MapSizes};
use flowd_common::{
    packets::{
        eth, ipv4, ipv6, tcp, tcp4, udp, v6, vlan_tag, ETH_P_8021AD, ETH_P_8021Q, ETH_P_IPV4,
        ETH_P_IPV6, V4_A, V4_B,
    },
    parse::ipv4_mapped,
    FlowEvent, FlowKey, FlowStats, COUNTER_MALFORMED, COUNTER_MAP_FULL, COUNTER_NOT_IP,
    DIRECTION_EGRESS, DIRECTION_INGRESS, EVENT_MAP_FULL, SIDE_A, SIDE_B, TCP_ACK, TCP_FIN, TCP_SYN,
};
use support::privileged;

const TC_ACT_UNSPEC: u32 = u32::MAX; // -1: "continue with the next program", verdict unchanged
const NETNS_COOKIE: u64 = 4242;

struct Kernel {
    programs: LoadedPrograms,
}

impl Kernel {
    fn load() -> Self {
        Self::with_capacity(1024)
    }

    fn with_capacity(flow_entries: u32) -> Self {
        let programs = load_programs(
            LoadOptions {
                sizes: MapSizes {
                    flow_entries,
                    ring_buffer_bytes: 1 << 16,
                },
                netns_cookie: NETNS_COOKIE,
                drop_probe: flowd::capture::DropProbeMode::Auto,
            },
            None,
        )
        .expect("load the tc programs");
        Self { programs }
    }

    /// Runs one frame through a program; the frame must come back unchanged with TC_ACT_UNSPEC.
    fn run(&mut self, program: &str, frame: &[u8]) {
        let program: &mut SchedClassifier = self
            .programs
            .ebpf
            .program_mut(program)
            .expect("program")
            .try_into()
            .expect("classifier");
        let mut out = vec![0u8; frame.len() + 64];
        let result = program
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ..TestRunOptions::new()
            })
            .unwrap_or_else(|err: ProgramError| {
                panic!("test run of a {}-byte frame: {err:?}", frame.len())
            });
        assert_eq!(
            result.return_value, TC_ACT_UNSPEC,
            "observing never changes a verdict"
        );
        assert_eq!(
            &out[..result.data_size_out as usize],
            frame,
            "the packet is not modified"
        );
    }

    fn ingress(&mut self, frame: &[u8]) {
        self.run("flowd_ingress", frame);
    }

    fn flows(&self) -> Vec<(FlowKey, FlowStats)> {
        let flows: &HashMap<MapData, FlowKey, FlowStats> = &self.programs.flows;
        flows
            .iter()
            .map(|entry| entry.expect("map entry"))
            .collect()
    }

    fn events(&mut self) -> Vec<FlowEvent> {
        let mut events = Vec::new();
        while let Some(item) = self.programs.events.next() {
            assert!(item.len() >= std::mem::size_of::<FlowEvent>());
            // SAFETY: length checked; FlowEvent is plain data.
            events.push(unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) });
        }
        events
    }

    fn counter(&self, index: u32) -> u64 {
        self.programs
            .counters
            .get(&index, 0)
            .expect("counter")
            .iter()
            .sum()
    }
}

#[test]
fn tcp_handshake_lands_in_one_entry_with_both_sides() {
    if !privileged("tcp_handshake_lands_in_one_entry_with_both_sides") {
        return;
    }
    let mut k = Kernel::load();
    k.ingress(&tcp4(V4_B, 40000, V4_A, 7070, TCP_SYN as u8, 0));
    k.run(
        "flowd_egress",
        &tcp4(V4_A, 7070, V4_B, 40000, (TCP_SYN | TCP_ACK) as u8, 0),
    );
    k.ingress(&tcp4(V4_B, 40000, V4_A, 7070, TCP_ACK as u8, 100));
    let flows = k.flows();
    assert_eq!(
        flows.len(),
        1,
        "request and reply share an entry: {flows:?}"
    );
    let (key, stats) = flows[0];
    // A is the lower address: 198.18.0.1:7070, the server here.
    assert_eq!((key.addr_a, key.port_a), (ipv4_mapped(V4_A), 7070));
    assert_eq!((key.addr_b, key.port_b), (ipv4_mapped(V4_B), 40000));
    assert_eq!((key.protocol, key.ip_version, key.ifindex), (6, 4, 1));
    assert_eq!(stats.packets, [1, 2]);
    assert_eq!(stats.bytes, [40, 40 + 140]);
    assert_eq!(stats.tcp_flags[SIDE_B], TCP_SYN | TCP_ACK);
    assert_eq!(stats.tcp_flags[SIDE_A], TCP_SYN | TCP_ACK);
    assert_eq!(stats.hook, [DIRECTION_EGRESS, DIRECTION_INGRESS]);
    assert_eq!(
        (stats.initiator as usize, stats.initiator_certain),
        (SIDE_B, 1)
    );
}

#[test]
fn ipv6_extension_headers_and_vlan_tags_are_parsed() {
    if !privileged("ipv6_extension_headers_and_vlan_tags_are_parsed") {
        return;
    }
    let mut k = Kernel::load();
    // IPv6: hop-by-hop, destination options, then UDP.
    let l4 = udp(5353, 53, 20);
    let hop = vec![60u8, 0, 0, 0, 0, 0, 0, 0];
    let mut dest = vec![17u8, 1];
    dest.extend_from_slice(&[0; 14]);
    let payload = hop.len() + dest.len() + l4.len();
    k.ingress(
        &[
            eth(ETH_P_IPV6),
            ipv6(v6(1), v6(2), 0, payload),
            hop,
            dest,
            l4,
        ]
        .concat(),
    );
    // IPv4 UDP behind 802.1ad + 802.1Q.
    let l4 = udp(1000, 2000, 10);
    k.ingress(
        &[
            eth(ETH_P_8021AD),
            vlan_tag(10, ETH_P_8021Q),
            vlan_tag(20, ETH_P_IPV4),
            ipv4(V4_A, V4_B, 17, l4.len(), 0),
            l4,
        ]
        .concat(),
    );
    let flows = k.flows();
    let v6_flow = flows
        .iter()
        .find(|(key, _)| key.ip_version == 6)
        .expect("IPv6 flow");
    assert_eq!((v6_flow.0.port_a, v6_flow.0.port_b), (5353, 53));
    assert_eq!(v6_flow.1.bytes[SIDE_A], 40 + payload as u64);
    let vlan_flow = flows
        .iter()
        .find(|(key, _)| key.ip_version == 4)
        .expect("VLAN flow");
    assert_eq!((vlan_flow.0.port_a, vlan_flow.0.port_b), (1000, 2000));
    assert_eq!(vlan_flow.1.bytes[SIDE_A], 20 + 8 + 10);
}

#[test]
fn fragments_count_without_ports() {
    if !privileged("fragments_count_without_ports") {
        return;
    }
    let mut k = Kernel::load();
    // First fragment (MF set, offset 0) carries ports; a later one (offset 185) does not.
    let l4 = udp(7000, 8000, 100);
    k.ingress(&[eth(ETH_P_IPV4), ipv4(V4_A, V4_B, 17, l4.len(), 0x2000), l4].concat());
    k.ingress(&[eth(ETH_P_IPV4), ipv4(V4_A, V4_B, 17, 64, 185), vec![0; 64]].concat());
    let mut ports: Vec<(u16, u16)> = k
        .flows()
        .iter()
        .map(|(key, _)| (key.port_a, key.port_b))
        .collect();
    ports.sort();
    assert_eq!(ports, [(0, 0), (7000, 8000)]);
}

#[test]
fn truncated_garbage_and_non_ip_frames_are_counted_not_stored() {
    if !privileged("truncated_garbage_and_non_ip_frames_are_counted_not_stored") {
        return;
    }
    let mut k = Kernel::load();
    let mut arp = eth(0x0806);
    arp.extend_from_slice(&[0; 28]);
    k.ingress(&arp);
    // The kernel's test harness refuses IPv4 frames shorter than an IP header, so the cut comes
    // earlier: a VLAN tag that ends half-way.
    let mut truncated = eth(ETH_P_8021Q);
    truncated.extend_from_slice(&[0, 10]);
    k.ingress(&truncated);
    let mut bad_ihl = eth(ETH_P_IPV4);
    bad_ihl.extend(ipv4(V4_A, V4_B, 6, 0, 0));
    bad_ihl[14] = 0x42;
    k.ingress(&bad_ihl);
    let mut wrong_version = eth(ETH_P_IPV6);
    wrong_version.extend(ipv6(v6(1), v6(2), 17, 0));
    wrong_version[14] = 0x40;
    k.ingress(&wrong_version);
    // A hop-by-hop header announced but missing.
    k.ingress(&[eth(ETH_P_IPV6), ipv6(v6(1), v6(2), 0, 0)].concat());
    assert!(k.flows().is_empty(), "{:?}", k.flows());
    assert_eq!(k.counter(COUNTER_NOT_IP), 1);
    assert_eq!(k.counter(COUNTER_MALFORMED), 4);
}

#[test]
fn tcp_with_cut_header_still_counts_at_ip_level() {
    if !privileged("tcp_with_cut_header_still_counts_at_ip_level") {
        return;
    }
    let mut k = Kernel::load();
    let frame = [
        eth(ETH_P_IPV4),
        ipv4(V4_A, V4_B, 6, 20, 0),
        tcp(1, 2, 0)[..6].to_vec(),
    ]
    .concat();
    k.ingress(&frame);
    let flows = k.flows();
    assert_eq!(flows.len(), 1);
    assert_eq!(
        (flows[0].0.port_a, flows[0].0.port_b, flows[0].0.protocol),
        (0, 0, 6)
    );
}

#[test]
fn a_full_map_sends_the_packet_through_the_ring_buffer_instead_of_losing_it() {
    if !privileged("a_full_map_sends_the_packet_through_the_ring_buffer_instead_of_losing_it") {
        return;
    }
    let mut k = Kernel::with_capacity(2);
    for port in [1000, 1001, 1002] {
        k.ingress(&tcp4(V4_B, port, V4_A, 80, TCP_SYN as u8, 10));
    }
    assert_eq!(k.flows().len(), 2, "the map holds two connections");
    assert_eq!(k.counter(COUNTER_MAP_FULL), 1);
    let events = k.events();
    let kinds: Vec<u32> = events.iter().map(|e| e.kind).collect();
    // New flows are counted, not announced: the ring holds only what carries counts.
    assert_eq!(kinds, [EVENT_MAP_FULL]);
    assert_eq!(k.counter(flowd_common::COUNTER_NEW_FLOWS), 2);
    let event = events
        .iter()
        .find(|e| e.kind == EVENT_MAP_FULL)
        .expect("the overflowing packet");
    assert_eq!(event.key.port_b, 1002, "its connection");
    assert_eq!(event.stats.packets.iter().sum::<u64>(), 1, "and its counts");
    assert_eq!(event.stats.bytes.iter().sum::<u64>(), 50);
}

#[test]
fn the_first_fin_counts_the_end_once_and_takes_no_ring_space() {
    if !privileged("the_first_fin_counts_the_end_once_and_takes_no_ring_space") {
        return;
    }
    let mut k = Kernel::load();
    k.ingress(&tcp4(V4_B, 40000, V4_A, 7070, TCP_SYN as u8, 0));
    k.ingress(&tcp4(V4_B, 40000, V4_A, 7070, TCP_ACK as u8, 100));
    k.ingress(&tcp4(V4_B, 40000, V4_A, 7070, (TCP_FIN | TCP_ACK) as u8, 0));
    k.run(
        "flowd_egress",
        &tcp4(V4_A, 7070, V4_B, 40000, (TCP_FIN | TCP_ACK) as u8, 0),
    );
    assert!(k.events().is_empty(), "notices take no ring space");
    assert_eq!(k.counter(flowd_common::COUNTER_NEW_FLOWS), 1);
    assert_eq!(
        k.counter(flowd_common::COUNTER_FLOW_ENDS),
        1,
        "one end, on the first FIN"
    );
}
