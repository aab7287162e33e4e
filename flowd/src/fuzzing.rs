//! One entry per fuzz target (`fuzz/`): each takes arbitrary bytes the way the agent meets them
//! and must neither panic nor loop, whatever they hold. Behind feature `testing`.

use std::{io::BufRead as _, path::Path, sync::Arc, time::Duration};

use prost::Message as _;

use crate::{
    capture::{self, SweepTimeouts, Sweeper},
    flow::{assemble::Assembler, wire},
    pipeline::Stage as _,
    proto::v1 as pb,
    query::FlowMatcher,
};

/// A frame as the tc program's parser reads it, and the key it makes.
pub fn packet(data: &[u8]) {
    if let Ok(info) = flowd_common::parse_packet(data) {
        let _ = flowd_common::connection_key(&info, 1);
        let _ = flowd_common::unreachable_error(&info);
    }
}

/// A ring-buffer event as the capture task reads it, through the sweeper, the flow stage and
/// the wire form: corrupt counters must not overflow or panic anywhere on the way.
pub fn ring_event(data: &[u8]) {
    let Some(mut event) = capture::decode_event(data) else {
        return;
    };
    // A drop location is named from the host's /proc/kallsyms (4 MB, read once per new
    // address): its parser is the `kernel_text` target's, and a fuzzer must not read the host.
    event.stats.drop_location = 0;
    let mut sweeper = Sweeper::new(SweepTimeouts {
        active: Duration::from_secs(5),
        idle: Duration::from_secs(15),
        end_grace: Duration::from_secs(1),
        unanswered: Duration::from_secs(3),
    });
    sweeper.add_overflow(event.key, event.stats);
    sweeper.add_overflow(event.key, event.stats);
    sweeper.add_restarted(event.key, event.stats);
    let now = event.stats.last_seen_ns;
    let records = sweeper
        .sweep([(event.key, event.stats)], now, false)
        .records;
    let mut assembler = Assembler::new("fuzz", Arc::default(), Arc::default());
    for record in assembler.process(records) {
        let _ = wire::to_proto(&record).encode_to_vec();
    }
}

/// A settings file.
pub fn config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(file) = crate::config::ConfigFile::parse(Path::new("fuzz.yaml"), text) {
            let _ = file.apply(crate::config::Config::default()).validate();
        }
    }
}

/// Policy and metadata files: the evaluator's loader and enrichment's.
pub fn policy(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = flowd_policy::load::load_str(text, "fuzz.yaml");
        let _ = flowd_policy::pods::StaticPods::load_str(text, "fuzz.yaml");
        let mut index = crate::enrich::MetadataIndex::default();
        let mut report = crate::enrich::LoadReport::default();
        crate::enrich::parse_objects(Path::new("fuzz.yaml"), text, &mut index, &mut report);
    }
}

/// A GetFlows request off the wire: its filters compiled and run against a record.
pub fn filter(data: &[u8]) {
    let Ok(request) = pb::GetFlowsRequest::decode(data) else {
        return;
    };
    if let Ok(matcher) = FlowMatcher::new(&request.allow, &request.deny) {
        let flow = wire::to_proto(&crate::model::FlowRecord::sample(53));
        let _ = matcher.matches(&flow);
        let _ = matcher.only_not_forwarded();
    }
}

/// A record read back from the history: decoded, then turned into what dump and the export
/// file print.
pub fn stored_record(data: &[u8]) {
    if let Ok(flow) = pb::Flow::decode(data) {
        let _ = serde_json::to_string(&flow);
        let _ = FlowMatcher::all().matches(&flow);
    }
}

/// An rtnetlink message as the interface watcher receives it.
pub fn rtnetlink(data: &[u8]) {
    let _ = capture::link_event_from_bytes(data);
}

/// /proc/kallsyms and a tracepoint format file, as the drop probe reads them.
pub fn kernel_text(data: &[u8]) {
    let address = data
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
        .unwrap_or(0);
    let _ = capture::nearest_symbol(std::io::Cursor::new(data).lines(), address);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = capture::parse_format(text);
    }
}

/// A fuzz target: arbitrary bytes in, no panic out.
pub type Target = fn(&[u8]);

/// Every target by the name of its directory under `fuzz/seeds/`.
pub const TARGETS: [(&str, Target); 8] = [
    ("packet", packet),
    ("ring_event", ring_event),
    ("config", config),
    ("policy", policy),
    ("filter", filter),
    ("stored_record", stored_record),
    ("rtnetlink", rtnetlink),
    ("kernel_text", kernel_text),
];

#[cfg(test)]
mod seeds {
    use std::path::PathBuf;

    use flowd_common::packets;

    use super::*;

    /// A settings file touching every kind of value: lists, enums, durations, sizes, paths.
    const SETTINGS: &str = "interfaces: [eth0, veth1]\ntcAttach: clsact\ndropProbe: btf\n\
        activeTimeout: 1m30s\nidleTimeout: 15s\nflowMapEntries: 4096\nringBufferBytes: 65536\n\
        listen: 127.0.0.1:4245\nretentionMaxAge: 24h\npinPath: off\nstoreHoldRecords: 10\n";

    fn seeds_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds")
    }

    /// Inputs of the shape each target expects, from the same code that makes them for real.
    fn corpus() -> Vec<(&'static str, &'static str, Vec<u8>)> {
        let (a, b) = ([198, 18, 0, 1], [198, 18, 0, 2]);
        let record = wire::to_proto(&crate::model::FlowRecord::sample(40000));
        let event = flowd_common::FlowEvent {
            kind: flowd_common::EVENT_MAP_FULL,
            stats: flowd_common::FlowStats {
                packets: [3, 2],
                bytes: [300, 200],
                last_seen_ns: 5_000_000_000,
                ..flowd_common::FlowStats::default()
            },
            ..flowd_common::FlowEvent::default()
        };
        // SAFETY: FlowEvent is plain data; its bytes are what the kernel writes.
        let event_bytes = unsafe {
            std::slice::from_raw_parts(
                (&event as *const flowd_common::FlowEvent).cast::<u8>(),
                std::mem::size_of::<flowd_common::FlowEvent>(),
            )
        }
        .to_vec();
        let request = pb::GetFlowsRequest {
            last: 100,
            follow: true,
            allow: vec![pb::FlowFilter {
                source_ip: vec!["198.18.0.0/15".into()],
                port: vec![7070],
                label: vec!["app=web,tier!=db,env in (a,b),has-key,!no-key".into()],
                ..Default::default()
            }],
            deny: vec![pb::FlowFilter {
                verdict: vec![pb::Verdict::Forwarded as i32],
                ..Default::default()
            }],
            ..Default::default()
        };
        let read = |path: &str| {
            std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
                .unwrap_or_else(|err| panic!("{path}: {err}"))
        };
        // RTM_NEWLINK for "veth0", ifindex 2, with a peer namespace id.
        let mut newlink = vec![0u8; 16 + 16];
        newlink[4..6].copy_from_slice(&16u16.to_ne_bytes()); // RTM_NEWLINK
        newlink[20..24].copy_from_slice(&2i32.to_ne_bytes()); // ifi_index
        for (kind, value) in [
            (3u16, b"veth0\0".to_vec()),
            (37u16, 1i32.to_ne_bytes().to_vec()),
        ] {
            let len = 4 + value.len();
            newlink.extend_from_slice(&(len as u16).to_ne_bytes());
            newlink.extend_from_slice(&kind.to_ne_bytes());
            newlink.extend_from_slice(&value);
            newlink.resize(newlink.len().next_multiple_of(4), 0);
        }
        let total = newlink.len() as u32;
        newlink[0..4].copy_from_slice(&total.to_ne_bytes());
        let kallsyms = b"\x00\x10\x00\x81\xff\xff\xff\xff\nffffffff81000000 T _stext\nffffffff81001000 t kfree_skb_reason\nffffffff81002000 D some_data\n".to_vec();
        let format = b"name: kfree_skb\nID: 1\nformat:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\tfield:void * skbaddr;\toffset:8;\tsize:8;\tsigned:0;\n\tfield:void * location;\toffset:16;\tsize:8;\tsigned:0;\n\tfield:unsigned short protocol;\toffset:24;\tsize:2;\tsigned:0;\n\tfield:enum skb_drop_reason reason;\toffset:28;\tsize:4;\tsigned:0;\n\nprint fmt: \"skbaddr=%p reason=%s\", __print_symbolic(REC->reason, { 2, \"NOT_SPECIFIED\" }, { 6, \"NETFILTER_DROP\" })\n".to_vec();
        vec![
            (
                "packet",
                "tcp4-syn",
                packets::tcp4(a, 40000, b, 7070, 0x02, 0),
            ),
            (
                "packet",
                "udp6",
                packets::udp6(packets::v6(1), 5353, packets::v6(2), 53, 32),
            ),
            (
                "packet",
                "vlan-udp4",
                [
                    packets::eth(0x8100),
                    packets::vlan_tag(7, 0x0800),
                    packets::ipv4(a, b, 17, 8 + 16, 0),
                    packets::udp(1234, 53, 16),
                ]
                .concat(),
            ),
            ("ring_event", "map-full", event_bytes),
            ("config", "settings", SETTINGS.as_bytes().to_vec()),
            (
                "policy",
                "seed-policies",
                read("../deploy/examples/seed/policies.yaml"),
            ),
            (
                "policy",
                "seed-cluster",
                read("../deploy/examples/seed/cluster.yaml"),
            ),
            ("filter", "allow-and-deny", request.encode_to_vec()),
            ("stored_record", "sample", record.encode_to_vec()),
            ("rtnetlink", "newlink-veth", newlink),
            ("kernel_text", "kallsyms", kallsyms),
            ("kernel_text", "kfree_skb-format", format),
        ]
    }

    /// Regenerates the checked-in seeds:
    /// `cargo test -p flowd --lib fuzzing::seeds::write -- --ignored`.
    #[test]
    #[ignore]
    fn write() {
        for (target, name, bytes) in corpus() {
            let dir = seeds_dir().join(target);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }

    /// Every checked-in input, seeds and the regressions the fuzzers found, goes through its
    /// target in the ordinary test run.
    #[test]
    fn every_checked_in_input_goes_through_its_target() {
        let mut ran = 0;
        for (target, run) in TARGETS {
            let dir = seeds_dir().join(target);
            let entries =
                std::fs::read_dir(&dir).unwrap_or_else(|err| panic!("{}: {err}", dir.display()));
            for entry in entries {
                let path = entry.unwrap().path();
                run(&std::fs::read(&path).unwrap());
                ran += 1;
            }
        }
        assert!(ran >= corpus().len(), "{ran} inputs");
    }

    #[test]
    fn the_seeds_reach_past_the_first_check() {
        // A seed that fails to parse would only test the error path.
        let rt = corpus();
        let bytes = |name: &str| rt.iter().find(|(_, n, _)| *n == name).unwrap().2.clone();
        assert!(flowd_common::parse_packet(bytes("tcp4-syn").as_slice()).is_ok());
        assert!(capture::decode_event(&bytes("map-full")).is_some());
        assert!(pb::GetFlowsRequest::decode(bytes("allow-and-deny").as_slice()).is_ok());
        assert!(matches!(
            capture::link_event_from_bytes(&bytes("newlink-veth")),
            Some(capture::LinkEvent::Added { ref name, index: 2, peer_netns: Some(1), .. }) if name == "veth0"
        ));
        let settings = crate::config::ConfigFile::parse(Path::new("seed.yaml"), SETTINGS);
        assert!(settings.is_ok(), "{settings:?}");
        let format = String::from_utf8(bytes("kfree_skb-format")).unwrap();
        assert!(capture::parse_format(&format).is_ok());
    }
}
