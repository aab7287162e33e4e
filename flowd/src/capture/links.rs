//! Following interfaces as they come and go (rtnetlink link notifications, as `ip monitor link`):
//! on a node, pod veths are created and destroyed all the time.

use std::path::{Path, PathBuf};

use futures::{channel::mpsc::UnboundedReceiver, StreamExt as _};
use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::{
    link::{LinkAttribute, LinkFlags},
    RouteNetlinkMessage,
};
use rtnetlink::MulticastGroup;

use super::CaptureError;
use crate::netns;

/// Dumps of the link list tried before the relist is given up until the next one.
const DUMP_ATTEMPTS: u32 = 5;
/// How long one dump may take; a reply lost to an overflowing socket must not stall capture.
const DUMP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkEvent {
    /// A link appeared or changed (new links and state changes share one message).
    Added {
        name: String,
        index: u32,
        loopback: bool,
        /// For a veth whose peer is in another namespace: that namespace's id here.
        peer_netns: Option<u32>,
    },
    Removed {
        index: u32,
    },
    /// The socket's receive buffer overflowed: notifications were lost, and the links must be
    /// listed again to know which there are.
    Overrun,
}

pub struct LinkWatch {
    messages: UnboundedReceiver<(NetlinkMessage<RouteNetlinkMessage>, netlink_sys::SocketAddr)>,
    handle: rtnetlink::Handle,
    connection: tokio::task::JoinHandle<()>,
    netns: Option<PathBuf>,
    receive_buffer: usize,
}

impl LinkWatch {
    /// Subscribes to link notifications of `netns`. The socket is opened inside the namespace
    /// (a netlink socket reports on the namespace it was created in) and driven by this runtime.
    /// `receive_buffer` bytes of socket buffer (the kernel caps it at net.core.rmem_max): a burst
    /// of link changes beyond it is an `Overrun`.
    pub fn start(netns: Option<&Path>, receive_buffer: usize) -> Result<Self, CaptureError> {
        use netlink_sys::AsyncSocket as _;
        let runtime = tokio::runtime::Handle::current();
        let (connection, handle, messages) = netns::run_in(netns, move || {
            let _entered = runtime.enter();
            let (mut connection, handle, messages) =
                rtnetlink::new_multicast_connection(&[MulticastGroup::Link])?;
            let size = i32::try_from(receive_buffer).unwrap_or(i32::MAX);
            connection.socket_mut().socket_mut().set_rx_buf_sz(size)?;
            Ok::<_, std::io::Error>((tokio::spawn(connection), handle, messages))
        })?
        .map_err(CaptureError::LinkWatch)?;
        Ok(Self {
            messages,
            handle,
            connection,
            netns: netns.map(Path::to_owned),
            receive_buffer,
        })
    }

    /// A new subscription in the same namespace, for when this one's stream ended.
    pub fn restart(&self) -> Result<Self, CaptureError> {
        Self::start(self.netns.as_deref(), self.receive_buffer)
    }

    /// The links there are now, as `Added` events (a dump over the same connection), or
    /// `None` when no complete list could be had: a dump that fails part way (ENOBUFS while
    /// links churn) or does not finish within DUMP_TIMEOUT is tried again, up to
    /// DUMP_ATTEMPTS times. A partial list must not be taken for the whole: the links it
    /// misses are not gone.
    pub async fn current(&self) -> Option<Vec<LinkEvent>> {
        use futures::TryStreamExt as _;
        for attempt in 1..=DUMP_ATTEMPTS {
            let dump = async {
                let mut links = self.handle.link().get().execute();
                let mut events = Vec::new();
                while let Some(link) = links.try_next().await? {
                    events.extend(added(&link));
                }
                Ok::<_, rtnetlink::Error>(events)
            };
            match tokio::time::timeout(DUMP_TIMEOUT, dump).await {
                Ok(Ok(events)) => return Some(events),
                Ok(Err(err)) => tracing::warn!(error = %err, attempt, "listing links"),
                Err(_) => tracing::warn!(attempt, "listing links timed out"),
            }
            // The burst that filled the socket buffer is usually over a moment later.
            tokio::time::sleep(std::time::Duration::from_millis(20 * u64::from(attempt))).await;
        }
        None
    }

    /// The next link event; `None` if the netlink connection ended.
    pub async fn next(&mut self) -> Option<LinkEvent> {
        loop {
            let (message, _) = self.messages.next().await?;
            if let Some(event) = event_of(message) {
                return Some(event);
            }
        }
    }
}

impl Drop for LinkWatch {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

fn added(link: &netlink_packet_route::link::LinkMessage) -> Option<LinkEvent> {
    let name = link.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(name) => Some(name.clone()),
        _ => None,
    })?;
    let peer_netns = link.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkNetNsId(id) => u32::try_from(*id).ok(),
        _ => None,
    });
    Some(LinkEvent::Added {
        name,
        index: link.header.index,
        loopback: link.header.flags.contains(LinkFlags::Loopback),
        peer_netns,
    })
}

/// A notification as the kernel sends it, decoded; `None` for anything but a link change.
pub fn link_event_from_bytes(bytes: &[u8]) -> Option<LinkEvent> {
    let message = NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes).ok()?;
    event_of(message)
}

fn event_of(message: NetlinkMessage<RouteNetlinkMessage>) -> Option<LinkEvent> {
    match message.payload {
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)) => added(&link),
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(link)) => {
            Some(LinkEvent::Removed {
                index: link.header.index,
            })
        }
        NetlinkPayload::Overrun(_) => Some(LinkEvent::Overrun),
        _ => None,
    }
}
