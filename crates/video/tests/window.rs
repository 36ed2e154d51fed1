use latte_video::window::linspace_trunc;
use latte_video::{WindowError, WindowRule, WindowSpec};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const FULL_LINSPACE: [usize; 16] = [0, 3, 6, 9, 12, 15, 18, 21, 25, 28, 31, 34, 37, 40, 43, 47];

#[test]
fn full_window_offsets_match_the_reference() {
    let s = WindowSpec::default();
    for total in [49usize, 50, 100, 333] {
        for begin in [0, s.max_begin(total) / 2, s.max_begin(total)] {
            let lin = s.indices(total, begin, WindowRule::Linspace).unwrap();
            assert_eq!(lin, FULL_LINSPACE.iter().map(|o| o + begin).collect::<Vec<_>>(), "total {total} begin {begin}");
            let st = s.indices(total, begin, WindowRule::Stride).unwrap();
            assert_eq!(st, (0..16).map(|k| begin + 3 * k).collect::<Vec<_>>());
        }
    }
}

#[test]
fn window_start_range_is_the_references() {
    let s = WindowSpec::default();
    // rand_end = max(0, total - 48 - 1)
    assert_eq!(s.max_begin(100), 51);
    assert_eq!(s.max_begin(49), 0);
    assert_eq!(s.max_begin(48), 0);
    assert_eq!(s.max_begin(20), 0);
    assert_eq!(s.indices(100, 52, WindowRule::Linspace), Err(WindowError::BadBegin { begin: 52, max_begin: 51, total: 100 }));
}

#[test]
fn short_videos_behave_as_the_reference() {
    let s = WindowSpec::default();
    // numpy: np.linspace(0, total-1, 16, dtype=int) (values from numpy 2.4)
    let cases: [(usize, [usize; 16]); 4] = [
        (16, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]),
        (20, [0, 1, 2, 3, 5, 6, 7, 8, 10, 11, 12, 13, 15, 16, 17, 19]),
        (30, [0, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29]),
        (48, [0, 3, 6, 9, 12, 15, 18, 21, 25, 28, 31, 34, 37, 40, 43, 47]),
    ];
    for (total, want) in cases {
        assert_eq!(s.indices(total, 0, WindowRule::Linspace).unwrap(), want.to_vec(), "total {total}");
    }
    // frame folders: frames[idx[0]: idx[-1]+1: 3] gives fewer than 16 frames below 46
    assert_eq!(s.indices(30, 0, WindowRule::Stride).unwrap(), (0..30).step_by(3).collect::<Vec<_>>());
    assert_eq!(s.indices(46, 0, WindowRule::Stride).unwrap().len(), 16);
    assert!(!s.long_enough(45, WindowRule::Stride));
    assert!(s.long_enough(46, WindowRule::Stride));
    assert!(s.long_enough(16, WindowRule::Linspace));
    assert_eq!(s.indices(15, 0, WindowRule::Linspace), Err(WindowError::TooShort { total: 15, need: 16 }));
}

#[test]
fn linspace_truncates_like_numpy() {
    // np.linspace(5, 52, 16, dtype=int) and np.linspace(0, 9, 4, dtype=int)
    assert_eq!(linspace_trunc(5, 52, 16), FULL_LINSPACE.iter().map(|o| o + 5).collect::<Vec<_>>());
    assert_eq!(linspace_trunc(0, 9, 4), vec![0, 3, 6, 9]);
    assert_eq!(linspace_trunc(0, 10, 4), vec![0, 3, 6, 10]);
}

#[test]
fn sampling_is_seeded_and_covers_the_start_range() {
    let s = WindowSpec::default();
    let draw = |seed| {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..200).map(|_| s.sample(60, WindowRule::Linspace, &mut rng).unwrap()[0]).collect::<Vec<_>>()
    };
    assert_eq!(draw(7), draw(7));
    assert_ne!(draw(7), draw(8));
    let starts = draw(7);
    assert_eq!(*starts.iter().min().unwrap(), 0);
    assert_eq!(*starts.iter().max().unwrap(), 11);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let flips = (0..1000).filter(|_| latte_video::sample_flip(&mut rng)).count();
    assert!((400..600).contains(&flips), "{flips}");
}
