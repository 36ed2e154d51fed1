//! Clip selection: bounds, determinism, and StyleGAN-V's short-video rules.

use latte_metrics::sampling::{fake_clips, held_out_clips, random_frames, real_clips, RealDraw};

fn draw(num_clips: usize, seed: u64) -> RealDraw {
    RealDraw { num_clips, num_frames: 16, stride: 3, mirror: false, seed }
}

#[test]
fn real_clips_are_seeded_in_bounds_and_distinct_videos() {
    let counts: Vec<u64> = (0..50).map(|i| 40 + i * 3).collect();
    let (a, eligible) = real_clips(&counts, &draw(20, 7));
    let (b, _) = real_clips(&counts, &draw(20, 7));
    let (c, _) = real_clips(&counts, &draw(20, 8));
    assert_eq!(a, b, "same seed, same clips");
    assert_ne!(a, c, "another seed, other clips");
    assert_eq!(eligible, counts.iter().filter(|&&n| n >= 48).count());
    assert_eq!(a.len(), 20);
    let mut videos: Vec<usize> = a.iter().map(|c| c.video).collect();
    videos.sort();
    videos.dedup();
    assert_eq!(videos.len(), 20, "one clip per video");
    for clip in &a {
        assert!(counts[clip.video] >= 48);
        assert_eq!(clip.frames.len(), 16);
        assert!(clip.frames.windows(2).all(|w| w[1] - w[0] == 3));
        assert!(*clip.frames.last().unwrap() < counts[clip.video]);
    }
}

#[test]
fn every_start_offset_is_reachable_and_none_overflows() {
    // One video of 50 frames, stride 3: starts 0..=4 (StyleGAN-V's randint(0, n - 48 + 2)).
    let mut seen = [false; 5];
    for seed in 0..200 {
        let (clips, _) = real_clips(&[50], &draw(1, seed));
        let start = clips[0].frames[0] as usize;
        assert!(start <= 4, "start {start}");
        seen[start] = true;
    }
    assert!(seen.iter().all(|&s| s), "{seen:?}");
}

#[test]
fn few_eligible_videos_are_all_used_once() {
    let (clips, eligible) = real_clips(&[10, 100, 47, 48, 200], &draw(2048, 0));
    assert_eq!(eligible, 3);
    let mut v: Vec<usize> = clips.iter().map(|c| c.video).collect();
    v.sort();
    assert_eq!(v, [1, 3, 4]);
}

#[test]
fn mirroring_flips_about_half_the_clips_and_changes_nothing_else() {
    let counts: Vec<u64> = vec![60; 400];
    let (plain, _) = real_clips(&counts, &draw(200, 3));
    let (mirrored, _) = real_clips(&counts, &RealDraw { mirror: true, ..draw(200, 3) });
    assert!(plain.iter().all(|c| !c.mirror));
    let flipped = mirrored.iter().filter(|c| c.mirror).count();
    assert!((70..130).contains(&flipped), "{flipped} of 200 flipped");
    let videos = |c: &[latte_metrics::sampling::Clip]| c.iter().map(|c| c.video).collect::<Vec<_>>();
    assert_eq!(videos(&plain), videos(&mirrored), "the flip is drawn after the videos");
}

#[test]
fn held_out_clips_avoid_the_reference_videos_and_are_seeded() {
    let counts: Vec<u64> = (0..30).map(|i| 40 + i).collect();
    let (reference, eligible) = real_clips(&counts, &draw(10, 1));
    let held = held_out_clips(&counts, &draw(10, 1), &reference);
    assert_eq!(held, held_out_clips(&counts, &draw(10, 1), &reference));
    assert_eq!(held.len(), 10);
    assert!(held.iter().all(|h| reference.iter().all(|r| r.video != h.video) && counts[h.video] >= 48));
    // Too few videos left: every remaining one, once.
    let (most, _) = real_clips(&counts, &draw(eligible - 3, 1));
    assert_eq!(held_out_clips(&counts, &draw(eligible - 3, 1), &most).len(), 3);
}

#[test]
fn fake_clips_take_the_first_frames_of_the_first_videos() {
    let clips = fake_clips(&[16, 8, 20, 16], 2, 16, 1);
    assert_eq!(clips.iter().map(|c| c.video).collect::<Vec<_>>(), [0, 2]);
    assert_eq!(clips[0].frames, (0..16).collect::<Vec<u64>>());
}

#[test]
fn random_frames_are_distinct_sorted_and_seeded() {
    let a = random_frames(1000, 100, 3);
    assert_eq!(a, random_frames(1000, 100, 3));
    assert_eq!(a.len(), 100);
    assert!(a.windows(2).all(|w| w[0] < w[1]));
    assert!(a.iter().all(|&i| i < 1000));
    assert_eq!(random_frames(5, 10, 0), [0, 1, 2, 3, 4]);
}
