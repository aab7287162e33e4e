//! Which local process a connection belongs to. Socket hooks run in the process's context at
//! connect, sendmsg and bind time and remember the owner by socket cookie (or by bound port, for
//! servers, whose accepted sockets are created in softirq context); the tc programs look the
//! owner up when a connection is first seen.

use aya_ebpf::{
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        bpf_get_socket_cookie,
    },
    macros::{cgroup_sock, cgroup_sock_addr, map},
    maps::LruHashMap,
    programs::{SockAddrContext, SockContext, TcContext},
    EbpfContext as _,
};
use flowd_common::{listener_key, FlowStats, PacketInfo, SocketOwner, DIRECTION_EGRESS};

/// LRU: old sockets fall out instead of the map ever filling.
#[map]
static SOCKET_OWNERS: LruHashMap<u64, SocketOwner> = LruHashMap::with_max_entries(65536, 0);

#[map]
static LISTENERS: LruHashMap<u32, SocketOwner> = LruHashMap::with_max_entries(16384, 0);

/// Socket hooks must allow the operation: 1.
const ALLOW: i32 = 1;

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
    let key = listener_key(sock.src_port as u16, sock.protocol as u8, ip_version);
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

/// Fills the owner of a connection seen at tc: the sending socket's owner on egress, the owner
/// of the bound destination port on ingress.
#[inline(never)]
pub fn fill_owner(
    ctx: &TcContext,
    info: &PacketInfo,
    direction: u8,
    side: usize,
    stats: *mut FlowStats,
) {
    let owner = if direction == DIRECTION_EGRESS {
        // SAFETY: valid skb context; 0 when the packet has no local socket.
        let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
        // SAFETY: read-only lookup of a plain value.
        unsafe { SOCKET_OWNERS.get(&cookie) }.or_else(|| unsafe {
            LISTENERS.get(&listener_key(info.src_port, info.protocol, info.ip_version))
        })
    } else {
        // SAFETY: as above.
        unsafe { LISTENERS.get(&listener_key(info.dst_port, info.protocol, info.ip_version)) }
    };
    if let Some(owner) = owner {
        // SAFETY: `stats` is a valid map value or stack slot for this run.
        unsafe {
            (*stats).owner_pid = owner.pid;
            (*stats).owner_cgroup = owner.cgroup_id;
            (*stats).owner_comm = owner.comm;
            // Egress: the local socket sent this packet; ingress: it is the one receiving it.
            let local = if direction == DIRECTION_EGRESS {
                side
            } else {
                side ^ 1
            };
            (*stats).owner_side = local as u8 + 1;
        }
    }
}
