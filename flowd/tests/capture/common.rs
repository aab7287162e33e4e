//! Helpers the feature modules share: the agent on the testbed, traffic, kernel and tc views.

use super::*;

pub const TCP: i32 = pb::Protocol::Tcp as i32;
pub const UDP: i32 = pb::Protocol::Udp as i32;

pub fn id(protocol: i32, source: SocketAddr, destination: SocketAddr) -> FlowId {
    FlowId {
        protocol,
        source,
        destination,
    }
}

pub fn agent_on(hosts: &TwoHosts, extra: &[&str]) -> AgentProcess {
    let netns = hosts.a.path();
    let mut args = vec![
        "--netns",
        netns.to_str().expect("utf-8 path"),
        "--interface",
        testbed::VETH,
    ];
    args.extend_from_slice(extra);
    AgentProcess::start(&args)
}

/// A TCP server in B that reads one connection to its end; returns its port and thread.
pub fn sink_in_b(hosts: &TwoHosts) -> (u16, std::thread::JoinHandle<()>) {
    let listener = hosts
        .b
        .run(|| std::net::TcpListener::bind("198.18.0.2:0"))
        .expect("enter B")
        .expect("bind in B");
    let port = listener.local_addr().expect("bound").port();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("the client connects");
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut stream, &mut buf).expect("read to the end");
    });
    (port, server)
}

/// The connection opened by a client that printed its own source port, once its server is done.
pub async fn connection_of_client(
    stream: &mut tonic::Streaming<pb::GetFlowsResponse>,
    client: &std::process::Output,
    server: std::thread::JoinHandle<()>,
) -> Totals {
    assert!(
        client.status.success(),
        "{}",
        String::from_utf8_lossy(&client.stderr)
    );
    server.join().expect("the server thread");
    let client_port: u16 = String::from_utf8_lossy(&client.stdout)
        .trim()
        .parse()
        .expect("the client prints its source port");
    let mut totals = collect_until(stream, Duration::from_secs(10), |t| {
        t.keys().any(|id| id.source.port() == client_port)
    })
    .await;
    let id = totals
        .keys()
        .find(|id| id.source.port() == client_port)
        .cloned()
        .expect("the client's connection");
    totals.remove(&id).expect("found above")
}

pub fn ip_header_len(server: IpAddr) -> u64 {
    if server.is_ipv4() {
        20
    } else {
        40
    }
}

/// Bytes must be the payload plus, per packet, an IP header and a TCP header of 20 to 60 bytes.
pub fn assert_tcp_side(packets: u64, bytes: u64, payload: usize, ip_header: u64, what: &str) {
    let payload = payload as u64;
    assert!(
        packets >= 3,
        "{what}: SYN, data and FIN at least, got {packets}"
    );
    let overhead = bytes
        .checked_sub(payload)
        .unwrap_or_else(|| panic!("{what}: {bytes} bytes cannot carry a {payload}-byte payload"));
    let (min, max) = (packets * (ip_header + 20), packets * (ip_header + 60));
    assert!(
        (min..=max).contains(&overhead),
        "{what}: {overhead} header bytes over {packets} packets, expected {min}..={max}"
    );
}

pub fn side_flags(totals: &Totals, request: bool) -> pb::TcpFlags {
    let side = if request {
        &totals.last().request
    } else {
        &totals.last().reply
    };
    side.as_ref().and_then(|s| s.tcp_flags).unwrap_or_default()
}

pub fn scrape(addr: &str) -> String {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to metrics");
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: flowd\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// Drops TCP to port 42001 on input, as a CNI enforcing a policy would.
pub const DROP_TCP_42001_ON_INPUT: &str =
    "table inet flowd_test {\n chain input {\n  type filter hook input priority 0;\n  tcp dport 42001 drop\n }\n}\n";

pub fn ip(args: &[&str]) {
    let status = std::process::Command::new("ip")
        .args(args)
        .status()
        .expect("ip");
    assert!(status.success(), "ip {args:?}");
}

/// tcx links the agent process holds open (one per attached hook).
pub fn tcx_links_held(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .expect("fdinfo")
        .filter_map(Result::ok)
        .filter(|entry| {
            std::fs::read_to_string(entry.path())
                .map(|info| {
                    info.lines()
                        .any(|l| l.starts_with("link_type:") && l.contains("tcx"))
                })
                .unwrap_or(false)
        })
        .count()
}

pub type FlowClient = pb::flow_service_client::FlowServiceClient<tonic::transport::Channel>;

pub async fn status_of(client: &mut FlowClient) -> pb::GetStatusResponse {
    client
        .get_status(pb::GetStatusRequest {})
        .await
        .expect("GetStatus")
        .into_inner()
}

pub async fn interfaces_of(client: &mut FlowClient) -> Vec<String> {
    status_of(client)
        .await
        .interfaces
        .into_iter()
        .filter_map(|i| i.interface.map(|i| i.name))
        .collect()
}

pub fn tc_filters(hosts: &TwoHosts, direction: &str) -> String {
    let output = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &hosts.a.name,
            "tc",
            "filter",
            "show",
            "dev",
        ])
        .args([testbed::VETH, direction])
        .output()
        .expect("tc");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}
