use super::*;
use crate::http::routes::tests::signed;
use crate::http::server::tests::start;
use crate::http::types::{decode_compact_results, BATCH_MEDIA_TYPE, RESULTS_MEDIA_TYPE};
use crate::http::HttpSettings;
use aurigraph_engine::batch::encode_batch;
use aurigraph_engine::ResultCode;
use std::io::{Read, Write};
use std::net::TcpStream as StdStream;
use std::time::Duration;

fn head_of(request: &str) -> Option<DirectHead> {
    direct_head(request.as_bytes())
}

const BATCH: &str = "/api/v11/transactions/batch";

#[test]
fn batch_heads_are_served_here_with_their_fields() {
    let text = "POST /api/v11/gateway/transactions/batch?wait=true HTTP/1.1\r\nHost: x\r\n\
                Authorization: Bearer abc\r\nContent-Length: 180\r\nConnection: keep-alive, close\r\n\r\nBODY";
    let head = head_of(text).expect("served here");
    assert_eq!(head.head_bytes, text.len() - 4);
    assert_eq!(head.content_length, 180);
    assert!(head.close);
    assert_eq!(head.parts.method, hyper::Method::POST);
    assert_eq!(head.parts.uri.path(), "/api/v11/gateway/transactions/batch");
    assert_eq!(head.parts.uri.query(), Some("wait=true"));
    assert_eq!(head.parts.headers["authorization"], "Bearer abc");
    let plain = head_of(&format!(
        "POST {BATCH} HTTP/1.1\r\nContent-Length: 0\r\n\r\n"
    ))
    .unwrap();
    assert_eq!((plain.content_length, plain.close), (0, false));
}

#[test]
fn every_other_head_is_hyperss() {
    let others = [
        format!("GET {BATCH} HTTP/1.1\r\nContent-Length: 5\r\n\r\n"),
        "POST /api/v11/transactions HTTP/1.1\r\nContent-Length: 5\r\n\r\n".to_string(),
        format!("POST {BATCH}x HTTP/1.1\r\nContent-Length: 5\r\n\r\n"),
        format!("POST {BATCH} HTTP/1.0\r\nContent-Length: 5\r\n\r\n"),
        // Incomplete: the rest of the head has not arrived (or is longer than the peek).
        format!("POST {BATCH} HTTP/1.1\r\nContent-Length: 5\r\n"),
        format!("POST {BATCH} HTTP/1.1\r\n\r\n"),
        format!("POST {BATCH} HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n"),
        format!("POST {BATCH} HTTP/1.1\r\nContent-Length: +5\r\n\r\n"),
        format!("POST {BATCH} HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n"),
        format!("POST {BATCH} HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
        format!("POST {BATCH} HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"),
        format!("POST {BATCH} HTTP/1.1\r\nContent-Length: 5\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\n"),
        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_string(),
    ];
    for text in others {
        assert!(head_of(&text).is_none(), "{text:?}");
    }
    let many_fields: String = (0..HEADER_FIELDS_MAX)
        .map(|i| format!("X-{i}: y\r\n"))
        .collect();
    let crowded = format!("POST {BATCH} HTTP/1.1\r\nContent-Length: 5\r\n{many_fields}\r\n");
    assert!(head_of(&crowded).is_none());
}

/// A binary batch request of `records` to `path` asking for compact results.
fn batch_request(path: &str, body: &[u8], extra: &str) -> Vec<u8> {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: {BATCH_MEDIA_TYPE}\r\n\
         Accept: {RESULTS_MEDIA_TYPE}\r\nContent-Length: {}\r\n{extra}\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

/// Reads one response (with a Content-Length body): status, head, body.
fn read_response(stream: &mut StdStream) -> (u16, String, Vec<u8>) {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).unwrap(), 1, "closed mid-head");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let status = head[9..12].parse().unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let l = l.to_ascii_lowercase();
            l.strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .expect("a content-length");
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).unwrap();
    (status, head, body)
}

fn compact(body: &[u8]) -> Vec<(u8, u64)> {
    decode_compact_results(body).unwrap()
}

/// Drains the server `start` started and waits for its executor.
fn stop(settings: &HttpSettings, handle: glommio::ExecutorJoinHandle<()>) {
    settings
        .draining
        .store(true, std::sync::atomic::Ordering::SeqCst);
    handle.join().unwrap();
}

fn settings() -> HttpSettings {
    HttpSettings::new("127.0.0.1:0".parse().unwrap())
}

/// Whether `stream` was closed by the server (reads end of stream within 5 s).
fn closed(stream: &mut StdStream) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut rest = Vec::new();
    matches!(stream.read_to_end(&mut rest), Ok(0))
}

#[test]
fn batches_are_received_here_until_a_request_is_hypers_then_hyper_serves_the_rest() {
    let (addr, settings, handle) = start(settings());
    let direct = || settings.metrics.bodies_read_direct()[0];
    let body = encode_batch(&[signed(1, 10), signed(2, 0)]);
    let expected = vec![(ResultCode::Ok as u8, 5), (ResultCode::ZeroAmount as u8, 5)];
    let mut stream = StdStream::connect(addr).unwrap();
    for n in 1..=2 {
        stream.write_all(&batch_request(BATCH, &body, "")).unwrap();
        let (status, head, answer) = read_response(&mut stream);
        assert_eq!(status, 200, "{head}");
        assert!(
            head.contains(&format!("content-type: {RESULTS_MEDIA_TYPE}")),
            "{head}"
        );
        assert!(head.contains("date: "), "{head}");
        assert_eq!(compact(&answer), expected);
        assert_eq!(direct(), n);
    }
    // Two requests in one write (pipelined): both answered, in order.
    let mut two = batch_request(BATCH, &body, "");
    two.extend_from_slice(&batch_request(BATCH, &encode_batch(&[signed(3, 0)]), ""));
    stream.write_all(&two).unwrap();
    assert_eq!(compact(&read_response(&mut stream).2), expected);
    let zero = vec![(ResultCode::ZeroAmount as u8, 5)];
    assert_eq!(compact(&read_response(&mut stream).2), zero);
    assert_eq!(direct(), 4);
    // A body that arrives in pieces, the head first: gathered as it comes (not reserved
    // before its bytes are here), one copy more, so not counted; the connection stays here.
    let request = batch_request(BATCH, &body, "");
    let (first, rest) = request.split_at(request.len() - body.len() + 7);
    stream.write_all(first).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    stream.write_all(rest).unwrap();
    assert_eq!(compact(&read_response(&mut stream).2), expected);
    assert_eq!(direct(), 4);
    stream.write_all(&batch_request(BATCH, &body, "")).unwrap();
    assert_eq!(compact(&read_response(&mut stream).2), expected);
    assert_eq!(direct(), 5);
    // A head longer than the first peek is received here too; one longer than the most is
    // hyper's (on a connection of its own).
    let long = format!("X-Padding: {}\r\n", "p".repeat(HEAD_PEEK_BYTES_FIRST));
    stream
        .write_all(&batch_request(BATCH, &body, &long))
        .unwrap();
    assert_eq!(compact(&read_response(&mut stream).2), expected);
    assert_eq!(direct(), 6);
    let mut longest = StdStream::connect(addr).unwrap();
    let longer = format!("X-Padding: {}\r\n", "p".repeat(HEAD_PEEK_BYTES_MAX));
    longest
        .write_all(&batch_request(BATCH, &body, &longer))
        .unwrap();
    assert_eq!(compact(&read_response(&mut longest).2), expected);
    assert_eq!(direct(), 6);
    // Another request: hyper's, and so is the connection from now on, batches included.
    write!(stream, "GET /api/v11/health HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut stream).0, 200);
    stream.write_all(&batch_request(BATCH, &body, "")).unwrap();
    let (status, head, answer) = read_response(&mut stream);
    assert_eq!(status, 200, "{head}");
    assert_eq!(compact(&answer), expected);
    assert_eq!(direct(), 6, "served by hyper");
    // A head that arrives in two writes is hyper's as well.
    let mut split = StdStream::connect(addr).unwrap();
    let request = batch_request(BATCH, &body, "");
    split.write_all(&request[..20]).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    split.write_all(&request[20..]).unwrap();
    assert_eq!(compact(&read_response(&mut split).2), expected);
    assert_eq!(direct(), 6);
    stop(&settings, handle);
}

#[test]
fn errors_limits_and_closing_are_as_through_hyper() {
    let mut settings = settings();
    settings.body_bytes_max = 1000;
    settings.body_deadline = crate::http::limits::BodyDeadline {
        grace: Duration::from_millis(300),
        rate_bytes_per_s_min: 1000,
    };
    let (addr, settings, handle) = start(settings);
    let direct = || settings.metrics.bodies_read_direct()[0];
    let body = encode_batch(&[signed(1, 10)]);
    // The gateway endpoint without a token: 401, answered here (the body was read).
    let mut stream = StdStream::connect(addr).unwrap();
    let gateway = "/api/v11/gateway/transactions/batch";
    stream
        .write_all(&batch_request(gateway, &body, ""))
        .unwrap();
    let (status, _, answer) = read_response(&mut stream);
    assert_eq!(status, 401, "{}", String::from_utf8_lossy(&answer));
    assert!(String::from_utf8_lossy(&answer).contains("\"error\""));
    assert_eq!(direct(), 1);
    // Not a batch: 400 INVALID_BATCH, and the connection goes on.
    stream
        .write_all(&batch_request(BATCH, b"not a batch", ""))
        .unwrap();
    let (status, _, answer) = read_response(&mut stream);
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&answer).contains("INVALID_BATCH"));
    assert_eq!(direct(), 2);
    // Over body_bytes_max: 413 from hyper's route (the body is not received here).
    let big = vec![0u8; 2000];
    stream.write_all(&batch_request(BATCH, &big, "")).unwrap();
    assert_eq!(read_response(&mut stream).0, 413);
    assert_eq!(direct(), 2);
    // Connection: close: answered, then closed.
    let mut once = StdStream::connect(addr).unwrap();
    once.write_all(&batch_request(BATCH, &body, "Connection: close\r\n"))
        .unwrap();
    let (status, head, _) = read_response(&mut once);
    assert_eq!(status, 200, "{head}");
    assert!(closed(&mut once));
    assert_eq!(direct(), 3);
    // A body that stops coming: 408 REQUEST_TIMEOUT, and the connection closes.
    let mut slow = StdStream::connect(addr).unwrap();
    let request = batch_request(BATCH, &body, "");
    slow.write_all(&request[..request.len() - 10]).unwrap();
    let (status, head, answer) = read_response(&mut slow);
    assert_eq!(status, 408, "{head}");
    assert!(String::from_utf8_lossy(&answer).contains("REQUEST_TIMEOUT"));
    assert!(
        head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );
    assert!(closed(&mut slow));
    assert_eq!(direct(), 3, "gathered, not received whole");
    // A client that goes away mid-body loses nothing of anyone else's; the core's body memory
    // is free again.
    let mut gone = StdStream::connect(addr).unwrap();
    gone.write_all(&request[..request.len() - 10]).unwrap();
    drop(gone);
    std::thread::sleep(Duration::from_millis(100));
    let mut after = StdStream::connect(addr).unwrap();
    after.write_all(&batch_request(BATCH, &body, "")).unwrap();
    assert_eq!(read_response(&mut after).0, 200);
    stop(&settings, handle);
}

#[test]
fn a_body_that_has_not_arrived_holds_none_of_the_cores_body_budget() {
    let mut settings = settings();
    settings.body_bytes_budget_per_core = 100_000;
    let (addr, settings, handle) = start(settings);
    // Declares 99,900 bytes and sends none of them.
    let mut idle = StdStream::connect(addr).unwrap();
    let head = format!(
        "POST {BATCH} HTTP/1.1\r\nHost: t\r\nContent-Type: {BATCH_MEDIA_TYPE}\r\n\
         Content-Length: 99900\r\n\r\n"
    );
    idle.write_all(head.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    // Another batch still fits the budget and is received whole.
    let body = encode_batch(&[signed(1, 10), signed(2, 0)]);
    let mut stream = StdStream::connect(addr).unwrap();
    stream.write_all(&batch_request(BATCH, &body, "")).unwrap();
    assert_eq!(read_response(&mut stream).0, 200);
    assert_eq!(settings.metrics.bodies_read_direct()[0], 1);
    drop(idle);
    stop(&settings, handle);
}

#[test]
fn batches_count_in_their_clients_request_rate() {
    let mut settings = settings();
    settings.request_rate_per_ip = Some(crate::http::limits::RequestRate {
        per_s: 0.5,
        burst: 2.0,
    });
    let (addr, settings, handle) = start(settings);
    let body = encode_batch(&[signed(1, 10)]);
    let mut stream = StdStream::connect(addr).unwrap();
    for _ in 0..2 {
        stream.write_all(&batch_request(BATCH, &body, "")).unwrap();
        assert_eq!(read_response(&mut stream).0, 200);
    }
    assert_eq!(settings.metrics.bodies_read_direct()[0], 2);
    // The third is over the rate: hyper's to answer, 429 with Retry-After.
    stream.write_all(&batch_request(BATCH, &body, "")).unwrap();
    let (status, head, answer) = read_response(&mut stream);
    assert_eq!(status, 429, "{}", String::from_utf8_lossy(&answer));
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 2"),
        "{head}"
    );
    assert_eq!(settings.metrics.bodies_read_direct()[0], 2);
    stop(&settings, handle);
}

#[test]
fn acknowledging_now_works_on_tcp_sockets_only() {
    use std::os::fd::AsRawFd;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let client = StdStream::connect(listener.local_addr().expect("address")).expect("connect");
    let (accepted, _) = listener.accept().expect("accept");
    acknowledge_now(accepted.as_raw_fd()).expect("TCP_QUICKACK on an accepted connection");
    acknowledge_now(client.as_raw_fd()).expect("TCP_QUICKACK on a connecting one");
    let file = tempfile::tempfile().expect("a file");
    assert!(
        acknowledge_now(file.as_raw_fd()).is_err(),
        "a file is not a socket"
    );
}
