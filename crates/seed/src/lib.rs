//! The workspace's one way to turn a seed from the config into random draws: ChaCha8 seeded
//! with the seed, on a numbered stream ([`stream`]).
//!
//! Streams of one seed never overlap, so whatever is drawn from stream i (sample i's class and
//! noise, synthetic video i, micro-batch m, parameter p) depends on (seed, i) alone: not on
//! the batch it is drawn in, the number of workers, or the other draws. The stream numbers in
//! use:
//!
//! | user | seed | stream |
//! |---|---|---|
//! | `latte-nn` parameter initialisation | model seed | a hash of the parameter's path |
//! | `latte-train` data loader | `data_seed` | micro-batch index (epoch shuffles: their own streams) |
//! | `latte-video` synthetic dataset | dataset seed | video index |
//! | `latte-datasets` frame extraction (windows, flips) | frames seed | clip index |
//! | `latte-diffusion` sampling | sample seed | sample index |
//! | `latte-metrics` held-out real clips | metrics seed | 1 |
//!
//! Older draws keep their own derivations because changing them would change cached outputs:
//! the VAE trainer's `seed + 1` (data) and `seed + 2` (noise), and the metrics' `seed ^
//! 0x5EED_F1D0` (real-clip draw).

use rand_chacha::rand_core::SeedableRng;
pub use rand_chacha::ChaCha8Rng;

/// ChaCha8 seeded with `seed`, positioned at the start of stream `stream`.
pub fn stream(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

#[cfg(test)]
mod tests {
    use rand_chacha::rand_core::RngCore;

    use super::*;

    #[test]
    fn a_stream_is_a_function_of_seed_and_number_alone() {
        let draw = |seed, s| {
            let mut r = stream(seed, s);
            (r.next_u64(), r.next_u64())
        };
        assert_eq!(draw(3, 7), draw(3, 7));
        assert_ne!(draw(3, 7), draw(3, 8), "streams differ");
        assert_ne!(draw(3, 7), draw(4, 7), "seeds differ");
        // Stream 0 is the seed's plain generator.
        let mut plain = ChaCha8Rng::seed_from_u64(3);
        assert_eq!(draw(3, 0), (plain.next_u64(), plain.next_u64()));
    }
}
