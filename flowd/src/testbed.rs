//! Throwaway hosts for the demo and the privileged tests: two network namespaces joined by a
//! veth pair, addressed from 198.18.0.0/15 (RFC 2544, benchmarking) and fd00::/8 (unique local),
//! so no traffic can reach a real network. Everything is removed on drop.

use std::{
    io::{Read as _, Write as _},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket},
    path::PathBuf,
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use crate::netns::{self, NetnsError};

#[derive(Debug, thiserror::Error)]
pub enum TestbedError {
    #[error("`{command}` failed: {stderr}")]
    Command { command: String, stderr: String },
    #[error("cannot run `ip` ({0}); install iproute2 (`cargo xtask setup` does)")]
    MissingTool(std::io::Error),
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error("traffic: {0}")]
    Io(#[from] std::io::Error),
    #[error("traffic peer thread panicked")]
    Panicked,
}

pub const HOST_A_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const HOST_B_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
pub const HOST_A_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xf10d, 0, 0, 0, 0, 0, 1);
pub const HOST_B_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xf10d, 0, 0, 0, 0, 0, 2);
/// Both ends carry this name, each in its own namespace.
pub const VETH: &str = "veth0";

fn ip(args: &[&str]) -> Result<(), TestbedError> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(TestbedError::MissingTool)?;
    if !output.status.success() {
        return Err(TestbedError::Command {
            command: format!("ip {}", args.join(" ")),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(())
}

/// A named network namespace (`ip netns add`), deleted on drop.
#[derive(Debug)]
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn create(name: String) -> Result<Self, TestbedError> {
        ip(&["netns", "add", &name])?;
        let netns = Self { name };
        ip(&["-n", &netns.name, "link", "set", "lo", "up"])?;
        Ok(netns)
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// Loads an nftables ruleset in this namespace (`nft -f -`), as a CNI enforcing a policy
    /// would.
    pub fn nft(&self, ruleset: &str) -> Result<(), TestbedError> {
        use std::io::Write as _;
        let command = format!("ip netns exec {} nft -f -", self.name);
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.name, "nft", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(TestbedError::MissingTool)?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(ruleset.as_bytes())?;
        }
        let output = child.wait_with_output()?;
        if !output.status.success() {
            return Err(TestbedError::Command {
                command,
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
        Ok(())
    }

    /// Runs `work` inside this namespace.
    pub fn run<T: Send>(&self, work: impl FnOnce() -> T + Send) -> Result<T, TestbedError> {
        Ok(netns::run_in(Some(&self.path()), work)?)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace destroys its end of the veth, and with it the peer.
        if let Err(err) = ip(&["netns", "del", &self.name]) {
            eprintln!("testbed: leaving namespace {} behind: {err}", self.name);
        }
    }
}

/// Host A and host B, one veth pair between them, IPv4 and IPv6 addresses on both ends.
#[derive(Debug)]
pub struct TwoHosts {
    pub a: Netns,
    pub b: Netns,
}

impl TwoHosts {
    /// `tag` makes namespace names readable in `ip netns list`; uniqueness comes from the pid
    /// and a counter, so tests can run in parallel.
    pub fn create(tag: &str) -> Result<Self, TestbedError> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let unique = format!(
            "flowd-{tag}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let a = Netns::create(format!("{unique}-a"))?;
        let b = Netns::create(format!("{unique}-b"))?;
        ip(&[
            "-n", &a.name, "link", "add", VETH, "type", "veth", "peer", "name", VETH, "netns",
            &b.name,
        ])?;
        for (ns, v4, v6) in [(&a, HOST_A_V4, HOST_A_V6), (&b, HOST_B_V4, HOST_B_V6)] {
            ip(&[
                "-n",
                &ns.name,
                "addr",
                "add",
                &format!("{v4}/24"),
                "dev",
                VETH,
            ])?;
            // nodad: usable at once instead of after duplicate address detection.
            ip(&[
                "-n",
                &ns.name,
                "addr",
                "add",
                &format!("{v6}/64"),
                "dev",
                VETH,
                "nodad",
            ])?;
            ip(&["-n", &ns.name, "link", "set", VETH, "up"])?;
        }
        Ok(Self { a, b })
    }
}

/// A finished exchange: the client's ephemeral port identifies its flow.
#[derive(Clone, Copy, Debug)]
pub struct Exchange {
    pub client: SocketAddr,
    pub server: SocketAddr,
}

fn unspecified(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    }
}

/// One TCP connection from A to B: the client sends `request` bytes and half-closes, the server
/// answers `response` bytes and closes.
pub fn tcp_exchange(
    hosts: &TwoHosts,
    server_ip: IpAddr,
    request: usize,
    response: usize,
) -> Result<Exchange, TestbedError> {
    let listener = hosts
        .b
        .run(|| TcpListener::bind(SocketAddr::new(unspecified(server_ip), 0)))??;
    let server = SocketAddr::new(server_ip, listener.local_addr()?.port());
    std::thread::scope(|scope| {
        let serving = scope.spawn(move || -> std::io::Result<()> {
            let (mut stream, _) = listener.accept()?;
            let mut received = Vec::new();
            stream.read_to_end(&mut received)?;
            stream.write_all(&vec![0x5a; response])?;
            stream.shutdown(Shutdown::Both)
        });
        let client = hosts.a.run(|| -> std::io::Result<SocketAddr> {
            let mut stream = TcpStream::connect_timeout(&server, Duration::from_secs(5))?;
            let local = stream.local_addr()?;
            stream.write_all(&vec![0xa5; request])?;
            stream.shutdown(Shutdown::Write)?;
            let mut answer = Vec::new();
            stream.read_to_end(&mut answer)?;
            Ok(local)
        })??;
        serving.join().map_err(|_| TestbedError::Panicked)??;
        Ok(Exchange { client, server })
    })
}

/// `datagrams` UDP datagrams of `size` payload bytes from A to B, each answered by B with one
/// datagram of the same size. Waits for every answer, so none is in flight afterwards.
pub fn udp_exchange(
    hosts: &TwoHosts,
    server_ip: IpAddr,
    datagrams: usize,
    size: usize,
) -> Result<Exchange, TestbedError> {
    let server_socket = hosts
        .b
        .run(|| UdpSocket::bind(SocketAddr::new(unspecified(server_ip), 0)))??;
    let server = SocketAddr::new(server_ip, server_socket.local_addr()?.port());
    server_socket.set_read_timeout(Some(Duration::from_secs(5)))?;
    std::thread::scope(|scope| {
        let echo = scope.spawn(move || -> std::io::Result<()> {
            let mut buf = vec![0u8; size.max(1)];
            for _ in 0..datagrams {
                let (len, from) = server_socket.recv_from(&mut buf)?;
                server_socket.send_to(&buf[..len], from)?;
            }
            Ok(())
        });
        let client = hosts.a.run(|| -> std::io::Result<SocketAddr> {
            let socket = UdpSocket::bind(SocketAddr::new(unspecified(server_ip), 0))?;
            socket.set_read_timeout(Some(Duration::from_secs(5)))?;
            socket.connect(server)?;
            let payload = vec![0x42; size];
            let mut answer = vec![0u8; size.max(1)];
            // One at a time: each answer proves the datagram arrived, so counts are exact.
            for _ in 0..datagrams {
                socket.send(&payload)?;
                socket.recv(&mut answer)?;
            }
            socket.local_addr()
        })??;
        echo.join().map_err(|_| TestbedError::Panicked)??;
        Ok(Exchange { client, server })
    })
}

/// Connects to `server` (from `source`, when given: bound with SO_REUSEADDR so the same port can
/// be taken again at once) and closes with a reset (SO_LINGER 0): no TIME_WAIT, so the tuple is
/// free for the next connection. In the calling thread's namespace.
pub fn connect_and_reset(
    source: Option<std::net::SocketAddrV4>,
    server: std::net::SocketAddrV4,
) -> nix::Result<()> {
    use nix::sys::socket::{
        bind, connect, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn,
    };
    use std::os::fd::AsRawFd as _;
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::empty(),
        None,
    )?;
    if let Some(source) = source {
        setsockopt(&fd, sockopt::ReuseAddr, &true)?;
        bind(fd.as_raw_fd(), &SockaddrIn::from(source))?;
    }
    connect(fd.as_raw_fd(), &SockaddrIn::from(server))?;
    setsockopt(
        &fd,
        sockopt::Linger,
        &nix::libc::linger {
            l_onoff: 1,
            l_linger: 0,
        },
    )
}

/// `count` ICMP (or ICMPv6) echo requests from A to `target`, using the system's ping.
pub fn ping(hosts: &TwoHosts, target: IpAddr, count: u32) -> Result<(), TestbedError> {
    let count = count.to_string();
    let target = target.to_string();
    ip(&[
        "netns",
        "exec",
        &hosts.a.name,
        "ping",
        "-q",
        "-c",
        &count,
        "-i",
        "0.2",
        "-W",
        "2",
        &target,
    ])
}

#[cfg(feature = "testing")]
/// Another tool's tc program, for coexistence tests and benchmark baselines: a two-instruction
/// classifier (`r0 = verdict; exit`) loaded with the raw syscall, since it is not in flowd's
/// object. `TC_ACT_SHOT` (2) drops every packet; `TC_ACT_UNSPEC` (-1) passes them on. `name`
/// (at most 15 bytes) is what the kernel lists it as, so its statistics can be found.
pub fn load_raw_tc_program(verdict: i32, name: &str) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd as _;
    const BPF_PROG_LOAD: libc::c_long = 5;
    const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
    let insns: [u64; 2] = [
        // mov64 r0, imm (opcode 0xb7, immediate in the upper 32 bits)
        0xb7 | (u64::from(verdict as u32) << 32),
        // exit
        0x95,
    ];
    let license = b"GPL\0";
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&BPF_PROG_TYPE_SCHED_CLS.to_ne_bytes());
    attr[4..8].copy_from_slice(&2u32.to_ne_bytes());
    attr[8..16].copy_from_slice(&(insns.as_ptr() as u64).to_ne_bytes());
    attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
    // prog_name: 16 bytes at offset 48, NUL-terminated.
    let name = name.as_bytes();
    let length = name.len().min(15);
    attr[48..48 + length].copy_from_slice(&name[..length]);
    // SAFETY: attr is a zeroed bpf_attr with the PROG_LOAD fields set; pointers outlive the call.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, BPF_PROG_LOAD, attr.as_ptr(), attr.len()) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to us.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) })
}

#[cfg(feature = "testing")]
/// Attaches `program` with a tcx link at the end of the interface's ingress or egress chain, in
/// the calling thread's namespace. The link lives as long as the returned descriptor.
pub fn attach_tcx_last(
    program: &std::os::fd::OwnedFd,
    ifindex: u32,
    ingress: bool,
) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::{AsRawFd as _, FromRawFd as _};
    const BPF_LINK_CREATE: libc::c_long = 28;
    const BPF_TCX_INGRESS: u32 = 46;
    const BPF_TCX_EGRESS: u32 = 47;
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&(program.as_raw_fd() as u32).to_ne_bytes());
    attr[4..8].copy_from_slice(&ifindex.to_ne_bytes());
    let attach_type = if ingress {
        BPF_TCX_INGRESS
    } else {
        BPF_TCX_EGRESS
    };
    attr[8..12].copy_from_slice(&attach_type.to_ne_bytes());
    // SAFETY: attr is a zeroed bpf_attr with the LINK_CREATE fields set.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, BPF_LINK_CREATE, attr.as_ptr(), attr.len()) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: as above.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) })
}

#[cfg(feature = "testing")]
/// Runs `program` once per repeat on `frame` with BPF_PROG_TEST_RUN; returns the kernel's
/// average nanoseconds per run.
pub fn test_run_raw(
    program: &std::os::fd::OwnedFd,
    frame: &[u8],
    repeat: u32,
) -> std::io::Result<u32> {
    use std::os::fd::AsRawFd as _;
    const BPF_PROG_TEST_RUN: libc::c_long = 10;
    let mut run = [0u8; 80];
    run[0..4].copy_from_slice(&(program.as_raw_fd() as u32).to_ne_bytes());
    run[8..12].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
    run[16..24].copy_from_slice(&(frame.as_ptr() as u64).to_ne_bytes());
    run[32..36].copy_from_slice(&repeat.to_ne_bytes());
    // SAFETY: a zeroed bpf_attr with the PROG_TEST_RUN fields set; `frame` outlives the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_TEST_RUN,
            run.as_mut_ptr(),
            run.len(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(u32::from_ne_bytes([run[36], run[37], run[38], run[39]]))
}
