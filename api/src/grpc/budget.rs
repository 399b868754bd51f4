//! The memory gRPC request bodies hold while a message arrives, bounded per core as HTTP
//! bodies are (`body_bytes_budget_per_core`): tonic buffers each message until it is whole (up
//! to `body_bytes_max`), and a client could open many calls and stop each one just short of
//! its end. [`BudgetedBody`] follows the gRPC framing (a 5-byte prefix: compressed flag, then
//! the length as u32 big-endian) as the bytes go by, and charges the bytes of the message not
//! yet complete to the core's [`MessageBudget`]; a whole message's charge is released (tonic
//! decodes it at once, and what a handler holds after that is bounded by the handler: one
//! message for a unary call, at most 16 for a `SubmitStream`). Past the budget the call fails
//! with RESOURCE_EXHAUSTED `OVERLOADED`, and what it held is released. A message whose prefix
//! announces more than `body_bytes_max` is refused there, before any of it is buffered, with
//! RESOURCE_EXHAUSTED `PAYLOAD_TOO_LARGE` (the gRPC specification's status for it; tonic's own
//! limit, set to the same size, stays behind it).

use super::status::status_of;
use crate::http::error::{ApiError, ErrorCode};
use bytes::{Buf, Bytes};
use hyper::body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

/// The gRPC message prefix: a compressed flag (1 byte) and the length (u32, big-endian).
const PREFIX_BYTES: usize = 5;

/// One core's budget for the incomplete gRPC messages of its calls (atomics because tonic
/// requires request bodies to be `Send`; only the core's own calls use it, never contended).
#[derive(Debug)]
pub struct MessageBudget {
    held_bytes: AtomicUsize,
    max_bytes: usize,
}

impl MessageBudget {
    pub fn new(max_bytes: usize) -> MessageBudget {
        MessageBudget {
            held_bytes: AtomicUsize::new(0),
            max_bytes,
        }
    }

    /// What incomplete messages hold now.
    #[cfg(test)]
    pub fn held_bytes(&self) -> usize {
        self.held_bytes.load(Ordering::Relaxed)
    }

    fn charge(&self, bytes: usize) -> bool {
        let before = self.held_bytes.fetch_add(bytes, Ordering::Relaxed);
        if before + bytes > self.max_bytes {
            self.release(bytes);
            return false;
        }
        true
    }

    fn release(&self, bytes: usize) {
        let before = self.held_bytes.fetch_sub(bytes, Ordering::Relaxed);
        assert!(
            before >= bytes,
            "a gRPC body released more than it was charged"
        );
    }
}

/// A request body whose incomplete message counts against its core's [`MessageBudget`].
pub struct BudgetedBody<B> {
    inner: B,
    budget: Arc<MessageBudget>,
    /// A message announcing more than this is refused (`body_bytes_max`).
    message_bytes_max: usize,
    /// Prefix bytes still to come before the next message's length is known.
    prefix_missing: usize,
    prefix: [u8; PREFIX_BYTES],
    /// Bytes of the current message still to come.
    message_missing: usize,
    /// What this body holds charged now: the open message's prefix and bytes so far.
    charged_bytes: usize,
}

impl<B> BudgetedBody<B> {
    pub fn new(inner: B, budget: Arc<MessageBudget>, message_bytes_max: usize) -> BudgetedBody<B> {
        BudgetedBody {
            inner,
            budget,
            message_bytes_max,
            prefix_missing: PREFIX_BYTES,
            prefix: [0; PREFIX_BYTES],
            message_missing: 0,
            charged_bytes: 0,
        }
    }

    /// Follows the framing over `chunk`: the bytes of it that belong to a message still open
    /// at its end, and whether a message completed in it (the first that did is the one
    /// charged before); or the announced length of a message over `message_bytes_max`.
    fn follow(&mut self, mut chunk: &[u8]) -> Result<(usize, bool), usize> {
        let mut open = 0;
        let mut completed = false;
        while !chunk.is_empty() {
            if self.prefix_missing > 0 {
                let take = self.prefix_missing.min(chunk.len());
                let at = PREFIX_BYTES - self.prefix_missing;
                self.prefix[at..at + take].copy_from_slice(&chunk[..take]);
                self.prefix_missing -= take;
                open += take;
                chunk = &chunk[take..];
                if self.prefix_missing == 0 {
                    let [_, a, b, c, d] = self.prefix;
                    self.message_missing = u32::from_be_bytes([a, b, c, d]) as usize;
                    if self.message_missing > self.message_bytes_max {
                        return Err(self.message_missing);
                    }
                }
            } else {
                let take = self.message_missing.min(chunk.len());
                self.message_missing -= take;
                open += take;
                chunk = &chunk[take..];
            }
            if self.prefix_missing == 0 && self.message_missing == 0 {
                completed = true;
                open = 0;
                self.prefix_missing = PREFIX_BYTES;
            }
        }
        Ok((open, completed))
    }
}

impl<B> Drop for BudgetedBody<B> {
    fn drop(&mut self) {
        self.budget.release(self.charged_bytes);
    }
}

impl<B> Body for BudgetedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            Poll::Ready(Some(Err(error))) => return Poll::Ready(Some(Err(error.into()))),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => return Poll::Pending,
        };
        if let Some(data) = frame.data_ref() {
            let (open, completed) = match self.follow(data.chunk()) {
                Ok(followed) => followed,
                Err(length) => {
                    let max = self.message_bytes_max;
                    let refusal = status_of(ApiError::new(
                        ErrorCode::PayloadTooLarge,
                        format!(
                            "a message of {length} bytes is over the node's limit of {max} \
                             bytes (body_bytes_max, docs/operations.md)"
                        ),
                    ));
                    return Poll::Ready(Some(Err(Box::new(refusal))));
                }
            };
            // A completed message gives back what it was charged; the bytes of the message
            // still open at the chunk's end are charged.
            let released = if completed { self.charged_bytes } else { 0 };
            if !self.budget.charge(open) {
                let budget = self.budget.max_bytes;
                let refusal = status_of(ApiError::new(
                    ErrorCode::Overloaded,
                    format!(
                        "the gRPC messages arriving on this core hold its memory budget \
                         ({budget} bytes, body_bytes_budget_per_core): retry"
                    ),
                ));
                return Poll::Ready(Some(Err(Box::new(refusal))));
            }
            self.budget.release(released);
            self.charged_bytes = self.charged_bytes - released + open;
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    fn message(length: usize) -> Vec<u8> {
        let mut m = vec![0u8];
        m.extend_from_slice(&(length as u32).to_be_bytes());
        m.extend(std::iter::repeat_n(7u8, length));
        m
    }

    type Frames =
        futures::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, std::convert::Infallible>>>;

    /// A body of `chunks`, in that order.
    fn body(chunks: Vec<Vec<u8>>, budget: &Arc<MessageBudget>) -> BudgetedBody<StreamBody<Frames>> {
        let frames: Vec<_> = chunks
            .into_iter()
            .map(|c| Ok(Frame::data(Bytes::from(c))))
            .collect();
        BudgetedBody::new(
            StreamBody::new(futures::stream::iter(frames)),
            budget.clone(),
            MESSAGE_BYTES_MAX,
        )
    }

    const MESSAGE_BYTES_MAX: usize = 4000;

    #[test]
    fn a_message_announced_over_the_limit_is_refused_before_it_is_buffered() {
        let budget = Arc::new(MessageBudget::new(100_000));
        let mut b = body(
            vec![message(MESSAGE_BYTES_MAX + 1)[..100].to_vec()],
            &budget,
        );
        futures::executor::block_on(async {
            let error = b.frame().await.unwrap().unwrap_err();
            let status = error.downcast::<tonic::Status>().unwrap();
            assert_eq!(status.code(), tonic::Code::ResourceExhausted);
            let code = status.metadata().get(super::super::status::ERROR_CODE_KEY);
            assert_eq!(code.unwrap(), "PAYLOAD_TOO_LARGE");
            assert!(status.message().contains("4001 bytes"), "{status:?}");
        });
        assert_eq!(budget.held_bytes(), 0);
        // One at the limit is taken.
        let mut b = body(vec![message(MESSAGE_BYTES_MAX)], &budget);
        futures::executor::block_on(async { b.frame().await.unwrap().unwrap() });
    }

    #[test]
    fn open_messages_are_charged_and_whole_ones_released() {
        let budget = Arc::new(MessageBudget::new(1000));
        // Two whole messages in one chunk, then one cut in three (its prefix split too).
        let whole: Vec<u8> = [message(10), message(20)].concat();
        let open = message(600);
        let chunks = vec![
            whole,
            open[..3].to_vec(),
            open[3..300].to_vec(),
            open[300..].to_vec(),
        ];
        let mut b = body(chunks, &budget);
        futures::executor::block_on(async {
            b.frame().await.unwrap().unwrap();
            assert_eq!(budget.held_bytes(), 0, "whole messages hold nothing");
            b.frame().await.unwrap().unwrap();
            assert_eq!(budget.held_bytes(), 3);
            b.frame().await.unwrap().unwrap();
            assert_eq!(budget.held_bytes(), 300);
            b.frame().await.unwrap().unwrap();
            assert_eq!(budget.held_bytes(), 0, "completed: released");
        });
        // Over the budget: the call fails with RESOURCE_EXHAUSTED; a dropped body releases.
        let big = message(2000);
        let mut held = body(vec![big[..900].to_vec()], &budget);
        let mut over = body(vec![big[..200].to_vec()], &budget);
        futures::executor::block_on(async {
            held.frame().await.unwrap().unwrap();
            assert_eq!(budget.held_bytes(), 900);
            let error = over.frame().await.unwrap().unwrap_err();
            let status = error.downcast::<tonic::Status>().unwrap();
            assert_eq!(status.code(), tonic::Code::ResourceExhausted);
            let code = status.metadata().get(super::super::status::ERROR_CODE_KEY);
            assert_eq!(code.unwrap(), "OVERLOADED");
        });
        assert_eq!(budget.held_bytes(), 900, "the refused body holds nothing");
        drop(held);
        assert_eq!(budget.held_bytes(), 0);
    }
}
