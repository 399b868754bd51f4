//! The link tasks: the listener, each inbound link's reader (handshake, frames), each
//! outbound link's connector and writer, reconnect back-off.

use super::*;

pub(super) async fn run_listener(inner: Rc<Inner>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                if inner.inbound_links.get() >= inner.config.inbound_links_max {
                    inner.bump(|c| c.inbound_links_refused += 1);
                    tracing::warn!(
                        remote = ?stream.peer_addr().ok(),
                        limit = inner.config.inbound_links_max,
                        "inbound link refused: too many open"
                    );
                    continue;
                }
                inner.inbound_links.set(inner.inbound_links.get() + 1);
                inner.bump(|c| c.inbound_links_accepted += 1);
                let task_inner = Rc::clone(&inner);
                inner.spawn(move |id| run_reader(task_inner, stream, id));
            }
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning on accept.
                tracing::warn!(error = %e, "accept failed");
                sleep(Duration::from_millis(inner.config.backoff_min_ms)).await;
            }
        }
    }
}

/// Gives back the inbound slot and, if still current, the peer's inbound link, however the
/// reader ends (returned, or cancelled and dropped).
pub(super) struct InboundGuard {
    inner: Rc<Inner>,
    task_id: u64,
    peer: Option<Rc<Peer>>,
}

impl Drop for InboundGuard {
    fn drop(&mut self) {
        self.inner
            .inbound_links
            .set(self.inner.inbound_links.get().saturating_sub(1));
        if let Some(peer) = &self.peer {
            if peer.inbound_task.get() == Some(self.task_id) {
                peer.inbound_task.set(None);
            }
        }
    }
}

pub(super) async fn run_reader(inner: Rc<Inner>, stream: TcpStream, task_id: u64) {
    let mut guard = InboundGuard {
        inner: Rc::clone(&inner),
        task_id,
        peer: None,
    };
    let remote = stream.peer_addr().ok();
    let mut decoder = FrameDecoder::new(inner.handshake_limits(), inner.config.read_buffer_bytes);
    // One deadline for the TLS handshake and the handshake frames together.
    let handshake = within(inner.config.handshake_timeout_ms, async {
        let mut stream = accept_link(&inner, stream).await?;
        let peer = accept_handshake(&inner, &mut stream, &mut decoder).await?;
        Ok((stream, peer))
    })
    .await;
    let (mut stream, peer) = match handshake {
        Ok(link) => link,
        Err(e) => {
            inner.bump(|c| {
                c.handshakes_refused += 1;
                match e {
                    LinkError::Frame(_) => c.decode_errors += 1,
                    LinkError::Authentication(_) => c.authentication_failures += 1,
                    _ => {}
                }
            });
            tracing::warn!(remote = ?remote, error = %e, "inbound link refused");
            return;
        }
    };
    // A peer that reconnects supersedes its previous link (which may be half-open).
    if let Some(old) = peer.inbound_task.replace(Some(task_id)) {
        inner.tasks.cancel(old);
    }
    guard.peer = Some(Rc::clone(&peer));
    decoder.set_limits(inner.limits);
    tracing::info!(peer = peer.node_id, remote = ?remote, "inbound link up");
    let result = read_frames(&inner, &mut stream, &mut decoder, peer.node_id).await;
    inner.bump(|c| {
        c.links_closed += 1;
        if let Err(LinkError::Frame(_) | LinkError::Protocol(_)) = result {
            c.decode_errors += 1;
        }
    });
    match result {
        Err(LinkError::Closed) | Ok(()) => {}
        Err(LinkError::Eof) => {
            tracing::info!(peer = peer.node_id, remote = ?remote, "inbound link closed by peer")
        }
        Err(e) => tracing::warn!(
            peer = peer.node_id,
            remote = ?remote,
            error = %e,
            "inbound link closed"
        ),
    }
}

/// `future`, or [`LinkError::Timeout`] after `timeout_ms`.
async fn within<T>(
    timeout_ms: u64,
    future: impl Future<Output = Result<T, LinkError>>,
) -> Result<T, LinkError> {
    timeout(Duration::from_millis(timeout_ms), async {
        Ok(future.await)
    })
    .await
    .unwrap_or(Err(LinkError::Timeout))
}

/// An accepted connection made ready for the handshake frames: with peer TLS, once the TLS
/// handshake verified the client's certificate chain.
async fn accept_link(inner: &Inner, stream: TcpStream) -> Result<LinkStream, LinkError> {
    stream.set_write_timeout(Some(Duration::from_millis(inner.config.write_timeout_ms)))?;
    let Some(tls) = &inner.config.tls else {
        return Ok(LinkStream::Plain(stream));
    };
    let stream = tls
        .config()
        .acceptor
        .accept(stream)
        .await
        .map_err(|e| LinkError::Authentication(format!("TLS handshake: {e}")))?;
    Ok(LinkStream::Tls(Box::new(stream.into())))
}

/// Checks that the peer's certificate is for the node its handshake claims (TLS links only:
/// a plain link has nothing to check against).
fn authenticate(stream: &LinkStream, claimed: u64) -> Result<(), LinkError> {
    match stream {
        LinkStream::Plain(_) => Ok(()),
        LinkStream::Tls(tls) => {
            let certificates = tls.get_ref().1.peer_certificates();
            check_peer_identity(certificates, claimed).map_err(LinkError::Authentication)
        }
    }
}

pub(super) async fn accept_handshake(
    inner: &Rc<Inner>,
    stream: &mut LinkStream,
    decoder: &mut FrameDecoder,
) -> Result<Rc<Peer>, LinkError> {
    let handshake = read_handshake(inner, stream, decoder).await?;
    // An impostor learns nothing from us, not even our handshake.
    authenticate(stream, handshake.node_id)?;
    let peer = match inner.check_handshake(&handshake, None) {
        Ok(peer) => peer,
        Err(e) => {
            // Answer anyway, so that a misconfigured peer logs precisely why it was refused
            // (its own check of our handshake fails too), then close.
            let _ = write_flushed(stream, &inner.handshake_frame).await;
            return Err(e);
        }
    };
    write_flushed(stream, &inner.handshake_frame).await?;
    Ok(peer)
}

/// Writes all of `bytes` and flushes: a TLS stream may hold encrypted bytes back until then.
async fn write_flushed(stream: &mut LinkStream, bytes: &[u8]) -> Result<(), LinkError> {
    stream.write_all(bytes).await?;
    stream.flush().await?;
    Ok(())
}

pub(super) async fn read_some(
    inner: &Inner,
    stream: &mut LinkStream,
    decoder: &mut FrameDecoder,
) -> Result<(), LinkError> {
    let n = stream.read(decoder.read_buf()).await?;
    if n == 0 {
        return Err(LinkError::Eof);
    }
    decoder.advance(n);
    inner.bump(|c| c.bytes_received += n as u64);
    Ok(())
}

pub(super) async fn read_handshake(
    inner: &Inner,
    stream: &mut LinkStream,
    decoder: &mut FrameDecoder,
) -> Result<Handshake, LinkError> {
    loop {
        match decoder.next_frame()? {
            Some(Frame::Handshake(h)) => return Ok(h),
            Some(Frame::Data(_)) => return Err(LinkError::Protocol("data frame before handshake")),
            None => {}
        }
        read_some(inner, stream, decoder).await?;
    }
}

/// The batch of a decoded data frame: its body copied once, into an allocation of its own
/// size (entries may keep slices of it for as long as the raft log holds them, so a larger
/// recycled buffer would keep its unused capacity alive with them).
pub(super) fn make_batch(from: u64, frame: DataFrame<'_>) -> InboundBatch {
    InboundBatch {
        from,
        count: frame.len(),
        body: Bytes::copy_from_slice(frame.body()),
    }
}

pub(super) async fn read_frames(
    inner: &Inner,
    stream: &mut LinkStream,
    decoder: &mut FrameDecoder,
    from: u64,
) -> Result<(), LinkError> {
    loop {
        loop {
            let batch = match decoder.next_frame()? {
                None => break,
                Some(Frame::Handshake(_)) => return Err(LinkError::Protocol("second handshake")),
                Some(Frame::Data(d)) if d.is_empty() => continue,
                Some(Frame::Data(d)) => make_batch(from, d),
            };
            let messages = u64::from(batch.len());
            inner.bump(|c| {
                c.frames_received += 1;
                c.messages_received += messages;
            });
            // Waiting here stops reading the socket: back-pressure reaches the sender via TCP.
            if inner.inbound.push(batch).await.is_err() {
                return Err(LinkError::Closed);
            }
        }
        read_some(inner, stream, decoder).await?;
    }
}

/// Reconnect delay after `attempt` consecutive failures: `min * 2^attempt` capped at `max`,
/// minus up to a quarter of random jitter.
pub(super) fn backoff(config: &TransportConfig, attempt: u32, rng: &mut u64) -> Duration {
    let base = config
        .backoff_min_ms
        .saturating_mul(1u64 << attempt.min(20))
        .min(config.backoff_max_ms);
    // xorshift64: cheap, and good enough to de-synchronise reconnecting validators.
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    let jitter = *rng % (base / 4 + 1);
    Duration::from_millis(base - jitter)
}

pub(super) async fn run_writer(inner: Rc<Inner>, peer: Rc<Peer>) {
    let mut spare = inner.staging_encoder();
    let mut attempt: u32 = 0;
    let mut rng = (inner.config.node_id.rotate_left(32) ^ peer.node_id ^ 0x9E37_79B9_7F4A_7C15) | 1;
    loop {
        if inner.closed.get() || peer.removed.get() {
            return;
        }
        match connect(&inner, &peer).await {
            Ok(mut stream) => {
                attempt = 0;
                let connects = peer.connects.get() + 1;
                peer.connects.set(connects);
                inner.bump(|c| {
                    c.connects += 1;
                    if connects > 1 {
                        c.reconnects += 1;
                    }
                });
                peer.connected.set(true);
                tracing::info!(peer = peer.node_id, addr = %peer.addr, connects, "outbound link up");
                let result = pump(&inner, &peer, &mut stream, &mut spare).await;
                peer.connected.set(false);
                // What was staged is dropped, not kept for the next link: raft retransmits from
                // its own state, and a stale backlog would only delay fresh messages.
                let dropped = {
                    let mut staging = peer.staging.borrow_mut();
                    let n = staging.len() + spare.len();
                    staging.clear();
                    spare.clear();
                    n
                };
                inner.bump(|c| {
                    c.links_closed += 1;
                    c.disconnected_drops += u64::from(dropped);
                });
                if let Err(LinkError::Closed) = result {
                    return;
                }
                if let Err(e) = result {
                    tracing::warn!(
                        peer = peer.node_id,
                        addr = %peer.addr,
                        error = %e,
                        dropped,
                        "outbound link closed"
                    );
                }
            }
            Err(e) => {
                inner.bump(|c| {
                    c.connect_failures += 1;
                    match e {
                        LinkError::Refused(_) => c.handshakes_refused += 1,
                        LinkError::Authentication(_) => {
                            c.handshakes_refused += 1;
                            c.authentication_failures += 1;
                        }
                        _ => {}
                    }
                });
                // Warn once per outage; the retries of a peer that stays down go to debug.
                if attempt == 0 || matches!(e, LinkError::Refused(_) | LinkError::Authentication(_))
                {
                    tracing::warn!(peer = peer.node_id, addr = %peer.addr, error = %e, "connect failed");
                } else {
                    tracing::debug!(peer = peer.node_id, addr = %peer.addr, error = %e, attempt, "connect failed");
                }
            }
        }
        let delay = backoff(&inner.config, attempt, &mut rng);
        attempt = attempt.saturating_add(1);
        sleep(delay).await;
    }
}

/// Dials `peer`, exchanges handshakes (TLS, then the handshake frames), and returns the link
/// ready for data.
pub(super) async fn connect(inner: &Rc<Inner>, peer: &Peer) -> Result<LinkStream, LinkError> {
    let stream = TcpStream::connect_timeout(
        peer.addr,
        Duration::from_millis(inner.config.connect_timeout_ms),
    )
    .await?;
    // Raft votes and heartbeats are small and latency-bound; batching is ours to do.
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(Duration::from_millis(inner.config.write_timeout_ms)))?;
    within(inner.config.handshake_timeout_ms, async {
        let mut stream = match &inner.config.tls {
            None => LinkStream::Plain(stream),
            Some(tls) => {
                // rustls refuses a server certificate that is not for the node we dialled.
                let tls_stream = tls
                    .config()
                    .connector
                    .connect(peer_server_name(peer.node_id), stream)
                    .await
                    .map_err(|e| LinkError::Authentication(format!("TLS handshake: {e}")))?;
                LinkStream::Tls(Box::new(tls_stream.into()))
            }
        };
        write_flushed(&mut stream, &inner.handshake_frame).await?;
        // Only the handshake is ever read on an outbound link; a small buffer will do.
        let mut decoder = FrameDecoder::new(inner.handshake_limits(), 0);
        let reply = read_handshake(inner, &mut stream, &mut decoder).await?;
        inner.check_handshake(&reply, Some(peer.node_id))?;
        Ok(stream)
    })
    .await
}

/// Writes whatever `send` staged, one frame per write, until the link fails or closes.
pub(super) async fn pump(
    inner: &Inner,
    peer: &Peer,
    stream: &mut LinkStream,
    spare: &mut DataFrameEncoder,
) -> Result<(), LinkError> {
    loop {
        let work = poll_fn(|cx| {
            if inner.closed.get() || peer.removed.get() {
                return Poll::Ready(false);
            }
            if !peer.staging.borrow().is_empty() {
                return Poll::Ready(true);
            }
            peer.writer_wake.register(cx.waker());
            Poll::Pending
        })
        .await;
        if !work {
            return Err(LinkError::Closed);
        }
        // Double buffering: `send` fills the other frame while this one is on the wire.
        std::mem::swap(&mut *peer.staging.borrow_mut(), spare);
        let messages = u64::from(spare.len());
        let frame = spare.finish();
        let bytes = frame.len() as u64;
        write_flushed(stream, frame).await?;
        spare.clear();
        inner.bump(|c| {
            c.frames_sent += 1;
            c.messages_sent += messages;
            c.bytes_sent += bytes;
        });
    }
}
