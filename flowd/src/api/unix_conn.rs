//! A unix-socket connection whose inbound bytes pass through [`AuthorityRewriter`].

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::BytesMut;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::UnixStream,
};
use tonic::transport::server::Connected;

use super::authority::AuthorityRewriter;

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 16 * 1024;

pub struct UnixConnection {
    stream: UnixStream,
    rewriter: AuthorityRewriter,
    /// Rewritten bytes the server has not read yet.
    ready: BytesMut,
    scratch: Box<[u8]>,
}

impl UnixConnection {
    pub fn new(stream: UnixStream) -> Self {
        Self {
            stream,
            rewriter: AuthorityRewriter::default(),
            ready: BytesMut::new(),
            scratch: vec![0; READ_CHUNK].into_boxed_slice(),
        }
    }
}

impl Connected for UnixConnection {
    type ConnectInfo = <UnixStream as Connected>::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for UnixConnection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // A read may complete only part of a frame, which yields nothing yet: read again.
        while this.ready.is_empty() {
            let mut scratch = ReadBuf::new(&mut this.scratch);
            match Pin::new(&mut this.stream).poll_read(cx, &mut scratch) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Ready(Ok(())) if scratch.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => {
                    let filled = scratch.filled().len();
                    this.rewriter
                        .feed(&this.scratch[..filled], &mut this.ready)
                        .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))?;
                }
            }
        }
        let take = this.ready.len().min(buf.remaining());
        buf.put_slice(&this.ready.split_to(take));
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for UnixConnection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
