//! Archive reads through the endpoints: the checks of the input, a node without an archive,
//! and an archive that is away or silent (503 within the reader's timeout, counted). The
//! answers from a real archive are checked end to end in `tests/tests/archive_reads.rs`.

use super::*;
use aurigraph_sinks::{ArchiveReaderPool, ReaderOptions};
use std::time::{Duration, Instant};

fn history_path(address: &str, query: &str) -> String {
    format!("/api/v11/accounts/{address}/transactions{query}")
}

#[test]
fn the_history_checks_its_input_then_says_the_node_has_no_archive() {
    let c = ctx(Fake::default());
    let a = "ab".repeat(32);
    for (path, code) in [
        (history_path("zz", ""), "INVALID_ADDRESS"),
        (
            history_path(&"ab".repeat(31), "?limit=5"),
            "INVALID_ADDRESS",
        ),
        (history_path(&a, "?limit=0"), "INVALID_REQUEST"),
        (history_path(&a, "?limit=501"), "INVALID_REQUEST"),
        (history_path(&a, "?limit=abc"), "INVALID_REQUEST"),
        (history_path(&a, "?limit="), "INVALID_REQUEST"),
        (history_path(&a, "?before="), "INVALID_REQUEST"),
        (history_path(&a, "?before=1.2"), "INVALID_REQUEST"),
        (history_path(&a, "?before=x.1.2"), "INVALID_REQUEST"),
        (
            history_path(&a, "?before=9223372036854775808.0.0"),
            "INVALID_REQUEST",
        ),
    ] {
        let (status, v) = get(&c, &path);
        assert_eq!(
            (status, error_code(&v)),
            (StatusCode::BAD_REQUEST, code),
            "{path}: {v}"
        );
        assert!(!v["error"]["message"].as_str().unwrap().is_empty());
    }
    for query in ["", "?limit=1", "?limit=500&before=10.1.2", "?before=0x"] {
        let (status, v) = get(&c, &history_path(&format!("0x{a}"), query));
        if query == "?before=0x" {
            assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
            continue;
        }
        assert_eq!(
            (status, error_code(&v)),
            (StatusCode::NOT_FOUND, "NO_ARCHIVE"),
            "{query}: {v}"
        );
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("archive_url"));
    }
    // Without an archive a hash the recent window does not hold is not found, as ever.
    let (status, v) = get(&c, &format!("/api/v11/transactions/{}", "77".repeat(32)));
    assert_eq!(
        (status, error_code(&v)),
        (StatusCode::NOT_FOUND, "TRANSACTION_NOT_FOUND")
    );
}

/// Runs `requests` through [`handle`] on a glommio executor (the reads' timer is glommio's),
/// with an archive reader of `options` for `url`; the answers (status, JSON, Retry-After, time
/// taken), the `/metrics` text after them, and the reader threads (to stop).
#[allow(clippy::type_complexity)]
fn on_executor(
    url: &str,
    options: ReaderOptions,
    requests: Vec<String>,
) -> (
    Vec<(StatusCode, Value, Option<String>, Duration)>,
    String,
    ArchiveReaderPool,
) {
    let pool = ArchiveReaderPool::spawn(url, options);
    let reader = pool.reader();
    let answers = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(1 << 20)
        .spawn(move || async move {
            let mut c = ctx(Fake::default());
            c.settings.archive_reader = Some(reader);
            let mut answers = Vec::new();
            for uri in requests {
                let started = Instant::now();
                let response = handle(&c, request("GET", &uri, None, Bytes::new())).await;
                let took = started.elapsed();
                let (parts, body) = response.into_parts();
                let bytes = body.collect().await.unwrap().to_bytes();
                let retry_after = parts
                    .headers
                    .get(hyper::header::RETRY_AFTER)
                    .map(|v| v.to_str().unwrap().to_string());
                answers.push((
                    parts.status,
                    serde_json::from_slice(&bytes).unwrap(),
                    retry_after,
                    took,
                ));
            }
            let metrics = handle(&c, request("GET", "/metrics", None, Bytes::new())).await;
            let text = metrics.into_body().collect().await.unwrap().to_bytes();
            (answers, String::from_utf8(text.to_vec()).unwrap())
        })
        .unwrap()
        .join()
        .unwrap();
    (answers.0, answers.1, pool)
}

#[test]
fn an_archive_that_is_away_is_503_at_once_and_counted() {
    let a = "ab".repeat(32);
    let (answers, metrics, pool) = on_executor(
        // Nothing listens on port 1: refused at once.
        "host=127.0.0.1 port=1 user=u dbname=d",
        ReaderOptions::default(),
        vec![
            format!("/api/v11/transactions/{}", "77".repeat(32)),
            history_path(&a, "?limit=3"),
            // Recent hits never ask the archive (the fake knows this one).
            format!("/api/v11/transactions/{}", "02".repeat(32)),
        ],
    );
    pool.stop();
    for (status, v, retry_after, took) in &answers[..2] {
        assert_eq!(
            (*status, error_code(v)),
            (StatusCode::SERVICE_UNAVAILABLE, "ARCHIVE_UNAVAILABLE"),
            "{v}"
        );
        assert_eq!(retry_after.as_deref(), Some("1"));
        assert!(*took < Duration::from_secs(2), "{took:?}");
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("PostgreSQL"));
    }
    assert!(
        metrics.contains("aurigraph_archive_reads_total{outcome=\"unavailable\"} 2\n"),
        "{metrics}"
    );
    assert!(metrics.contains("aurigraph_archive_reads_total{outcome=\"ok\"} 0\n"));
    let (status, recent, _, _) = &answers[2];
    assert_eq!(
        (*status, &recent["blockNumber"]),
        (StatusCode::OK, &json!(4))
    );
    assert!(recent.get("source").is_none(), "{recent}");
}

#[test]
fn a_silent_archive_is_503_after_the_readers_timeout_and_a_full_queue_at_once() {
    // A server that accepts connections and never answers: the one reader waits in the
    // first read's connection start-up.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "host=127.0.0.1 port={} user=u dbname=d",
        silent.local_addr().unwrap().port()
    );
    let options = ReaderOptions {
        threads: 1,
        queue: 1,
        timeout: Duration::from_millis(300),
        ..ReaderOptions::default()
    };
    let a = "ab".repeat(32);
    let (answers, metrics, pool) = on_executor(
        &url,
        options,
        vec![
            history_path(&a, ""),
            history_path(&a, ""),
            history_path(&a, ""),
        ],
    );
    // The first read holds the reader, which waits for the server: 503 after the timeout.
    // The second waits in the queue: 503 after the timeout too. The third finds the queue
    // still full: 503 at once.
    for (i, (status, v, retry_after, took)) in answers.iter().enumerate() {
        assert_eq!(
            (*status, error_code(v)),
            (StatusCode::SERVICE_UNAVAILABLE, "ARCHIVE_UNAVAILABLE"),
            "{v}"
        );
        assert_eq!(retry_after.as_deref(), Some("1"));
        let message = v["error"]["message"].as_str().unwrap();
        if i < 2 {
            assert!(message.contains("did not answer within 300 ms"), "{v}");
            assert!(*took >= Duration::from_millis(300), "{took:?}");
            assert!(*took < Duration::from_millis(1500), "{took:?}");
        } else {
            assert!(message.contains("queue is full"), "{v}");
            assert!(*took < Duration::from_millis(100), "{took:?}");
        }
    }
    for (outcome, n) in [("timed_out", 2), ("queue_full", 1), ("ok", 0)] {
        assert!(
            metrics.contains(&format!(
                "aurigraph_archive_reads_total{{outcome=\"{outcome}\"}} {n}\n"
            )),
            "{metrics}"
        );
    }
    // The server goes away: the reader's wait ends, and so do its threads.
    drop(silent);
    pool.stop();
}
