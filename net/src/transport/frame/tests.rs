use super::*;
use proptest::prelude::*;

fn limits() -> Limits {
    Limits::new(16)
}

fn encode(messages: &[(u32, Vec<u8>)]) -> Vec<u8> {
    let mut e = DataFrameEncoder::new(FRAME_BYTES_MAX, MESSAGES_PER_FRAME_MAX);
    for (shard, payload) in messages {
        e.push(*shard, payload).unwrap();
    }
    e.finish().to_vec()
}

fn handshake() -> Handshake {
    Handshake {
        chain_id: b"aurigraph-test".to_vec(),
        node_id: 7,
        core: 1,
        cores: 2,
        shard_count: 16,
    }
}

/// Owned form of a decoded frame, for comparisons.
#[derive(Debug, PartialEq, Eq)]
enum Owned {
    Handshake(Handshake),
    Data(Vec<(u32, Vec<u8>)>),
}

fn own(frame: Frame<'_>) -> Owned {
    match frame {
        Frame::Handshake(h) => Owned::Handshake(h),
        Frame::Data(d) => Owned::Data(d.iter().map(|m| (m.shard, m.payload.to_vec())).collect()),
    }
}

fn decode_all(decoder: &mut FrameDecoder) -> Result<Vec<Owned>, FrameError> {
    let mut out = Vec::new();
    while let Some(frame) = decoder.next_frame()? {
        out.push(own(frame));
    }
    Ok(out)
}

#[test]
fn round_trip_data_and_handshake() {
    let messages = vec![(3, b"hello".to_vec()), (0, Vec::new()), (15, vec![9; 1000])];
    let bytes = encode(&messages);
    let (frame, n) = decode_frame(&bytes, &limits()).unwrap().unwrap();
    assert_eq!(n, bytes.len());
    assert_eq!(own(frame), Owned::Data(messages));

    let mut hs = Vec::new();
    encode_handshake(&handshake(), &mut hs).unwrap();
    let (frame, n) = decode_frame(&hs, &limits()).unwrap().unwrap();
    assert_eq!(n, hs.len());
    assert_eq!(own(frame), Owned::Handshake(handshake()));
}

#[test]
fn empty_data_frame_is_valid() {
    let bytes = encode(&[]);
    assert_eq!(bytes.len(), HEADER_BYTES + DATA_PREFIX_BYTES);
    let (frame, _) = decode_frame(&bytes, &limits()).unwrap().unwrap();
    assert_eq!(own(frame), Owned::Data(vec![]));
}

#[test]
fn encoder_reports_full_and_too_large() {
    let mut e = DataFrameEncoder::new(HEADER_BYTES + DATA_PREFIX_BYTES + 2 * (8 + 10), 3);
    e.push(0, &[1; 10]).unwrap();
    e.push(0, &[1; 10]).unwrap();
    assert_eq!(e.push(0, &[1; 1]), Err(PushError::Full));
    assert!(matches!(
        e.push(0, &[1; 1000]),
        Err(PushError::TooLarge { .. })
    ));
    e.clear();
    let mut e = DataFrameEncoder::new(FRAME_BYTES_MAX, 2);
    e.push(0, b"a").unwrap();
    e.push(0, b"b").unwrap();
    assert_eq!(e.push(0, b"c"), Err(PushError::Full));
    // A finished frame reopened by a push is re-finished correctly.
    let mut e = DataFrameEncoder::new(FRAME_BYTES_MAX, 8);
    e.push(1, b"x").unwrap();
    let _ = e.finish();
    e.push(2, b"y").unwrap();
    let bytes = e.finish().to_vec();
    let (frame, _) = decode_frame(&bytes, &limits()).unwrap().unwrap();
    assert_eq!(
        own(frame),
        Owned::Data(vec![(1, b"x".to_vec()), (2, b"y".to_vec())])
    );
}

#[test]
fn precise_errors() {
    let good = encode(&[(1, b"abc".to_vec())]);
    let l = limits();

    let mut b = good.clone();
    b[0] = b'X';
    assert!(matches!(
        decode_frame(&b, &l),
        Err(FrameError::BadMagic { .. })
    ));
    // Bad magic is refused from the first byte, before a header is complete.
    assert!(matches!(
        decode_frame(b"Z", &l),
        Err(FrameError::BadMagic { .. })
    ));
    assert_eq!(decode_frame(b"AG", &l), Ok(None));

    let mut b = good.clone();
    b[4] = 2;
    assert_eq!(decode_frame(&b, &l), Err(FrameError::UnsupportedVersion(2)));
    let mut b = good.clone();
    b[5] = 9;
    assert_eq!(decode_frame(&b, &l), Err(FrameError::UnknownKind(9)));
    let mut b = good.clone();
    b[6] = 1;
    assert_eq!(decode_frame(&b, &l), Err(FrameError::UnknownFlags(1)));

    // An oversize length is refused from the header alone.
    let mut b = good[..HEADER_BYTES].to_vec();
    b[8..12].copy_from_slice(&(u32::MAX).to_le_bytes());
    assert!(matches!(
        decode_frame(&b, &l),
        Err(FrameError::FrameTooLarge { .. })
    ));
    let small = Limits {
        frame_bytes_max: 64,
        ..l
    };
    let big = encode(&[(1, vec![0; 100])]);
    assert!(matches!(
        decode_frame(&big[..HEADER_BYTES], &small),
        Err(FrameError::FrameTooLarge { .. })
    ));

    let mut b = good.clone();
    *b.last_mut().unwrap() ^= 1;
    assert!(matches!(
        decode_frame(&b, &l),
        Err(FrameError::ChecksumMismatch { .. })
    ));

    // Shard out of range / not on this core.
    let b = encode(&[(16, b"x".to_vec())]);
    assert_eq!(
        decode_frame(&b, &l),
        Err(FrameError::ShardOutOfRange {
            index: 0,
            shard: 16,
            shard_count: 16
        })
    );
    let on_core = Limits {
        core: 1,
        cores: 2,
        ..l
    };
    let b = encode(&[(3, b"x".to_vec()), (4, b"y".to_vec())]);
    assert_eq!(
        decode_frame(&b, &on_core),
        Err(FrameError::ShardNotOnCore {
            index: 1,
            shard: 4,
            core: 1,
            cores: 2
        })
    );
}

/// Builds a data frame from raw payload bytes with a valid header and checksum, so that the
/// payload checks themselves are reached.
fn raw_data_frame(payload: &[u8]) -> Vec<u8> {
    let mut b = vec![0; HEADER_BYTES];
    b.extend_from_slice(payload);
    write_header(&mut b, FrameKind::Data);
    b
}

#[test]
fn payload_structure_errors() {
    let l = limits();
    assert!(matches!(
        decode_frame(&raw_data_frame(&[1, 0]), &l),
        Err(FrameError::DataTooShort { .. })
    ));
    let mut p = 5000u32.to_le_bytes().to_vec();
    p.extend_from_slice(&[0; 8]);
    assert!(matches!(
        decode_frame(&raw_data_frame(&p), &l),
        Err(FrameError::TooManyMessages { .. })
    ));
    // Count 2, one message present.
    let mut p = 2u32.to_le_bytes().to_vec();
    p.extend_from_slice(&1u32.to_le_bytes());
    p.extend_from_slice(&1u32.to_le_bytes());
    p.push(0xAA);
    assert_eq!(
        decode_frame(&raw_data_frame(&p), &l),
        Err(FrameError::MessageHeaderOverrun {
            index: 1,
            remaining_bytes: 0
        })
    );
    // Length overruns the frame.
    let mut p = 1u32.to_le_bytes().to_vec();
    p.extend_from_slice(&1u32.to_le_bytes());
    p.extend_from_slice(&u32::MAX.to_le_bytes());
    p.push(0xAA);
    assert!(matches!(
        decode_frame(&raw_data_frame(&p), &l),
        Err(FrameError::MessageOverrun { index: 0, .. })
    ));
    // Trailing bytes.
    let mut p = 1u32.to_le_bytes().to_vec();
    p.extend_from_slice(&1u32.to_le_bytes());
    p.extend_from_slice(&0u32.to_le_bytes());
    p.push(0xAA);
    assert_eq!(
        decode_frame(&raw_data_frame(&p), &l),
        Err(FrameError::TrailingBytes { trailing_bytes: 1 })
    );
}

#[test]
fn handshake_errors() {
    let l = limits();
    let mut bad = handshake();
    bad.chain_id = vec![1; CHAIN_ID_BYTES_MAX + 1];
    assert!(encode_handshake(&bad, &mut Vec::new()).is_err());
    bad.chain_id = Vec::new();
    assert!(encode_handshake(&bad, &mut Vec::new()).is_err());
    let mut bad = handshake();
    bad.core = 2;
    assert!(encode_handshake(&bad, &mut Vec::new()).is_err());

    // A handshake whose chain id length disagrees with its payload length.
    let mut hs = Vec::new();
    encode_handshake(&handshake(), &mut hs).unwrap();
    hs[HEADER_BYTES] += 1;
    write_header(&mut hs, FrameKind::Handshake);
    assert!(matches!(
        decode_frame(&hs, &l),
        Err(FrameError::BadHandshake(_))
    ));
}

#[test]
fn decoder_reads_in_place_and_stays_bounded() {
    let l = Limits {
        frame_bytes_max: 1 << 16,
        ..limits()
    };
    let frames: Vec<Vec<u8>> = (0..50u32)
        .map(|i| encode(&[(i % 16, vec![i as u8; (i as usize * 997) % 60_000])]))
        .collect();
    let stream: Vec<u8> = frames.concat();
    let mut d = FrameDecoder::new(l, 0);
    let mut at = 0;
    let mut seen = 0;
    while at < stream.len() {
        let spare = d.read_buf();
        assert!(!spare.is_empty());
        let n = spare.len().min(stream.len() - at).min(3001);
        spare[..n].copy_from_slice(&stream[at..at + n]);
        d.advance(n);
        at += n;
        seen += decode_all(&mut d).unwrap().len();
        assert!(
            d.buffer_bytes() <= 1 << 16,
            "buffer grew to {}",
            d.buffer_bytes()
        );
    }
    assert_eq!(seen, 50);
    assert_eq!(d.buffered(), 0);
}

#[test]
fn handshake_only_limits_refuse_big_frames_from_the_header() {
    let l = Limits {
        frame_bytes_max: HANDSHAKE_FRAME_BYTES_MAX,
        ..limits()
    };
    let mut d = FrameDecoder::new(l, 0);
    let big = encode(&[(1, vec![0; 1000])]);
    d.feed(&big[..HEADER_BYTES]);
    assert!(matches!(
        d.next_frame(),
        Err(FrameError::FrameTooLarge { .. })
    ));
    assert!(d.buffer_bytes() <= READ_SPARE_BYTES_MIN);
    // Widened after the handshake, the same frame is fine.
    let mut d = FrameDecoder::new(l, 0);
    let mut hs = Vec::new();
    encode_handshake(&handshake(), &mut hs).unwrap();
    d.feed(&hs);
    assert!(matches!(d.next_frame(), Ok(Some(Frame::Handshake(_)))));
    d.set_limits(limits());
    d.feed(&big);
    assert!(matches!(d.next_frame(), Ok(Some(Frame::Data(_)))));
}

fn batch() -> impl Strategy<Value = Vec<(u32, Vec<u8>)>> {
    prop::collection::vec(
        (0u32..16, prop::collection::vec(any::<u8>(), 0..300)),
        0..40,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = decode_frame(&bytes, &limits());
        // The same bytes behind a valid magic reach the deeper checks.
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&bytes);
        let _ = decode_frame(&b, &limits());
        let mut d = FrameDecoder::new(limits(), 0);
        d.feed(&b);
        let _ = decode_all(&mut d);
    }

    #[test]
    fn random_payload_behind_valid_header_never_panics(
        payload in prop::collection::vec(any::<u8>(), 0..512),
        kind in 0u8..4,
    ) {
        let mut b = vec![0; HEADER_BYTES];
        b.extend_from_slice(&payload);
        write_header(&mut b, FrameKind::Data);
        b[5] = kind;
        // Recompute the checksum with the chosen kind so the payload parsers are reached.
        let crc = frame_checksum(&b[0..12], &b[HEADER_BYTES..]);
        b[12..16].copy_from_slice(&crc.to_le_bytes());
        let _ = decode_frame(&b, &limits());
    }

    #[test]
    fn single_byte_mutations_are_detected(
        messages in batch(),
        at in any::<prop::sample::Index>(),
        xor in 1u8..=255,
    ) {
        let mut b = encode(&messages);
        let i = at.index(b.len());
        b[i] ^= xor;
        // CRC32C catches every single-byte error; a corrupted length may also just ask for
        // more bytes. What must never happen: a panic, or a frame accepted.
        let r = decode_frame(&b, &limits());
        prop_assert!(!matches!(r, Ok(Some(_))), "mutation at {} accepted", i);
    }

    #[test]
    fn round_trip(batches in prop::collection::vec(batch(), 1..5)) {
        let stream: Vec<u8> = batches.iter().map(|m| encode(m)).collect::<Vec<_>>().concat();
        let mut d = FrameDecoder::new(limits(), 0);
        d.feed(&stream);
        let got = decode_all(&mut d).unwrap();
        let want: Vec<Owned> = batches.into_iter().map(Owned::Data).collect();
        prop_assert_eq!(got, want);
        prop_assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn every_split_decodes_identically(
        // Smaller batches than elsewhere: every split point is decoded (quadratic).
        messages in prop::collection::vec(
            (0u32..16, prop::collection::vec(any::<u8>(), 0..64)),
            0..12,
        ),
    ) {
        let mut stream = Vec::new();
        encode_handshake(&handshake(), &mut stream).unwrap();
        stream.extend_from_slice(&encode(&messages));
        stream.extend_from_slice(&encode(&[(2, b"tail".to_vec())]));
        let mut whole = FrameDecoder::new(limits(), 0);
        whole.feed(&stream);
        let want = decode_all(&mut whole).unwrap();
        prop_assert_eq!(want.len(), 3);
        for split in 0..=stream.len() {
            let mut d = FrameDecoder::new(limits(), 0);
            d.feed(&stream[..split]);
            let mut got = decode_all(&mut d).unwrap();
            d.feed(&stream[split..]);
            got.extend(decode_all(&mut d).unwrap());
            prop_assert_eq!(&got, &want, "split at {}", split);
        }
    }
}
