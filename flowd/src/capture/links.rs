//! Following interfaces as they come and go (rtnetlink link notifications, as `ip monitor link`):
//! on a node, pod veths are created and destroyed all the time.

use std::path::Path;

use futures::{channel::mpsc::UnboundedReceiver, StreamExt as _};
use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::{
    link::{LinkAttribute, LinkFlags},
    RouteNetlinkMessage,
};
use rtnetlink::MulticastGroup;

use super::CaptureError;
use crate::netns;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkEvent {
    /// A link appeared or changed (new links and state changes share one message).
    Added {
        name: String,
        index: u32,
        loopback: bool,
    },
    Removed {
        index: u32,
    },
}

pub struct LinkWatch {
    messages: UnboundedReceiver<(NetlinkMessage<RouteNetlinkMessage>, netlink_sys::SocketAddr)>,
    connection: tokio::task::JoinHandle<()>,
}

impl LinkWatch {
    /// Subscribes to link notifications of `netns`. The socket is opened inside the namespace
    /// (a netlink socket reports on the namespace it was created in) and driven by this runtime.
    pub fn start(netns: Option<&Path>) -> Result<Self, CaptureError> {
        let runtime = tokio::runtime::Handle::current();
        let (connection, messages) = netns::run_in(netns, move || {
            let _entered = runtime.enter();
            rtnetlink::new_multicast_connection(&[MulticastGroup::Link])
                .map(|(connection, _handle, messages)| (tokio::spawn(connection), messages))
        })?
        .map_err(CaptureError::LinkWatch)?;
        Ok(Self {
            messages,
            connection,
        })
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

fn event_of(message: NetlinkMessage<RouteNetlinkMessage>) -> Option<LinkEvent> {
    match message.payload {
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)) => {
            let name = link.attributes.iter().find_map(|a| match a {
                LinkAttribute::IfName(name) => Some(name.clone()),
                _ => None,
            })?;
            Some(LinkEvent::Added {
                name,
                index: link.header.index,
                loopback: link.header.flags.contains(LinkFlags::Loopback),
            })
        }
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(link)) => {
            Some(LinkEvent::Removed {
                index: link.header.index,
            })
        }
        _ => None,
    }
}
