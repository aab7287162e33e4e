//! Attaching the tc programs to interfaces, inside the interfaces' network namespace.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use aya::programs::{
    links::{FdLink, PinnedLink},
    tc::{self, NlOptions, SchedClassifierLink, TcAttachOptions},
    Link as _, LinkOrder, SchedClassifier, TcAttachType,
};
use aya::Ebpf;
use nix::{ifaddrs::getifaddrs, net::if_::InterfaceFlags};

use super::{
    load::{EGRESS_PROGRAM, INGRESS_PROGRAM},
    pins::PinDir,
    CaptureError,
};
use crate::{model::InterfaceRef, netns};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    /// fd-based tcx links (kernel >= 6.6): ordered, coexist with other programs.
    Tcx,
    /// Classic clsact qdisc filters through netlink.
    Netlink,
}

impl AttachMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcx => "tcx",
            Self::Netlink => "netlink",
        }
    }
}

/// How to attach, as configured: `auto` takes tcx where the kernel has it (>= 6.6).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum TcAttach {
    #[default]
    Auto,
    /// tcx links, first in the chain; fails on kernels without tcx.
    Tcx,
    /// A clsact qdisc with netlink filters, for kernels before 6.6 or tools that expect them.
    Clsact,
}

pub struct Attachment {
    pub interface: Arc<InterfaceRef>,
    pub mode: AttachMode,
    links: Vec<TcLink>,
}

/// One program attached to one direction of an interface.
enum TcLink {
    /// Detached when dropped: clsact filters, and tcx links when nothing is pinned.
    Owned(SchedClassifierLink),
    /// Stays attached, counting into the pinned maps, if the agent dies; detaching unpins it.
    Pinned(PinnedLink),
}

impl TcLink {
    fn detach(self) -> Result<(), String> {
        match self {
            TcLink::Owned(link) => link.detach().map_err(|e| e.to_string()),
            TcLink::Pinned(link) => link
                .unpin()
                .map_err(|e| e.to_string())
                .and_then(|link| link.detach().map_err(|e| e.to_string())),
        }
    }
}

/// Where to attach: the interface, its namespace's cookie, and the pinned state if kept.
struct Target<'a> {
    name: &'a str,
    index: u32,
    cookie: u64,
    netns_text: &'a str,
    pins: Option<&'a PinDir>,
}

/// Everything attached in one network namespace. Netlink filters outlive the process and must be
/// removed from inside their namespace, so dropping this detaches them: no exit path, early
/// return or panic included, can leave programs attached. `detach` does it at a chosen moment.
pub struct Attachments {
    netns: Option<PathBuf>,
    how: TcAttach,
    pins: Option<Arc<PinDir>>,
    pub attached: Vec<Attachment>,
}

fn classifiers(
    ebpf: &mut Ebpf,
) -> Result<(&mut SchedClassifier, &mut SchedClassifier), CaptureError> {
    let (mut ingress, mut egress) = (None, None);
    for (name, program) in ebpf.programs_mut() {
        match name {
            INGRESS_PROGRAM => ingress = Some(program),
            EGRESS_PROGRAM => egress = Some(program),
            _ => {}
        }
    }
    let ingress: &mut SchedClassifier = ingress
        .ok_or(CaptureError::Missing(INGRESS_PROGRAM))?
        .try_into()
        .map_err(|source| CaptureError::Verify {
            program: INGRESS_PROGRAM,
            source,
        })?;
    let egress: &mut SchedClassifier = egress
        .ok_or(CaptureError::Missing(EGRESS_PROGRAM))?
        .try_into()
        .map_err(|source| CaptureError::Verify {
            program: EGRESS_PROGRAM,
            source,
        })?;
    Ok((ingress, egress))
}

impl Attachments {
    /// Attaches ingress and egress programs to `names` (every non-loopback interface when empty)
    /// in `netns` (the agent's own namespace when `None`).
    pub fn attach(
        ebpf: &mut Ebpf,
        netns: Option<&Path>,
        names: &[String],
        how: TcAttach,
        pins: Option<Arc<PinDir>>,
    ) -> Result<Self, CaptureError> {
        let netns_label = netns
            .map(|p| format!(" in network namespace {}", p.display()))
            .unwrap_or_default();
        let netns_text = netns.map(|p| p.display().to_string()).unwrap_or_default();
        let (ingress, egress) = classifiers(ebpf)?;
        let attached = netns::run_in(netns, || -> Result<Vec<Attachment>, CaptureError> {
            let cookie = netns::current_cookie()?;
            let targets = resolve_interfaces(names, &netns_label)?;
            let mut attached = Vec::with_capacity(targets.len());
            for (name, index) in targets {
                let target = Target {
                    name: &name,
                    index,
                    cookie,
                    netns_text: &netns_text,
                    pins: pins.as_deref(),
                };
                match attach_interface(ingress, egress, &target, how) {
                    Ok(attachment) => attached.push(attachment),
                    Err(err) => {
                        // Leave nothing half-attached behind.
                        detach_all(std::mem::take(&mut attached));
                        return Err(err);
                    }
                }
            }
            Ok(attached)
        })??;
        if let Some(pins) = &pins {
            remove_stale_links(pins, &attached);
        }
        Ok(Self {
            netns: netns.map(Path::to_owned),
            how,
            pins,
            attached,
        })
    }

    pub fn is_attached(&self, index: u32) -> bool {
        self.attached.iter().any(|a| a.interface.index == index)
    }

    /// Attaches to one more interface (one that appeared after start).
    pub fn add(
        &mut self,
        ebpf: &mut Ebpf,
        name: &str,
        index: u32,
    ) -> Result<Arc<InterfaceRef>, CaptureError> {
        let (ingress, egress) = classifiers(ebpf)?;
        let netns_text = self
            .netns
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let attachment = netns::run_in(self.netns.as_deref(), || {
            let target = Target {
                name,
                index,
                cookie: netns::current_cookie()?,
                netns_text: &netns_text,
                pins: self.pins.as_deref(),
            };
            attach_interface(ingress, egress, &target, self.how)
        })??;
        let interface = attachment.interface.clone();
        self.attached.push(attachment);
        Ok(interface)
    }

    /// Forgets an interface that went away, removing whatever of its attachment is left.
    pub fn remove(&mut self, index: u32) -> Option<Arc<InterfaceRef>> {
        let position = self
            .attached
            .iter()
            .position(|a| a.interface.index == index)?;
        let attachment = self.attached.remove(position);
        let interface = attachment.interface.clone();
        if let Err(err) = netns::run_in(self.netns.as_deref(), || detach_all(vec![attachment])) {
            tracing::warn!(error = %err, "detaching a removed interface");
        }
        Some(interface)
    }

    pub fn netns(&self) -> Option<&Path> {
        self.netns.as_deref()
    }

    /// Removes every attachment; programs stop counting once this returns.
    pub fn detach(mut self) {
        self.detach_remaining();
    }

    fn detach_remaining(&mut self) {
        let attached = std::mem::take(&mut self.attached);
        if attached.is_empty() {
            return;
        }
        if let Err(err) = netns::run_in(self.netns.as_deref(), || detach_all(attached)) {
            tracing::warn!(error = %err, "detaching in the interfaces' namespace failed");
        }
    }
}

impl Drop for Attachments {
    fn drop(&mut self) {
        self.detach_remaining();
    }
}

/// Attaches both programs to one interface, from inside its namespace.
fn attach_interface(
    ingress: &mut SchedClassifier,
    egress: &mut SchedClassifier,
    target: &Target<'_>,
    how: TcAttach,
) -> Result<Attachment, CaptureError> {
    let (mode, links) = attach_one(ingress, egress, target, how)?;
    tracing::info!(interface = %target.name, ifindex = target.index, mode = mode.as_str(), netns = %target.netns_text, "attached");
    Ok(Attachment {
        interface: Arc::new(InterfaceRef {
            name: target.name.to_owned(),
            index: target.index,
            netns_cookie: target.cookie,
            netns: target.netns_text.to_owned(),
        }),
        mode,
        links,
    })
}

fn detach_all(attached: Vec<Attachment>) {
    for attachment in attached {
        for link in attachment.links {
            if let Err(err) = link.detach() {
                // The interface may already be gone, taking its filters with it.
                tracing::debug!(interface = %attachment.interface.name, error = %err, "detach");
            }
        }
        tracing::info!(interface = %attachment.interface.name, "detached");
    }
}

/// Interfaces to attach to, with their ifindex, in the calling thread's namespace.
fn resolve_interfaces(
    names: &[String],
    netns_label: &str,
) -> Result<Vec<(String, u32)>, CaptureError> {
    let mut found: Vec<(String, u32, bool)> = Vec::new();
    for ifaddr in getifaddrs().map_err(CaptureError::ListInterfaces)? {
        if found
            .iter()
            .any(|(name, _, _)| *name == ifaddr.interface_name)
        {
            continue;
        }
        let index = nix::net::if_::if_nametoindex(ifaddr.interface_name.as_str()).unwrap_or(0);
        let loopback = ifaddr.flags.contains(InterfaceFlags::IFF_LOOPBACK);
        found.push((ifaddr.interface_name, index, loopback));
    }
    let targets: Vec<(String, u32)> = if names.is_empty() {
        found
            .into_iter()
            .filter(|(_, index, loopback)| !loopback && *index != 0)
            .map(|(name, index, _)| (name, index))
            .collect()
    } else {
        names
            .iter()
            .map(|wanted| {
                found
                    .iter()
                    .find(|(name, index, _)| name == wanted && *index != 0)
                    .map(|(name, index, _)| (name.clone(), *index))
                    .ok_or_else(|| CaptureError::NoSuchInterface {
                        interface: wanted.clone(),
                        netns: netns_label.to_owned(),
                    })
            })
            .collect::<Result<_, _>>()?
    };
    if targets.is_empty() {
        return Err(CaptureError::NoInterfaces(netns_label.to_owned()));
    }
    Ok(targets)
}

fn attach_one(
    ingress: &mut SchedClassifier,
    egress: &mut SchedClassifier,
    target: &Target<'_>,
    how: TcAttach,
) -> Result<(AttachMode, Vec<TcLink>), CaptureError> {
    let name = target.name;
    let tcx = match how {
        TcAttach::Auto => aya::util::KernelVersion::current()
            .map(|v| v.code() >= aya::util::KernelVersion::new(6, 6, 0).code())
            .unwrap_or(false),
        TcAttach::Tcx => true,
        TcAttach::Clsact => false,
    };
    let mode = if tcx {
        AttachMode::Tcx
    } else {
        // clsact already present (another tool, or a previous run) is fine.
        if let Err(err) = tc::qdisc_add_clsact(name) {
            tracing::debug!(interface = name, error = %err, "clsact qdisc");
        }
        AttachMode::Netlink
    };
    let mut links = Vec::with_capacity(2);
    for (program, attach_type, direction, program_name) in [
        (
            &mut *ingress,
            TcAttachType::Ingress,
            "ingress",
            INGRESS_PROGRAM,
        ),
        (&mut *egress, TcAttachType::Egress, "egress", EGRESS_PROGRAM),
    ] {
        let failed = |source| CaptureError::Attach {
            interface: name.to_owned(),
            direction,
            source,
        };
        let attached = match mode {
            AttachMode::Tcx => attach_tcx(program, attach_type, direction, target),
            AttachMode::Netlink => {
                // Filters outlive a crashed agent: its orphans would count twice.
                match tc::qdisc_detach_program(name, attach_type, program_name) {
                    Ok(()) => tracing::info!(
                        interface = name,
                        direction,
                        "removed a filter left by a previous agent"
                    ),
                    Err(err) => {
                        tracing::trace!(interface = name, error = %err, "no filter left behind")
                    }
                }
                program
                    .attach_with_options(
                        name,
                        attach_type,
                        TcAttachOptions::Netlink(NlOptions::default()),
                    )
                    .and_then(|id| program.take_link(id))
                    .map(TcLink::Owned)
                    .map_err(failed)
            }
        };
        match attached {
            Ok(link) => links.push(link),
            Err(err) => {
                for link in links {
                    let _ = link.detach();
                }
                return Err(err);
            }
        }
    }
    Ok((mode, links))
}

/// First in the tcx chain: a program that redirects before us would hide packets. With pinned
/// state, a link the previous agent left is taken over (its program swapped for ours in one
/// step, so no packet is missed or counted twice) and the link is pinned again.
fn attach_tcx(
    program: &mut SchedClassifier,
    attach_type: TcAttachType,
    direction: &'static str,
    target: &Target<'_>,
) -> Result<TcLink, CaptureError> {
    let failed = |source| CaptureError::Attach {
        interface: target.name.to_owned(),
        direction,
        source,
    };
    let first = || TcAttachOptions::TcxOrder(LinkOrder::first());
    let Some(pins) = target.pins else {
        return program
            .attach_with_options(target.name, attach_type, first())
            .and_then(|id| program.take_link(id))
            .map(TcLink::Owned)
            .map_err(failed);
    };
    let path = pins.link_path(target.cookie, target.index, direction);
    let taken = if path.exists() {
        match take_over(program, &path) {
            Ok(id) => {
                tracing::info!(
                    interface = target.name,
                    direction,
                    "took over the previous agent's link"
                );
                Some(id)
            }
            Err(err) => {
                // Its interface was deleted (and the ifindex reused), or the link is not ours.
                tracing::info!(interface = target.name, direction, error = %err, "not taking over a pinned link; attaching anew");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    } else {
        None
    };
    let id = match taken {
        Some(id) => id,
        None => program
            .attach_with_options(target.name, attach_type, first())
            .map_err(failed)?,
    };
    let link = program.take_link(id).map_err(failed)?;
    let pin_failed = |error: String| CaptureError::PinLink {
        path: path.clone(),
        error,
    };
    FdLink::try_from(link)
        .map_err(|e| pin_failed(e.to_string()))?
        .pin(&path)
        .map(TcLink::Pinned)
        .map_err(|e| pin_failed(e.to_string()))
}

fn take_over(
    program: &mut SchedClassifier,
    path: &Path,
) -> Result<aya::programs::tc::SchedClassifierLinkId, String> {
    let link = PinnedLink::from_pin(path)
        .map_err(|e| e.to_string())?
        .unpin()
        .map_err(|e| e.to_string())?;
    let link = SchedClassifierLink::try_from(link).map_err(|e| e.to_string())?;
    program.attach_to_link(link).map_err(|e| e.to_string())
}

/// Pinned links this agent did not take over: interfaces gone or no longer wanted. Unpinning
/// the last reference detaches them.
fn remove_stale_links(pins: &PinDir, attached: &[Attachment]) {
    let held: Vec<PathBuf> = attached
        .iter()
        .flat_map(|a| {
            ["ingress", "egress"].map(|direction| {
                pins.link_path(a.interface.netns_cookie, a.interface.index, direction)
            })
        })
        .collect();
    for path in pins.pinned_links() {
        if !held.contains(&path) {
            tracing::info!(path = %path.display(), "removing a pinned link of an interface no longer attached");
            let _ = std::fs::remove_file(&path);
        }
    }
}
