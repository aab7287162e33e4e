//! Floods: more connections than the flow map holds, faster than the ring buffer drains.

use super::{common::*, *};

/// Sends `frames` out of B's veth with an AF_PACKET socket: A's tc ingress sees each one, and
/// A's stack drops them (the destination MAC is not A's), so nothing answers.
fn send_frames_from_b(hosts: &TwoHosts, frames: &[Vec<u8>]) {
    hosts
        .b
        .run(|| {
            let index = nix::net::if_::if_nametoindex(testbed::VETH).expect("B's veth");
            // SAFETY: plain socket syscalls with valid pointers and lengths.
            unsafe {
                let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
                assert!(
                    fd >= 0,
                    "AF_PACKET socket: {}",
                    std::io::Error::last_os_error()
                );
                let mut address: libc::sockaddr_ll = std::mem::zeroed();
                address.sll_family = libc::AF_PACKET as u16;
                address.sll_ifindex = index as i32;
                address.sll_halen = 6;
                for frame in frames {
                    address.sll_addr[..6].copy_from_slice(&frame[..6]);
                    let sent = libc::sendto(
                        fd,
                        frame.as_ptr().cast(),
                        frame.len(),
                        0,
                        (&address as *const libc::sockaddr_ll).cast(),
                        std::mem::size_of::<libc::sockaddr_ll>() as u32,
                    );
                    assert_eq!(
                        sent,
                        frame.len() as isize,
                        "sendto: {}",
                        std::io::Error::last_os_error()
                    );
                }
                libc::close(fd);
            }
        })
        .expect("enter B");
}

/// Resident set of a process, in bytes.
fn resident_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|kb| kb.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        .expect("VmRSS")
        * 1024
}

/// Every SYN of a flood into a 64-entry map and a one-page ring is either in a record or
/// counted as lost, by cause; the agent's memory stays where it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_syn_flood_into_a_full_map_is_counted_to_the_last_packet() {
    if !privileged("a_syn_flood_into_a_full_map_is_counted_to_the_last_packet") {
        return;
    }
    const SYNS: u16 = 5000;
    let hosts = TwoHosts::create("synflood").expect("testbed");
    let agent = agent_on(
        &hosts,
        &[
            "--flow-map-entries",
            "64",
            "--ring-buffer-bytes",
            "4096",
            "--sweep-interval",
            "200ms",
        ],
    );
    let mut client = agent.client().await;
    let mut stream = support::follow(&mut client).await;
    let before = resident_bytes(agent.pid());
    // SYNs from B to port 9 of A, each from its own source port.
    let frames: Vec<Vec<u8>> = (0..SYNS)
        .map(|i| {
            let mut frame = flowd_common::packets::tcp4(
                testbed::HOST_B_V4.octets(),
                10_000 + i,
                testbed::HOST_A_V4.octets(),
                9,
                0x02,
                0,
            );
            // Not A's MAC: A's stack drops the frame after tc saw it, and sends no RST.
            frame[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x99]);
            frame
        })
        .collect();
    tokio::task::block_in_place(|| send_frames_from_b(&hosts, &frames));

    let is_flood = |id: &FlowId| {
        id.destination.port() == 9 && id.source.ip() == IpAddr::V4(testbed::HOST_B_V4)
    };
    let accounted = |totals: &std::collections::HashMap<FlowId, Totals>, lost: u64| {
        let recorded: u64 = totals
            .iter()
            .filter(|(id, _)| is_flood(id))
            .map(|(_, t)| t.request_packets)
            .sum();
        recorded + lost
    };
    // The flood's records arrive over a few sweeps; losses are final once the ring is drained.
    let mut totals = std::collections::HashMap::new();
    let mut lost_packets = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline {
        let more = collect_until(&mut stream, Duration::from_millis(500), |_| false).await;
        for (id, t) in more {
            let entry: &mut Totals = totals.entry(id).or_default();
            entry.request_packets += t.request_packets;
        }
        let status = status_of(&mut client).await;
        lost_packets = status
            .lost
            .get("kernel_ring_buffer_full")
            .copied()
            .unwrap_or(0)
            + status
                .lost
                .get("map_full_overflow_capped")
                .copied()
                .unwrap_or(0);
        if accounted(&totals, lost_packets) >= u64::from(SYNS) {
            break;
        }
    }
    let status = status_of(&mut client).await;
    let counters = &status.counters;
    let recorded = accounted(&totals, 0);
    assert!(
        counters.get("flow_map_full").copied().unwrap_or(0) >= u64::from(SYNS) - 64,
        "the map was full: {counters:?}"
    );
    assert!(
        lost_packets > 0,
        "a one-page ring overflows: {:?}",
        status.lost
    );
    // A few packets of the namespaces' own (IPv6 neighbour discovery) may share the losses.
    let total = recorded + lost_packets;
    assert!(
        (u64::from(SYNS)..=u64::from(SYNS) + 20).contains(&total),
        "every SYN recorded ({recorded}) or counted lost ({:?}): {total} of {SYNS}",
        status.lost
    );
    assert_eq!(
        counters.get("events_new_flow").copied().unwrap_or(0),
        0,
        "no notices on the ring: it is for counts"
    );
    let after = resident_bytes(agent.pid());
    eprintln!(
        "{SYNS} SYNs: {recorded} recorded, lost {:?}, map full {:?}, agent RSS {before} -> {after}",
        status.lost,
        counters.get("flow_map_full")
    );
    assert!(
        after < before + (32 << 20),
        "the agent's memory stays bounded: {before} -> {after} bytes"
    );
    drop(stream);
    assert!(tokio::task::block_in_place(|| agent.terminate()).success());
}
