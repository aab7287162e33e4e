//! Which local socket, cgroup and process a connection belongs to.
//!
//! cgroup_skb programs on the cgroup v2 root see every packet of every local socket, in any
//! network namespace, after the kernel found the socket: they record the socket's connection
//! tuple with its cgroup and cookie, once per tuple. Socket hooks run in the process's context at
//! connect, sendmsg and bind time and remember the process by socket cookie (or by bound port,
//! for servers, whose accepted sockets are created in softirq context). The tc programs join
//! them when a connection's side is first seen at a hook.

use crate::{maps::NETNS_COOKIE, zeroed::zeroed_local};
use aya_ebpf::{
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        bpf_get_netns_cookie, bpf_get_socket_cookie, bpf_skb_cgroup_id,
    },
    macros::{cgroup_skb, cgroup_sock, cgroup_sock_addr, map},
    maps::LruHashMap,
    programs::{SkBuffContext, SockAddrContext, SockContext, TcContext},
    EbpfContext as _,
};
use flowd_common::{
    listener_key, parse_network_into, socket_tuple, FlowStats, ListenerKey, PacketInfo,
    PacketSource, SocketCgroup, SocketOwner, SocketTuple, DIRECTION_EGRESS,
};

/// LRU: old sockets fall out instead of the map ever filling.
#[map]
static SOCKET_OWNERS: LruHashMap<u64, SocketOwner> = LruHashMap::with_max_entries(65536, 0);

#[map]
static LISTENERS: LruHashMap<ListenerKey, SocketOwner> = LruHashMap::with_max_entries(16384, 0);

/// Connections of local sockets: tuple to cgroup and cookie. LRU, like the owners.
#[map]
static SOCKET_CGROUPS: LruHashMap<SocketTuple, SocketCgroup> =
    LruHashMap::with_max_entries(65536, 0);

/// Socket hooks and cgroup_skb programs must allow the operation: 1.
const ALLOW: i32 = 1;

/// A cgroup_skb packet starts at its IP header.
struct CgroupSkb<'a>(&'a SkBuffContext);

impl PacketSource for CgroupSkb<'_> {
    #[inline(always)]
    fn bytes<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        self.0.load::<[u8; N]>(offset).ok()
    }
}

#[cgroup_skb(ingress)]
pub fn flowd_cgroup_ingress(ctx: SkBuffContext) -> i32 {
    remember_tuple(&ctx, false);
    ALLOW
}

#[cgroup_skb(egress)]
pub fn flowd_cgroup_egress(ctx: SkBuffContext) -> i32 {
    remember_tuple(&ctx, true);
    ALLOW
}

/// Out of line, like the other parsers: its temporaries must not share the stack with the rest.
#[inline(never)]
fn parse_cgroup_skb(ctx: &SkBuffContext, info: &mut PacketInfo) -> bool {
    let ethertype = u16::from_be(ctx.skb.protocol() as u16);
    parse_network_into(&CgroupSkb(ctx), 0, ethertype, info).is_ok()
}

/// Records the socket behind this packet under its tuple, unless already known.
#[inline(never)]
fn remember_tuple(ctx: &SkBuffContext, egress: bool) {
    zeroed_local!(info: PacketInfo);
    if !parse_cgroup_skb(ctx, info) {
        return;
    }
    // The local socket sent an egress packet and receives an ingress one.
    let tuple = socket_tuple(info, egress);
    // SAFETY: read-only lookup of a plain value.
    if unsafe { SOCKET_CGROUPS.get(&tuple) }.is_some() {
        return;
    }
    // SAFETY: valid skb context; the helpers read the skb's socket.
    let socket = unsafe {
        SocketCgroup {
            cgroup_id: bpf_skb_cgroup_id(ctx.skb.skb),
            cookie: bpf_get_socket_cookie(ctx.as_ptr()),
            netns_cookie: bpf_get_netns_cookie(ctx.as_ptr()),
        }
    };
    let _ = SOCKET_CGROUPS.insert(&tuple, &socket, 0);
}

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

#[inline(always)]
fn remember_socket(ctx: &SockAddrContext) -> i32 {
    // SAFETY: the context is a valid bpf_sock_addr for this run.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    let _ = SOCKET_OWNERS.insert(&cookie, &current_owner(), 0);
    ALLOW
}

#[cgroup_sock_addr(connect4)]
pub fn flowd_connect4(ctx: SockAddrContext) -> i32 {
    remember_socket(&ctx)
}

#[cgroup_sock_addr(connect6)]
pub fn flowd_connect6(ctx: SockAddrContext) -> i32 {
    remember_socket(&ctx)
}

#[cgroup_sock_addr(sendmsg4)]
pub fn flowd_sendmsg4(ctx: SockAddrContext) -> i32 {
    remember_socket(&ctx)
}

#[cgroup_sock_addr(sendmsg6)]
pub fn flowd_sendmsg6(ctx: SockAddrContext) -> i32 {
    remember_socket(&ctx)
}

#[inline(always)]
fn remember_listener(ctx: &SockContext, ip_version: u8) -> i32 {
    // SAFETY: the context is a valid bpf_sock for this run.
    let sock = unsafe { &*ctx.sock };
    // SAFETY: valid bpf_sock context.
    let netns = unsafe { bpf_get_netns_cookie(ctx.as_ptr()) };
    let key = listener_key(netns, sock.src_port as u16, sock.protocol as u8, ip_version);
    let _ = LISTENERS.insert(&key, &current_owner(), 0);
    ALLOW
}

#[cgroup_sock(post_bind4)]
pub fn flowd_post_bind4(ctx: SockContext) -> i32 {
    remember_listener(&ctx, 4)
}

#[cgroup_sock(post_bind6)]
pub fn flowd_post_bind6(ctx: SockContext) -> i32 {
    remember_listener(&ctx, 6)
}

/// Fills the owner of a connection seen at tc. Exact sources first: the connection's own socket
/// as cgroup_skb recorded it (either end may be local), then on egress the sending socket's
/// cookie; the owner of the bound port last, as a guess a later packet may replace.
#[inline(always)]
pub fn fill_owner(
    ctx: &TcContext,
    info: &PacketInfo,
    direction: u8,
    side: usize,
    stats: *mut FlowStats,
) {
    // Siblings, not a chain: the verifier adds up the frames of every call chain.
    if !fill_from_socket(info, direction, side, stats) {
        fill_from_hooks(ctx, info, direction, side, stats);
    }
}

/// The owner from the connection's own socket, if cgroup_skb has seen it. Either end may be a
/// local socket (pods on one node talk to each other): a socket in the attach namespace is the
/// one behind this interface; otherwise the far one (a pod behind its veth) is the sender of
/// what comes in and the receiver of what goes out, and stays open to a better answer.
#[inline(never)]
fn fill_from_socket(info: &PacketInfo, direction: u8, side: usize, stats: *mut FlowStats) -> bool {
    let here = NETNS_COOKIE.load();
    // One tuple turned around for the second lookup, and pointers rather than copies: this runs
    // at the end of the deepest call chain, where every stack byte counts.
    let mut tuple = socket_tuple(info, true);
    let sender = SOCKET_CGROUPS.get_ptr(&tuple);
    core::mem::swap(&mut tuple.local_addr, &mut tuple.remote_addr);
    core::mem::swap(&mut tuple.local_port, &mut tuple.remote_port);
    let receiver = SOCKET_CGROUPS.get_ptr(&tuple);
    // SAFETY: map value pointers are valid for this run.
    let in_here = |socket: *const SocketCgroup| unsafe { (*socket).netns_cookie } == here;
    let (socket, local, exact) = match (sender, receiver) {
        (Some(s), _) if in_here(s) => (s, side, 1),
        (_, Some(r)) if in_here(r) => (r, side ^ 1, 1),
        (Some(s), _) if direction != DIRECTION_EGRESS => (s, side, 0),
        (_, Some(r)) => (r, side ^ 1, 0),
        (Some(s), _) => (s, side, 0),
        (None, None) => return false,
    };
    // SAFETY: as above.
    let (cgroup_id, cookie, netns) = unsafe {
        (
            (*socket).cgroup_id,
            (*socket).cookie,
            (*socket).netns_cookie,
        )
    };
    let port = if local == side {
        info.src_port
    } else {
        info.dst_port
    };
    // SAFETY: as above.
    let owner = unsafe { SOCKET_OWNERS.get(&cookie) }.or_else(|| {
        // SAFETY: as above.
        unsafe { LISTENERS.get(&listener_key(netns, port, info.protocol, info.ip_version)) }
            .filter(|listener| listener.cgroup_id == cgroup_id)
    });
    let (pid, comm) = owner.map_or((0, [0; 16]), |o| (o.pid, o.comm));
    set_owner(stats, pid, comm, cgroup_id, local, exact);
    true
}

/// The owner from the socket hooks alone: the sending socket on egress, else the bound port.
#[inline(never)]
fn fill_from_hooks(
    ctx: &TcContext,
    info: &PacketInfo,
    direction: u8,
    side: usize,
    stats: *mut FlowStats,
) {
    let egress = direction == DIRECTION_EGRESS;
    let sender = if egress {
        // SAFETY: valid skb context; 0 when the packet has no local socket.
        let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
        // SAFETY: read-only lookup of a plain value.
        unsafe { SOCKET_OWNERS.get(&cookie) }
    } else {
        None
    };
    // Egress: the local socket sent this packet (its port is the source); ingress: it is the
    // one receiving it.
    let (owner, exact) = match sender {
        Some(owner) => (Some(owner), 1),
        None => {
            let port = if egress { info.src_port } else { info.dst_port };
            let key = listener_key(NETNS_COOKIE.load(), port, info.protocol, info.ip_version);
            // SAFETY: read-only lookup of a plain value.
            (unsafe { LISTENERS.get(&key) }, 0)
        }
    };
    if let Some(owner) = owner {
        let local = if egress { side } else { side ^ 1 };
        set_owner(stats, owner.pid, owner.comm, owner.cgroup_id, local, exact);
    }
}

/// Writes a connection's owner into its entry. Inline: both callers sit at the end of the
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
