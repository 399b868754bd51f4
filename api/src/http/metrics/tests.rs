use super::process::parse_cpu_ticks;
use super::*;

#[test]
fn buckets_are_monotonic_and_precise() {
    let mut last = 0;
    for v in (0..100_000u64).chain([1 << 30, (1 << 39) + 5, u64::MAX]) {
        let b = bucket_of(v);
        assert!(b >= last || v >= 1 << 30, "{v}");
        assert!(b < BUCKETS, "{v} -> {b}");
        last = b;
        if v < (1 << 39) {
            let mid = bucket_value(b);
            assert!(
                (mid - v as f64).abs() <= (v as f64 / 16.0).max(0.0) + 0.5,
                "{v} -> {mid}"
            );
        }
    }
    assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    for v in 0..16 {
        assert_eq!(bucket_value(bucket_of(v)), v as f64);
    }
}

#[test]
fn quantiles_of_known_distributions() {
    let mut counts = vec![0u64; BUCKETS];
    assert_eq!(quantile(&counts, 0.5), 0.0);
    for v in 1..=1000u64 {
        counts[bucket_of(v * 1000)] += 1; // 1 ms .. 1000 ms in µs
    }
    let p50 = quantile(&counts, 0.5) / 1000.0;
    let p99 = quantile(&counts, 0.99) / 1000.0;
    assert!((p50 - 500.0).abs() < 500.0 / 16.0, "{p50}");
    assert!((p99 - 990.0).abs() < 990.0 / 16.0, "{p99}");
    assert!(quantile(&counts, 1.0) >= quantile(&counts, 0.999));
}

#[test]
fn counters_tps_and_windowed_latency() {
    let m = Metrics::new(2);
    let t0 = Instant::now();
    m.sample_at(t0, Some(0));
    let codes = |ok: usize, bad: usize| {
        std::iter::repeat_n(ResultCode::Ok, ok)
            .chain(std::iter::repeat_n(ResultCode::InsufficientFunds, bad))
    };
    m.record_decided(0, codes(900, 100), Duration::from_millis(4));
    m.record_decided(3, codes(100, 0), Duration::from_millis(8));
    m.record_detached(1, 5);
    m.sample_at(t0 + Duration::from_secs(1), Some(0));
    let s = m.snapshot();
    assert_eq!((s.confirmed, s.rejected, s.detached), (1000, 100, 5));
    assert!((s.tps - 1000.0).abs() < 1e-6, "{}", s.tps);
    assert!((s.peak_tps - 1000.0).abs() < 1e-6);
    assert_eq!(s.latency_samples, 1100);
    assert!((s.p50_ms - 4.0).abs() < 0.3, "{}", s.p50_ms);
    assert!((s.p99_ms - 8.0).abs() < 0.6, "{}", s.p99_ms);
    // A quiet second: tps falls to 0, the peak stays.
    m.sample_at(t0 + Duration::from_secs(2), Some(0));
    let s = m.snapshot();
    assert_eq!(s.tps, 0.0);
    assert!((s.peak_tps - 1000.0).abs() < 1e-6);
    // Beyond the latency window, old latencies leave the percentiles.
    for k in 3..15 {
        m.sample_at(t0 + Duration::from_secs(k), Some(0));
    }
    assert_eq!(m.snapshot().latency_samples, 0);
    assert_eq!(m.snapshot().p99_ms, 0.0);
}

#[test]
fn histograms_results_and_requests() {
    let m = Metrics::new(2);
    m.record_decided(
        0,
        [ResultCode::Ok, ResultCode::Ok, ResultCode::NonceReplayed],
        Duration::from_micros(700),
    );
    m.record_decided(1, [ResultCode::Ok], Duration::from_millis(30));
    m.record_detached(1, 10);
    m.record_request(0, 6, &hyper::Method::POST, 200, Duration::from_micros(800));
    m.record_request(1, 6, &hyper::Method::POST, 200, Duration::from_micros(900));
    m.record_request(1, 99, &hyper::Method::PUT, 418, Duration::from_micros(5));
    let h = m.histograms();
    assert_eq!(h.results[0], (ResultCode::Ok, 3));
    assert_eq!(h.results[ResultCode::NonceReplayed as usize].1, 1);
    assert_eq!(h.results.iter().map(|r| r.1).sum::<u64>(), 4);
    assert_eq!(h.latency_us.count(), 4);
    assert_eq!(h.latency_us.sum, 3 * 700 + 30_000);
    // 700 µs falls under le=1000 µs, 30 ms under le=50 ms.
    assert_eq!(h.latency_us.counts[3], 3);
    assert_eq!(h.latency_us.counts[8], 1);
    // Three submissions: 3, 1 and 10 transfers.
    assert_eq!(h.batch_size.count(), 3);
    assert_eq!(h.batch_size.sum, 14);
    assert_eq!(
        h.requests,
        vec![
            RequestCount {
                route: "/api/v11/transactions",
                method: "POST",
                status: Some(200),
                count: 2
            },
            RequestCount {
                route: "unmatched",
                method: "OTHER",
                status: None,
                count: 1
            },
        ]
    );
    assert_eq!(h.request_us.len(), 2);
    assert_eq!(h.request_us[0].1.count(), 2);
    let s = m.snapshot();
    assert_eq!((s.confirmed, s.rejected, s.detached), (3, 1, 10));
}

#[test]
fn connections_accepted_are_counted_and_exported_per_core() {
    let settings = crate::http::HttpSettings {
        metrics: std::sync::Arc::new(Metrics::new(3)),
        ..Default::default()
    };
    for core in [0, 2, 2, 5] {
        settings.metrics.count_connection_accepted(core);
    }
    settings.metrics.record_direct_body(1);
    // Core 5 of a 3-slot count lands in slot 5 % 3 = 2.
    assert_eq!(settings.metrics.connections_accepted(), vec![1, 0, 3]);
    let text = render::render(&render::Scrape {
        settings: &settings,
        status: &[],
        counters: &[],
        core_counters: &[],
        chain_id: 7,
        shards: 4,
        cores: 3,
    });
    for line in [
        "# TYPE aurigraph_http_connections_accepted counter\n",
        "aurigraph_http_connections_accepted_total{core=\"0\"} 1\n",
        "aurigraph_http_connections_accepted_total{core=\"1\"} 0\n",
        "aurigraph_http_connections_accepted_total{core=\"2\"} 3\n",
        "# TYPE aurigraph_http_bodies_read_direct counter\n",
        "aurigraph_http_bodies_read_direct_total{core=\"0\"} 0\n",
        "aurigraph_http_bodies_read_direct_total{core=\"1\"} 1\n",
    ] {
        assert!(text.contains(line), "{line} not in\n{text}");
    }
    assert!(!text.contains("aurigraph_http_connections_accepted_total{core=\"3\"}"));
}

#[test]
fn reads_proc() {
    let p = read_process();
    assert!(
        p.resident_bytes > 0 && p.virtual_bytes >= p.resident_bytes,
        "{p:?}"
    );
    assert!(
        p.threads >= 1 && p.open_fds >= 1 && p.max_fds >= p.open_fds,
        "{p:?}"
    );
    assert!(p.start_time_seconds > 1.5e9, "{p:?}");
    let (capacity, available) = disk_space(std::path::Path::new("/")).unwrap();
    assert!(capacity >= available && capacity > 0);
    assert_eq!(
        parse_cpu_ticks("123 (a b) c) S 1 2 3 4 5 6 7 8 9 10 70 30 0 0"),
        Some(100)
    );
    assert_eq!(parse_cpu_ticks("garbage"), None);
    assert!(read_rss_bytes().unwrap() > 0);
    assert!(read_cpu_ticks().is_some());
}
