//! Which local socket, cgroup and process a connection belongs to, learned once per socket and
//! asked once per connection side, never per packet.
//!
//! Socket hooks run in the process's context when a socket is created, connects or sends to an
//! address: they keep the process in the socket's own storage, which the kernel clones into the
//! sockets accepted from a listener (those are created in softirq context, where no process
//! runs). The tc program asks for a connection's socket at a side's first packet at a hook: the
//! packet's own socket on egress, otherwise the kernel's own socket lookup in the attach
//! namespace, or in the namespace at the far end of a veth. On egress the cgroup comes from the
//! packet's socket itself, so connections older than the agent are attributed too.

use crate::zeroed::zeroed_local;
use aya_ebpf::{
    bindings::{
        bpf_map_type::BPF_MAP_TYPE_SK_STORAGE, bpf_sock, BPF_F_CLONE, BPF_F_NO_PREALLOC,
        BPF_SK_STORAGE_GET_F_CREATE,
    },
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        generated::{
            bpf_sk_fullsock, bpf_sk_lookup_tcp, bpf_sk_lookup_udp, bpf_sk_release,
            bpf_sk_storage_get, bpf_skb_cgroup_id,
        },
    },
    macros::{btf_map, cgroup_sock, cgroup_sock_addr, map},
    maps::HashMap,
    programs::{SockAddrContext, SockContext, TcContext},
    EbpfContext as _,
};
use flowd_common::{FlowStats, PacketInfo, SocketOwner, DIRECTION_EGRESS};

/// The process behind each socket that a hook saw, freed by the kernel with the socket and
/// cloned into the sockets accepted from a listener.
#[btf_map]
static OWNERS: ClonedSocketStorage<SocketOwner> = ClonedSocketStorage::new();

/// A socket storage map definition with `BPF_F_CLONE`, which aya's `SkStorage` cannot express:
/// the same BTF layout (member names and array lengths carry the map's type and flags).
#[repr(C)]
struct ClonedSocketStorage<T> {
    r#type: *const [i32; BPF_MAP_TYPE_SK_STORAGE as usize],
    key: *const i32,
    value: *const T,
    max_entries: *const [i32; 0],
    map_flags: *const [i32; (BPF_F_NO_PREALLOC | BPF_F_CLONE) as usize],
}

// SAFETY: placeholder pointers the loader replaces; never dereferenced from Rust.
unsafe impl<T> Sync for ClonedSocketStorage<T> {}

impl<T> ClonedSocketStorage<T> {
    const fn new() -> Self {
        Self {
            r#type: core::ptr::null(),
            key: core::ptr::null(),
            value: core::ptr::null(),
            max_entries: core::ptr::null(),
            map_flags: core::ptr::null(),
        }
    }
}

/// Socket hooks must allow the operation: 1.
const ALLOW: i32 = 1;

/// `BPF_F_CURRENT_NETNS`: look sockets up in the namespace of the packet's device.
const CURRENT_NETNS: u64 = u64::MAX;

/// Interfaces whose far end is in another namespace (veth pairs to pods), by ifindex: the id
/// the attach namespace gives that namespace (`ip link` shows it as `link-netnsid`). Written by
/// the agent as it attaches and detaches.
#[map]
static PEER_NETNS: HashMap<u32, u32> = HashMap::with_max_entries(16384, 0);

const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;

#[inline(always)]
fn current_owner() -> SocketOwner {
    SocketOwner {
        pid: (bpf_get_current_pid_tgid() >> 32) as u32,
        _pad: 0,
        // SAFETY: plain helper call.
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
        comm: bpf_get_current_comm().unwrap_or_default(),
    }
}

fn owners_map() -> *mut core::ffi::c_void {
    core::ptr::from_ref(&OWNERS).cast_mut().cast()
}

/// Keeps the current process in the socket's storage, creating it on first use.
///
/// # Safety
/// `sk` must be the socket of the running hook's context.
#[inline(always)]
unsafe fn remember_owner(sk: *mut bpf_sock) -> i32 {
    // SAFETY: per the caller; the kernel returns null when the socket cannot carry storage.
    let slot = unsafe {
        bpf_sk_storage_get(
            owners_map(),
            sk.cast(),
            core::ptr::null_mut(),
            BPF_SK_STORAGE_GET_F_CREATE.into(),
        )
    }
    .cast::<SocketOwner>();
    if !slot.is_null() {
        let owner = current_owner();
        // An unconnected UDP socket passes here on every send: write only what changed.
        // SAFETY: a non-null storage pointer is this socket's SocketOwner for this run.
        unsafe {
            if (*slot).pid != owner.pid || (*slot).cgroup_id != owner.cgroup_id {
                slot.write(owner);
            }
        }
    }
    ALLOW
}

#[inline(always)]
fn remember_sender(ctx: &SockAddrContext) -> i32 {
    // SAFETY: the context is a valid bpf_sock_addr for this run; its socket is the caller's.
    unsafe { remember_owner((*ctx.sock_addr).__bindgen_anon_1.sk) }
}

#[cgroup_sock(sock_create)]
pub fn flowd_sock_create(ctx: SockContext) -> i32 {
    // SAFETY: the context's socket is the one being created, in the creating process.
    unsafe { remember_owner(ctx.sock) }
}

#[cgroup_sock_addr(connect4)]
pub fn flowd_connect4(ctx: SockAddrContext) -> i32 {
    remember_sender(&ctx)
}

#[cgroup_sock_addr(connect6)]
pub fn flowd_connect6(ctx: SockAddrContext) -> i32 {
    remember_sender(&ctx)
}

#[cgroup_sock_addr(sendmsg4)]
pub fn flowd_sendmsg4(ctx: SockAddrContext) -> i32 {
    remember_sender(&ctx)
}

#[cgroup_sock_addr(sendmsg6)]
pub fn flowd_sendmsg6(ctx: SockAddrContext) -> i32 {
    remember_sender(&ctx)
}

/// Fills the owner of a connection side seen at tc: the packet's own socket on egress, else
/// the local socket the kernel would deliver it to (ingress) or would have sent it from, else
/// the socket at the far end of a veth (a pod's), as a guess that a local socket replaces.
#[inline(always)]
pub fn fill_owner(
    ctx: &TcContext,
    info: &PacketInfo,
    direction: u8,
    side: usize,
    stats: *mut FlowStats,
) {
    // Siblings, not a chain: the verifier adds up the frames of every call chain.
    if fill_from_packet_socket(ctx, direction, side, stats)
        || (info.protocol != IPPROTO_TCP && info.protocol != IPPROTO_UDP)
    {
        return;
    }
    let egress = direction == DIRECTION_EGRESS;
    let here = Lookup {
        netns: CURRENT_NETNS,
        // On egress the local socket sent the packet: the lookup asks for its reply.
        reply: egress,
        socket_side: if egress { side } else { side ^ 1 },
        certain_if_connected: true,
    };
    if fill_from_lookup(ctx, info, &here, stats) {
        return;
    }
    // SAFETY: valid skb context.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    // SAFETY: read-only lookup of a plain value.
    if let Some(netns) = unsafe { PEER_NETNS.get(&ifindex) } {
        let far = Lookup {
            netns: u64::from(*netns),
            // What comes in through a veth was sent by the far socket.
            reply: !egress,
            socket_side: if egress { side ^ 1 } else { side },
            certain_if_connected: false,
        };
        let _ = fill_from_lookup(ctx, info, &far, stats);
    }
}

/// Egress from a socket in this namespace: the packet carries it, and the sender is `side`.
#[inline(never)]
fn fill_from_packet_socket(
    ctx: &TcContext,
    direction: u8,
    side: usize,
    stats: *mut FlowStats,
) -> bool {
    if direction != DIRECTION_EGRESS {
        return false;
    }
    // SAFETY: valid skb context; `sk` is null when the packet has no socket.
    let sk = unsafe { (*ctx.skb.skb).__bindgen_anon_2.sk };
    if sk.is_null() {
        return false;
    }
    // SAFETY: a non-null context socket; the helper returns null unless it is a full socket
    // (a SYN-ACK carries its request socket, a late reset its time-wait one).
    let full = unsafe { bpf_sk_fullsock(sk) };
    if full.is_null() {
        return false;
    }
    // SAFETY: valid skb context: the cgroup of the packet's socket, known for every socket.
    let cgroup_id = unsafe { bpf_skb_cgroup_id(ctx.skb.skb) };
    // SAFETY: a full socket of this run, not reference-counted by us.
    unsafe { fill_from_socket(full, Some(cgroup_id), side, 1, stats) }
}

/// Where to look a connection's socket up and what a match means.
struct Lookup {
    /// `CURRENT_NETNS`, or the id the attach namespace gives a veth peer's namespace.
    netns: u64,
    /// Look up the socket that sent this packet (ask for its reply) rather than the receiver.
    reply: bool,
    /// The connection side the found socket is on.
    socket_side: usize,
    /// Whether a connected socket, which matches the whole tuple, is certain.
    certain_if_connected: bool,
}

/// The kernel's socket lookup (`bpf_sk_lookup_tcp/udp`) in one namespace. A connected socket
/// matches the whole tuple; a listener or an unconnected UDP socket matches by port, a guess a
/// later packet may replace. TCP and UDP only: the caller checks. Returns whether an owner was
/// written.
#[inline(never)]
fn fill_from_lookup(
    ctx: &TcContext,
    info: &PacketInfo,
    lookup: &Lookup,
    stats: *mut FlowStats,
) -> bool {
    let (socket_port, peer_port) = if lookup.reply {
        (info.src_port, info.dst_port)
    } else {
        (info.dst_port, info.src_port)
    };
    zeroed_local!(tuple: LookupTuple);
    let size = tuple.fill(info, lookup.reply, peer_port, socket_port);
    // SAFETY: valid skb context and an initialised tuple of `size` bytes on the stack.
    let sk = unsafe {
        let tuple = (tuple as *mut LookupTuple).cast();
        if info.protocol == IPPROTO_TCP {
            bpf_sk_lookup_tcp(ctx.as_ptr(), tuple, size, lookup.netns, 0)
        } else {
            bpf_sk_lookup_udp(ctx.as_ptr(), tuple, size, lookup.netns, 0)
        }
    };
    if sk.is_null() {
        return false;
    }
    // SAFETY: a socket returned by the lookup, held until released below.
    let connected = unsafe { (*sk).dst_port } != 0;
    let exact = u8::from(connected && lookup.certain_if_connected);
    // SAFETY: as above.
    unsafe {
        let written = fill_from_socket(sk, None, lookup.socket_side, exact, stats);
        bpf_sk_release(sk.cast());
        written
    }
}

/// Writes the owner of socket `sk` (connection side `local`): the process its hooks stored,
/// and its cgroup when known. The kernel has no helper for a looked-up socket's cgroup here, so
/// a socket no hook saw (older than the agent) gets it from its own packets on egress; until
/// then its owner stays a guess.
///
/// # Safety
/// `sk` must be a full socket valid for this run.
#[inline(always)]
unsafe fn fill_from_socket(
    sk: *mut bpf_sock,
    packet_cgroup: Option<u64>,
    local: usize,
    exact: u8,
    stats: *mut FlowStats,
) -> bool {
    // SAFETY: per the caller; without the create flag nothing is allocated.
    let stored = unsafe { bpf_sk_storage_get(owners_map(), sk.cast(), core::ptr::null_mut(), 0) }
        .cast::<SocketOwner>();
    if stored.is_null() {
        return match packet_cgroup {
            Some(cgroup_id) => {
                set_owner(stats, 0, [0; 16], cgroup_id, local, exact);
                true
            }
            None => false,
        };
    }
    // SAFETY: a non-null storage pointer is this socket's SocketOwner for this run.
    let owner = unsafe { &*stored };
    let cgroup_id = packet_cgroup.unwrap_or(owner.cgroup_id);
    set_owner(stats, owner.pid, owner.comm, cgroup_id, local, exact);
    true
}

/// `struct bpf_sock_tuple`: addresses and ports in network order, IPv4 in the first 12 bytes
/// (36 bytes for IPv6, padded to whole words for zeroing).
#[repr(C, align(8))]
struct LookupTuple {
    words: [u32; 10],
}

// SAFETY: plain integers, 40 bytes, 8-byte aligned.
unsafe impl flowd_common::Zeroable for LookupTuple {}

impl LookupTuple {
    /// Fills the tuple of a packet arriving at the local socket; returns its size in bytes.
    #[inline(always)]
    fn fill(&mut self, info: &PacketInfo, reply: bool, remote_port: u16, local_port: u16) -> u32 {
        let (remote, local) = if reply {
            (&info.dst_addr, &info.src_addr)
        } else {
            (&info.src_addr, &info.dst_addr)
        };
        let word = |addr: &[u8; 16], i: usize| {
            u32::from_ne_bytes([
                addr[i * 4],
                addr[i * 4 + 1],
                addr[i * 4 + 2],
                addr[i * 4 + 3],
            ])
        };
        let ports = u32::from_ne_bytes({
            let (r, l) = (remote_port.to_be_bytes(), local_port.to_be_bytes());
            [r[0], r[1], l[0], l[1]]
        });
        if info.ip_version == 4 {
            self.words[0] = word(remote, 3);
            self.words[1] = word(local, 3);
            self.words[2] = ports;
            12
        } else {
            for i in 0..4 {
                self.words[i] = word(remote, i);
                self.words[4 + i] = word(local, i);
            }
            self.words[8] = ports;
            36
        }
    }
}

/// Writes a connection's owner into its entry. Inline: the callers sit at the end of the
/// deepest call chain, where another frame would not fit.
#[inline(always)]
fn set_owner(
    stats: *mut FlowStats,
    pid: u32,
    comm: [u8; 16],
    cgroup_id: u64,
    local: usize,
    exact: u8,
) {
    // SAFETY: `stats` is a valid map value or stack slot for this run.
    unsafe {
        (*stats).owner_pid = pid;
        (*stats).owner_comm = comm;
        (*stats).owner_cgroup = cgroup_id;
        (*stats).owner_side = local as u8 + 1;
        (*stats).owner_exact = exact;
    }
}
