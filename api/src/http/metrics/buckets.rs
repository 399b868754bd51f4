//! The log-bucketed latency histogram of the windowed percentiles: exact below 16, then 16
//! buckets per power of two (values kept within 6.25 %).

/// Sub-buckets per power of two: values are kept within 1/16 (6.25 %) of their true value.
const SUB_BITS: u32 = 4;
const SUB: u64 = 1 << SUB_BITS;
/// Largest exponent kept (values are in microseconds: 2^40 µs is about 12 days).
const EXP_MAX: u32 = 40;
/// Buckets of the histogram.
pub const BUCKETS: usize = (SUB + (EXP_MAX - SUB_BITS) as u64 * SUB) as usize;

/// The bucket of a value (exact below 16, then 16 buckets per power of two, clamped at the top).
pub fn bucket_of(value: u64) -> usize {
    if value < SUB {
        return value as usize;
    }
    let e = (63 - value.leading_zeros()).min(EXP_MAX - 1);
    let m = if e == EXP_MAX - 1 && value >> e > 1 {
        SUB - 1 // beyond the range: the last bucket
    } else {
        (value >> (e - SUB_BITS)) - SUB
    };
    (SUB + (e - SUB_BITS) as u64 * SUB + m) as usize
}

/// The midpoint of a bucket's range of values.
pub fn bucket_value(index: usize) -> f64 {
    let i = index as u64;
    if i < SUB {
        return i as f64;
    }
    let e = (i - SUB) / SUB + SUB_BITS as u64;
    let m = (i - SUB) % SUB;
    let width = 1u64 << (e - SUB_BITS as u64);
    ((SUB + m) * width) as f64 + (width as f64 - 1.0) / 2.0
}

/// The value at quantile `q` (0..=1) of bucket counts, or 0 when empty.
pub fn quantile(counts: &[u64], q: f64) -> f64 {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return 0.0;
    }
    let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0;
    for (i, &c) in counts.iter().enumerate() {
        seen += c;
        if seen >= rank {
            return bucket_value(i);
        }
    }
    bucket_value(counts.len() - 1)
}
