//! The demo's deterministic request generator: a seeded SplitMix64 stream drawn through a Zipf
//! distribution, so every run (and every worker process) sees the same requests.

/// SplitMix64: tiny, fast, and fully determined by its seed (the demo needs repeatability, not
/// unpredictability).
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform float in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The inputs (0-based ranks into `inputs` distinct values) of `requests` requests, drawn
/// with probability proportional to `1 / (rank + 1)^s`.
pub fn zipf_requests(seed: u64, requests: u32, inputs: u32, s: f64) -> Vec<u32> {
    let n = inputs.max(1) as usize;
    let mut cdf = Vec::with_capacity(n);
    let mut total = 0.0;
    for rank in 0..n {
        total += 1.0 / ((rank + 1) as f64).powf(s);
        cdf.push(total);
    }
    let mut rng = SplitMix64::new(seed);
    (0..requests)
        .map(|_| {
            let u = rng.next_f64() * total;
            let idx = cdf.partition_point(|&c| c <= u);
            idx.min(n - 1) as u32
        })
        .collect()
}

/// Requests of worker `index` out of `workers`: every `workers`-th request, as a load balancer
/// spreading identical requests over the fleet would.
pub fn share(all: &[u32], index: u32, workers: u32) -> Vec<u32> {
    all.iter().enumerate().filter(|(i, _)| *i as u32 % workers == index).map(|(_, &r)| r).collect()
}

/// Distinct inputs among `requests`.
pub fn distinct(requests: &[u32]) -> usize {
    let mut v = requests.to_vec();
    v.sort_unstable();
    v.dedup();
    v.len()
}

/// A Korean mobile number for the `i`-th demo customer (`010-XXXX-YYYY`).
pub fn phone_number(i: u32) -> String {
    let mut rng = SplitMix64::new(0x5EED_0000 ^ u64::from(i));
    let mid = 1000 + rng.next_u64() % 9000;
    format!("010-{mid:04}-{:04}", i % 10_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_requests_and_skewed() {
        let a = zipf_requests(7, 2000, 200, 1.0);
        assert_eq!(a, zipf_requests(7, 2000, 200, 1.0));
        assert_ne!(a, zipf_requests(8, 2000, 200, 1.0));
        assert!(a.iter().all(|&r| r < 200));
        let hot = a.iter().filter(|&&r| r == 0).count();
        let cold = a.iter().filter(|&&r| r == 199).count();
        assert!(hot > 5 * cold.max(1), "rank 0 drawn {hot} times, rank 199 {cold}");
    }

    #[test]
    fn shares_partition_the_requests() {
        let a = zipf_requests(1, 101, 10, 1.0);
        let total: usize = (0..4).map(|w| share(&a, w, 4).len()).sum();
        assert_eq!(total, 101);
    }

    #[test]
    fn phone_numbers_look_korean() {
        let p = phone_number(12_345);
        assert_eq!(p.len(), 13);
        assert!(p.starts_with("010-"));
        assert!(p.ends_with("-2345"));
    }
}
