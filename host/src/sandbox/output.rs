//! Where the component's stdout and stderr go: nowhere. Only the amount written is logged (at
//! debug level), never the content, which a misbehaving component could fill with secrets.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// A stream that counts and drops what is written to it.
#[derive(Debug, Clone, Copy)]
pub(super) struct DiscardedOutput {
    name: &'static str,
}

impl DiscardedOutput {
    pub(super) const fn named(name: &'static str) -> Self {
        Self { name }
    }
}

impl IsTerminal for DiscardedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for DiscardedOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(Counter {
            name: self.name,
            bytes: 0,
        })
    }
}

struct Counter {
    name: &'static str,
    bytes: usize,
}

impl AsyncWrite for Counter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.bytes += buf.len();
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl Drop for Counter {
    fn drop(&mut self) {
        if self.bytes > 0 {
            tracing::debug!(
                stream = self.name,
                bytes = self.bytes,
                "discarded the component's output"
            );
        }
    }
}
