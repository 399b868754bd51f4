//! The wire format of validator-to-validator links, sans I/O: frames, their encoder and their
//! defensive decoder.
//!
//! A frame is a fixed 16-byte header followed by a payload:
//!
//! | offset | bytes | field |
//! |---|---|---|
//! | 0 | 4 | magic `AGTF` |
//! | 4 | 1 | version (1) |
//! | 5 | 1 | kind: 1 handshake, 2 data |
//! | 6 | 2 | flags (none defined in version 1: must be 0) |
//! | 8 | 4 | payload length in bytes |
//! | 12 | 4 | CRC32C of header bytes 0..12, then of the payload |
//!
//! All integers are little-endian. A data payload is `count: u32` followed by `count` messages,
//! each `shard: u32, length: u32, bytes`; the messages must fill the payload exactly. A
//! handshake payload is `chain id length: u8, chain id, node id: u64, core: u32, cores: u32,
//! shard count: u32`.
//!
//! The decoder treats every byte as hostile: it checks the header as soon as the header is
//! there (so an oversize length is refused before anything is buffered for it), verifies the
//! checksum before it parses a payload, walks every message once against the payload's bounds
//! and the configured shard range, and never panics or allocates on the decode path.

use thiserror::Error;

/// The first four bytes of every frame.
pub const MAGIC: [u8; 4] = *b"AGTF";
/// The only version this code speaks. A different version is refused, never guessed at.
pub const VERSION: u8 = 1;
/// Fixed header size.
pub const HEADER_BYTES: usize = 16;
/// The largest frame (header included) a link accepts or produces. It bounds the read buffer
/// of every inbound link and the staging buffer of every outbound one. An engine log entry is
/// at most 8,192 records of 168 bytes (1.4 MB), so a raft append of a few entries fits.
pub const FRAME_BYTES_MAX: usize = 8 << 20;
/// The largest payload (frame minus header).
pub const PAYLOAD_BYTES_MAX: usize = FRAME_BYTES_MAX - HEADER_BYTES;
/// Messages per data frame. It bounds the decoder's walk over a frame and the per-frame work of
/// the receiver before it yields.
pub const MESSAGES_PER_FRAME_MAX: u32 = 4096;
/// The `count` field that opens a data payload.
pub const DATA_PREFIX_BYTES: usize = 4;
/// `shard: u32, length: u32` before every message.
pub const MESSAGE_HEADER_BYTES: usize = 8;
/// The largest single message payload: one message alone in a maximal frame.
pub const MESSAGE_BYTES_MAX: usize = PAYLOAD_BYTES_MAX - DATA_PREFIX_BYTES - MESSAGE_HEADER_BYTES;
/// Chain ids are short names or hashes; bounding them bounds the handshake.
pub const CHAIN_ID_BYTES_MAX: usize = 64;
/// Fixed part of a handshake payload after the chain id: node id, core, cores, shard count.
const HANDSHAKE_FIXED_BYTES: usize = 8 + 4 + 4 + 4;
/// Largest handshake payload.
pub const HANDSHAKE_PAYLOAD_BYTES_MAX: usize = 1 + CHAIN_ID_BYTES_MAX + HANDSHAKE_FIXED_BYTES;
/// Largest handshake frame: the frame limit of a link until its handshake is done, so that an
/// unidentified client cannot make the reader buffer anything bigger.
pub const HANDSHAKE_FRAME_BYTES_MAX: usize = HEADER_BYTES + HANDSHAKE_PAYLOAD_BYTES_MAX;

/// What a frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    /// The first frame each side sends on a new link: who it is and what it runs.
    Handshake = 1,
    /// A batch of (shard, payload) messages.
    Data = 2,
}

impl FrameKind {
    fn from_u8(value: u8) -> Option<FrameKind> {
        match value {
            1 => Some(FrameKind::Handshake),
            2 => Some(FrameKind::Data),
            _ => None,
        }
    }
}

/// Why bytes are not a valid frame. Every variant closes the link that produced it.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum FrameError {
    #[error("bad magic {found:02x?} (expected {MAGIC:02x?})")]
    BadMagic { found: [u8; 4] },
    #[error("unsupported frame version {0} (this node speaks {VERSION})")]
    UnsupportedVersion(u8),
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    #[error("unknown frame flags {0:#06x}")]
    UnknownFlags(u16),
    #[error("frame payload of {payload_bytes} bytes exceeds the limit of {payload_bytes_max}")]
    FrameTooLarge {
        payload_bytes: usize,
        payload_bytes_max: usize,
    },
    #[error("checksum mismatch: header says {expected:#010x}, computed {computed:#010x}")]
    ChecksumMismatch { expected: u32, computed: u32 },
    #[error("data payload of {payload_bytes} bytes is shorter than its message count")]
    DataTooShort { payload_bytes: usize },
    #[error("data frame claims {count} messages (limit {count_max})")]
    TooManyMessages { count: u32, count_max: u32 },
    #[error("message {index}: header overruns the frame ({remaining_bytes} bytes left)")]
    MessageHeaderOverrun { index: u32, remaining_bytes: usize },
    #[error("message {index}: {length_bytes} bytes claimed, {remaining_bytes} left in the frame")]
    MessageOverrun {
        index: u32,
        length_bytes: usize,
        remaining_bytes: usize,
    },
    #[error("{trailing_bytes} bytes after the last message")]
    TrailingBytes { trailing_bytes: usize },
    #[error("message {index}: shard {shard} out of range (shard count {shard_count})")]
    ShardOutOfRange {
        index: u32,
        shard: u32,
        shard_count: u32,
    },
    #[error("message {index}: shard {shard} does not live on core {core} of {cores}")]
    ShardNotOnCore {
        index: u32,
        shard: u32,
        core: u32,
        cores: u32,
    },
    #[error("malformed handshake: {0}")]
    BadHandshake(&'static str),
}

/// What a decoder accepts, beyond the format's own constants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Shards of the chain: a message for shard `>= shard_count` is refused.
    pub shard_count: u32,
    /// This link's core and the node's core count: shard `s` must satisfy `s % cores == core`
    /// (shard `s` runs on core `s mod cores` on every validator). `cores == 0` turns the check
    /// off (sans-I/O tools and tests that are not bound to a core).
    pub core: u32,
    pub cores: u32,
    /// Largest accepted frame, header included (at most [`FRAME_BYTES_MAX`]).
    pub frame_bytes_max: usize,
    /// Largest accepted message count per data frame (at most [`MESSAGES_PER_FRAME_MAX`]).
    pub messages_max: u32,
}

impl Limits {
    /// The format's maxima, shards `0..shard_count`, no core check.
    pub fn new(shard_count: u32) -> Limits {
        Limits {
            shard_count,
            core: 0,
            cores: 0,
            frame_bytes_max: FRAME_BYTES_MAX,
            messages_max: MESSAGES_PER_FRAME_MAX,
        }
    }

    fn payload_bytes_max(&self) -> usize {
        self.frame_bytes_max
            .clamp(HEADER_BYTES, FRAME_BYTES_MAX)
            .saturating_sub(HEADER_BYTES)
    }

    fn messages_max(&self) -> u32 {
        self.messages_max.min(MESSAGES_PER_FRAME_MAX)
    }

    /// Whether a message for `shard` may travel under these limits (`Err` names why not).
    pub fn check_shard(&self, index: u32, shard: u32) -> Result<(), FrameError> {
        if shard >= self.shard_count {
            return Err(FrameError::ShardOutOfRange {
                index,
                shard,
                shard_count: self.shard_count,
            });
        }
        if self.cores != 0 && shard % self.cores != self.core {
            return Err(FrameError::ShardNotOnCore {
                index,
                shard,
                core: self.core,
                cores: self.cores,
            });
        }
        Ok(())
    }
}

/// Who is at the other end of a link, as it says in its first frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handshake {
    /// The chain (genesis) the sender runs: a link between different chains is refused.
    pub chain_id: Vec<u8>,
    pub node_id: u64,
    /// The sender's core for this link (links are core-to-core: it must equal the receiver's).
    pub core: u32,
    /// The sender's core count and shard count: shard placement must agree on both sides.
    pub cores: u32,
    pub shard_count: u32,
}

/// One message of a data frame, borrowed from the frame's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    pub shard: u32,
    pub payload: &'a [u8],
}

/// A decoded, fully validated data frame, borrowed from the decoder's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataFrame<'a> {
    count: u32,
    /// The messages, after the count prefix.
    body: &'a [u8],
}

impl<'a> DataFrame<'a> {
    /// Messages in the frame.
    pub fn len(&self) -> u32 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The encoded messages (after the count), to copy out in one piece; iterate them again
    /// with [`Messages::new`].
    pub fn body(&self) -> &'a [u8] {
        self.body
    }

    pub fn iter(&self) -> Messages<'a> {
        Messages::new(self.count, self.body)
    }
}

/// Iterates the messages of an encoded data body. On a validated body it yields exactly
/// `count` messages; on anything else it stops at the first inconsistency (it never panics).
#[derive(Clone, Debug)]
pub struct Messages<'a> {
    remaining: u32,
    rest: &'a [u8],
}

impl<'a> Messages<'a> {
    pub fn new(count: u32, body: &'a [u8]) -> Messages<'a> {
        Messages {
            remaining: count,
            rest: body,
        }
    }
}

impl<'a> Iterator for Messages<'a> {
    type Item = Message<'a>;

    fn next(&mut self) -> Option<Message<'a>> {
        if self.remaining == 0 {
            return None;
        }
        let shard = read_u32(self.rest, 0)?;
        let length = read_u32(self.rest, 4)? as usize;
        let end = MESSAGE_HEADER_BYTES.checked_add(length)?;
        let payload = self.rest.get(MESSAGE_HEADER_BYTES..end)?;
        self.rest = self.rest.get(end..)?;
        self.remaining -= 1;
        Some(Message { shard, payload })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.remaining as usize))
    }
}

/// A decoded frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    Handshake(Handshake),
    Data(DataFrame<'a>),
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    let b = bytes.get(at..at.checked_add(8)?)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    Some(u64::from_le_bytes(a))
}

/// A frame's checksum: CRC-32C (Castagnoli) of its first 12 header bytes, then its payload.
pub fn frame_checksum(header_head: &[u8], payload: &[u8]) -> u32 {
    let mut digest = crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc32Iscsi);
    digest.update(header_head);
    digest.update(payload);
    digest.finalize() as u32
}

fn write_header(frame: &mut [u8], kind: FrameKind) {
    debug_assert!(frame.len() >= HEADER_BYTES && frame.len() <= FRAME_BYTES_MAX);
    let payload_bytes = (frame.len() - HEADER_BYTES) as u32;
    frame[0..4].copy_from_slice(&MAGIC);
    frame[4] = VERSION;
    frame[5] = kind as u8;
    frame[6..8].copy_from_slice(&0u16.to_le_bytes());
    frame[8..12].copy_from_slice(&payload_bytes.to_le_bytes());
    let crc = frame_checksum(&frame[0..12], &frame[HEADER_BYTES..]);
    frame[12..16].copy_from_slice(&crc.to_le_bytes());
}

/// Why a message could not be added to a [`DataFrameEncoder`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum PushError {
    /// The frame has no room left (bytes or message count): send it, then push again.
    #[error("frame full")]
    Full,
    /// The message can never fit in a frame of this encoder's size.
    #[error("message of {length_bytes} bytes exceeds the largest frame ({message_bytes_max})")]
    TooLarge {
        length_bytes: usize,
        message_bytes_max: usize,
    },
}

/// Builds one data frame in a reusable buffer: messages are appended in place (no allocation
/// once the buffer has grown to its working size), then [`finish`](Self::finish) writes the
/// header and checksum and lends out the frame's bytes.
#[derive(Debug)]
pub struct DataFrameEncoder {
    buf: Vec<u8>,
    count: u32,
    frame_bytes_max: usize,
    messages_max: u32,
    finished: bool,
}

impl DataFrameEncoder {
    /// An encoder whose frames hold at most `frame_bytes_max` bytes (clamped to the format's
    /// range) and `messages_max` messages (clamped to `1..=MESSAGES_PER_FRAME_MAX`).
    pub fn new(frame_bytes_max: usize, messages_max: u32) -> DataFrameEncoder {
        let frame_bytes_max = frame_bytes_max.clamp(
            HEADER_BYTES + DATA_PREFIX_BYTES + MESSAGE_HEADER_BYTES,
            FRAME_BYTES_MAX,
        );
        DataFrameEncoder {
            buf: vec![0; HEADER_BYTES + DATA_PREFIX_BYTES],
            count: 0,
            frame_bytes_max,
            messages_max: messages_max.clamp(1, MESSAGES_PER_FRAME_MAX),
            finished: false,
        }
    }

    /// Messages in the frame so far.
    pub fn len(&self) -> u32 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes of the frame so far (header included).
    pub fn frame_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Largest message payload this encoder can ever take.
    pub fn message_bytes_max(&self) -> usize {
        self.frame_bytes_max - HEADER_BYTES - DATA_PREFIX_BYTES - MESSAGE_HEADER_BYTES
    }

    /// Appends one message. The shard is not checked here (the sender knows its limits; the
    /// receiver's decoder checks them again).
    pub fn push(&mut self, shard: u32, payload: &[u8]) -> Result<(), PushError> {
        if payload.len() > self.message_bytes_max() {
            return Err(PushError::TooLarge {
                length_bytes: payload.len(),
                message_bytes_max: self.message_bytes_max(),
            });
        }
        if self.count >= self.messages_max
            || self.buf.len() + MESSAGE_HEADER_BYTES + payload.len() > self.frame_bytes_max
        {
            return Err(PushError::Full);
        }
        if self.finished {
            // Appending after `finish` reopens the frame; the header is rewritten next time.
            self.finished = false;
        }
        self.buf.extend_from_slice(&shard.to_le_bytes());
        self.buf
            .extend_from_slice(&(payload.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(payload);
        self.count += 1;
        Ok(())
    }

    /// Writes the count, header and checksum, and returns the whole frame.
    pub fn finish(&mut self) -> &[u8] {
        if !self.finished {
            self.buf[HEADER_BYTES..HEADER_BYTES + DATA_PREFIX_BYTES]
                .copy_from_slice(&self.count.to_le_bytes());
            write_header(&mut self.buf, FrameKind::Data);
            self.finished = true;
        }
        &self.buf
    }

    /// Empties the frame, keeping the buffer's capacity.
    pub fn clear(&mut self) {
        self.buf.truncate(HEADER_BYTES + DATA_PREFIX_BYTES);
        self.count = 0;
        self.finished = false;
    }
}

/// Appends a handshake frame to `out`. Refuses chain ids that are empty or longer than
/// [`CHAIN_ID_BYTES_MAX`], and placements the decoder would refuse.
pub fn encode_handshake(handshake: &Handshake, out: &mut Vec<u8>) -> Result<(), FrameError> {
    validate_handshake(handshake)?;
    let start = out.len();
    out.resize(start + HEADER_BYTES, 0);
    out.push(handshake.chain_id.len() as u8);
    out.extend_from_slice(&handshake.chain_id);
    out.extend_from_slice(&handshake.node_id.to_le_bytes());
    out.extend_from_slice(&handshake.core.to_le_bytes());
    out.extend_from_slice(&handshake.cores.to_le_bytes());
    out.extend_from_slice(&handshake.shard_count.to_le_bytes());
    write_header(&mut out[start..], FrameKind::Handshake);
    Ok(())
}

fn validate_handshake(h: &Handshake) -> Result<(), FrameError> {
    if h.chain_id.is_empty() || h.chain_id.len() > CHAIN_ID_BYTES_MAX {
        return Err(FrameError::BadHandshake("chain id must be 1 to 64 bytes"));
    }
    if h.cores == 0 || h.core >= h.cores {
        return Err(FrameError::BadHandshake("core out of range"));
    }
    if h.shard_count == 0 {
        return Err(FrameError::BadHandshake("zero shards"));
    }
    Ok(())
}

fn decode_handshake(payload: &[u8]) -> Result<Handshake, FrameError> {
    let chain_bytes = *payload
        .first()
        .ok_or(FrameError::BadHandshake("empty payload"))? as usize;
    if payload.len() != 1 + chain_bytes + HANDSHAKE_FIXED_BYTES {
        return Err(FrameError::BadHandshake(
            "length does not match its chain id",
        ));
    }
    let fixed = 1 + chain_bytes;
    let bad = FrameError::BadHandshake("truncated");
    let handshake = Handshake {
        chain_id: payload.get(1..fixed).ok_or(bad.clone())?.to_vec(),
        node_id: read_u64(payload, fixed).ok_or(bad.clone())?,
        core: read_u32(payload, fixed + 8).ok_or(bad.clone())?,
        cores: read_u32(payload, fixed + 12).ok_or(bad.clone())?,
        shard_count: read_u32(payload, fixed + 16).ok_or(bad)?,
    };
    validate_handshake(&handshake)?;
    Ok(handshake)
}

fn decode_data<'a>(payload: &'a [u8], limits: &Limits) -> Result<DataFrame<'a>, FrameError> {
    let count = read_u32(payload, 0).ok_or(FrameError::DataTooShort {
        payload_bytes: payload.len(),
    })?;
    if count > limits.messages_max() {
        return Err(FrameError::TooManyMessages {
            count,
            count_max: limits.messages_max(),
        });
    }
    let body = &payload[DATA_PREFIX_BYTES..];
    // One walk validates every message, so that the receiver's iteration cannot fail later.
    let mut rest = body;
    for index in 0..count {
        let (Some(shard), Some(length)) = (read_u32(rest, 0), read_u32(rest, 4)) else {
            return Err(FrameError::MessageHeaderOverrun {
                index,
                remaining_bytes: rest.len(),
            });
        };
        limits.check_shard(index, shard)?;
        let length = length as usize;
        let remaining_bytes = rest.len() - MESSAGE_HEADER_BYTES;
        if length > remaining_bytes {
            return Err(FrameError::MessageOverrun {
                index,
                length_bytes: length,
                remaining_bytes,
            });
        }
        rest = &rest[MESSAGE_HEADER_BYTES + length..];
    }
    if !rest.is_empty() {
        return Err(FrameError::TrailingBytes {
            trailing_bytes: rest.len(),
        });
    }
    Ok(DataFrame { count, body })
}

/// The header of a frame whose first bytes are in `buf`: `Ok(None)` while fewer than
/// [`HEADER_BYTES`] are there (after checking the magic bytes that are), else the kind and the
/// total frame length, checked against `limits`.
fn decode_header(buf: &[u8], limits: &Limits) -> Result<Option<(FrameKind, usize)>, FrameError> {
    let seen = buf.len().min(MAGIC.len());
    if buf[..seen] != MAGIC[..seen] {
        let mut found = [0u8; 4];
        found[..seen].copy_from_slice(&buf[..seen]);
        return Err(FrameError::BadMagic { found });
    }
    if buf.len() < HEADER_BYTES {
        return Ok(None);
    }
    if buf[4] != VERSION {
        return Err(FrameError::UnsupportedVersion(buf[4]));
    }
    let kind = FrameKind::from_u8(buf[5]).ok_or(FrameError::UnknownKind(buf[5]))?;
    let flags = u16::from_le_bytes([buf[6], buf[7]]);
    if flags != 0 {
        return Err(FrameError::UnknownFlags(flags));
    }
    let payload_bytes = read_u32(buf, 8).unwrap_or(u32::MAX) as usize;
    let payload_bytes_max = match kind {
        FrameKind::Handshake => HANDSHAKE_PAYLOAD_BYTES_MAX,
        FrameKind::Data => limits.payload_bytes_max(),
    };
    if payload_bytes > payload_bytes_max {
        return Err(FrameError::FrameTooLarge {
            payload_bytes,
            payload_bytes_max,
        });
    }
    Ok(Some((kind, HEADER_BYTES + payload_bytes)))
}

/// Decodes the frame at the start of `buf`: `Ok(None)` when more bytes are needed,
/// `Ok(Some((frame, frame_bytes)))` when a whole valid frame is there, `Err` as soon as the
/// bytes cannot be a valid frame. Never panics, never allocates for data frames.
pub fn decode_frame<'a>(
    buf: &'a [u8],
    limits: &Limits,
) -> Result<Option<(Frame<'a>, usize)>, FrameError> {
    let Some((kind, frame_bytes)) = decode_header(buf, limits)? else {
        return Ok(None);
    };
    let Some(frame) = buf.get(..frame_bytes) else {
        return Ok(None);
    };
    let expected = read_u32(frame, 12).unwrap_or(0);
    let payload = &frame[HEADER_BYTES..];
    let computed = frame_checksum(&frame[0..12], payload);
    if expected != computed {
        return Err(FrameError::ChecksumMismatch { expected, computed });
    }
    let frame = match kind {
        FrameKind::Handshake => Frame::Handshake(decode_handshake(payload)?),
        FrameKind::Data => Frame::Data(decode_data(payload, limits)?),
    };
    Ok(Some((frame, frame_bytes)))
}

/// Smallest read buffer a [`FrameDecoder`] keeps, and the least spare room it offers a read.
const READ_SPARE_BYTES_MIN: usize = 4096;

/// Decodes a byte stream into frames over one growing buffer.
///
/// The I/O edge reads straight into [`read_buf`](Self::read_buf) and calls
/// [`advance`](Self::advance); sans-I/O users call [`feed`](Self::feed). Either way
/// [`next_frame`](Self::next_frame) is called until it returns `Ok(None)` before reading again.
/// The buffer never grows beyond `max(initial size, limits.frame_bytes_max)` through
/// `read_buf`: a declared length above the limit is refused from the header alone. After an
/// `Err` the stream is out of sync for good: the caller closes the link.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    /// Bytes `start..end` of `buf` are received and not yet decoded.
    start: usize,
    end: usize,
    limits: Limits,
}

impl FrameDecoder {
    pub fn new(limits: Limits, initial_bytes: usize) -> FrameDecoder {
        FrameDecoder {
            buf: vec![0; initial_bytes.max(READ_SPARE_BYTES_MIN)],
            start: 0,
            end: 0,
            limits,
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Changes what is accepted from the next frame on (a link widens its limits once the
    /// peer has identified itself).
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Received bytes not yet decoded.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// Size of the buffer (its high-water mark).
    pub fn buffer_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Room to read into. It holds at least the rest of the frame being received when its
    /// header is known (so a frame is never read in more pieces than the socket delivers), and
    /// at least `READ_SPARE_BYTES_MIN` bytes otherwise. Empty only if the caller left complete
    /// frames undecoded.
    pub fn read_buf(&mut self) -> &mut [u8] {
        let frame_bytes = match decode_header(&self.buf[self.start..self.end], &self.limits) {
            Ok(Some((_, n))) => n,
            // Errors surface in `next_frame`; until the header is known, ask for a chunk.
            _ => 0,
        };
        let want = frame_bytes.max(HEADER_BYTES);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.start + want > self.buf.len()
            || self.buf.len() - self.end < READ_SPARE_BYTES_MIN
        {
            // Move the partial frame to the front rather than growing: the buffer stays at the
            // size of the largest frame seen.
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.buf.len() < want {
            self.buf.resize(want, 0);
        }
        &mut self.buf[self.end..]
    }

    /// Records that `n` bytes were read into [`read_buf`](Self::read_buf).
    pub fn advance(&mut self, n: usize) {
        assert!(n <= self.buf.len() - self.end, "advance beyond read_buf");
        self.end += n;
    }

    /// Appends bytes from elsewhere (sans-I/O use). Unlike `read_buf` it grows the buffer as
    /// needed: bounding what is fed is the caller's job.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let spare = self.read_buf();
            if spare.is_empty() {
                let grown = self.buf.len() + bytes.len();
                self.buf.resize(grown, 0);
                continue;
            }
            let n = spare.len().min(bytes.len());
            spare[..n].copy_from_slice(&bytes[..n]);
            self.advance(n);
            bytes = &bytes[n..];
        }
    }

    /// The next complete frame, `Ok(None)` when more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, FrameError> {
        let (start, end) = (self.start, self.end);
        match decode_frame(&self.buf[start..end], &self.limits)? {
            None => Ok(None),
            Some((frame, frame_bytes)) => {
                self.start += frame_bytes;
                Ok(Some(frame))
            }
        }
    }
}

#[cfg(test)]
mod tests;
