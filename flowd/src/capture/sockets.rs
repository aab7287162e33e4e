//! Programs on the cgroup v2 root: socket hooks (create, connect, sendmsg) keep the
//! process behind each socket in the socket's storage, where the tc programs find it with the
//! socket's own cgroup, so flows carry a cgroup, pid and command. Nothing here runs per packet.

use std::{
    fs::File,
    path::{Path, PathBuf},
};

use crate::host::cgroup2_root;
use aya::programs::{links::CgroupAttachMode, CgroupSock, CgroupSockAddr, Link as _};

const ADDR_HOOKS: [&str; 4] = [
    "flowd_connect4",
    "flowd_connect6",
    "flowd_sendmsg4",
    "flowd_sendmsg6",
];
const SOCK_HOOKS: [&str; 1] = ["flowd_sock_create"];

enum HookLink {
    Addr(aya::programs::cgroup_sock_addr::CgroupSockAddrLink),
    Sock(aya::programs::cgroup_sock::CgroupSockLink),
}

/// The attached socket hooks; detach explicitly or by dropping.
pub struct SocketHooks {
    links: Vec<HookLink>,
    pub cgroup: PathBuf,
}

impl SocketHooks {
    pub fn names() -> impl Iterator<Item = &'static str> {
        ADDR_HOOKS.into_iter().chain(SOCK_HOOKS)
    }

    pub fn detach(self) {
        for link in self.links {
            let result = match link {
                HookLink::Addr(link) => link.detach(),
                HookLink::Sock(link) => link.detach(),
            };
            if let Err(err) = result {
                tracing::debug!(error = %err, "detaching a socket hook");
            }
        }
    }
}

/// `Single` is what bpf_link_create wants: cgroup links always coexist with other programs, and
/// the kernel refuses the attach-flag variants for links.
fn open(cgroup: &Path) -> Result<File, String> {
    File::open(cgroup).map_err(|err| format!("opening cgroup {}: {err}", cgroup.display()))
}

fn program<'a, P>(ebpf: &'a mut aya::Ebpf, name: &str) -> Result<&'a mut P, String>
where
    &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or_else(|| format!("{name} missing from the object"))?
        .try_into()
        .map_err(|err| format!("{name}: {err}"))
}

/// Loads and attaches every cgroup program; on any failure detaches what was attached and says why.
pub fn attach(ebpf: &mut aya::Ebpf) -> Result<SocketHooks, String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|err| format!("reading /proc/self/mountinfo: {err}"))?;
    let cgroup = cgroup2_root(&mountinfo).ok_or("no cgroup v2 hierarchy is mounted")?;
    let mut hooks = SocketHooks {
        links: Vec::new(),
        cgroup: cgroup.clone(),
    };
    let result = (|| {
        for name in ADDR_HOOKS {
            let program: &mut CgroupSockAddr = program(ebpf, name)?;
            program
                .load()
                .map_err(|err| format!("loading {name}: {err}"))?;
            let id = program
                .attach(open(&cgroup)?, CgroupAttachMode::Single)
                .map_err(|err| format!("attaching {name} to {}: {err}", cgroup.display()))?;
            let link = program
                .take_link(id)
                .map_err(|err| format!("{name}: {err}"))?;
            hooks.links.push(HookLink::Addr(link));
        }
        for name in SOCK_HOOKS {
            let program: &mut CgroupSock = program(ebpf, name)?;
            program
                .load()
                .map_err(|err| format!("loading {name}: {err}"))?;
            let id = program
                .attach(open(&cgroup)?, CgroupAttachMode::Single)
                .map_err(|err| format!("attaching {name} to {}: {err}", cgroup.display()))?;
            let link = program
                .take_link(id)
                .map_err(|err| format!("{name}: {err}"))?;
            hooks.links.push(HookLink::Sock(link));
        }
        Ok::<(), String>(())
    })();
    match result {
        Ok(()) => Ok(hooks),
        Err(err) => {
            hooks.detach();
            Err(err)
        }
    }
}
