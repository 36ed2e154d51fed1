//! Several videos tiled into one, as torchvision's `make_grid` lays out the reference's
//! sample grids.

use crate::Frame;

/// Tiles videos (all the same frame size) into one as long as the shortest: `ceil(√n)`
/// columns, 2-pixel black borders, sides rounded up to even for H.264's 4:2:0.
pub fn tile_grid(videos: &[Vec<Frame>]) -> Vec<Frame> {
    let cols = (1..).find(|c| c * c >= videos.len()).unwrap_or(1);
    tile_columns(videos, cols)
}

/// Tiles videos as [`tile_grid`] does, `cols` to a row (at least one), row-major: a contact
/// sheet whose rows mean something (e.g. originals above their reconstructions).
pub fn tile_columns(videos: &[Vec<Frame>], cols: usize) -> Vec<Frame> {
    let Some(first) = videos.first().and_then(|v| v.first()) else { return Vec::new() };
    let (fw, fh, pad) = (first.width, first.height, 2);
    let cols = cols.max(1);
    let rows = videos.len().div_ceil(cols);
    let gw = (cols * (fw + pad) + pad).next_multiple_of(2);
    let gh = (rows * (fh + pad) + pad).next_multiple_of(2);
    let len = videos.iter().map(Vec::len).min().unwrap_or(0);
    (0..len)
        .map(|t| {
            let mut data = vec![0u8; gw * gh * 3];
            for (i, video) in videos.iter().enumerate() {
                let (x0, y0) = (pad + (i % cols) * (fw + pad), pad + (i / cols) * (fh + pad));
                let src = &video[t];
                for y in 0..fh {
                    let dst = ((y0 + y) * gw + x0) * 3;
                    data[dst..dst + fw * 3].copy_from_slice(&src.data[y * fw * 3..(y + 1) * fw * 3]);
                }
            }
            Frame::new(gw, gh, data)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_videos_tile_two_by_two_with_borders() {
        let video = |v: u8, len: usize| (0..len).map(|_| Frame::new(5, 4, vec![v; 5 * 4 * 3])).collect::<Vec<_>>();
        let grid = tile_grid(&[video(10, 3), video(20, 2), video(30, 3)]);
        // 2 columns × 2 rows of 5×4 with 2-pixel borders: 16 × 14 (already even).
        assert_eq!(grid.len(), 2, "as long as the shortest video");
        assert_eq!((grid[0].width, grid[0].height), (16, 14));
        let px = |x: usize, y: usize| grid[0].data[(y * 16 + x) * 3];
        assert_eq!((px(2, 2), px(9, 2), px(2, 8), px(9, 8)), (10, 20, 30, 0), "tiles row-major; the fourth cell stays black");
        assert_eq!((px(0, 0), px(7, 2), px(2, 6)), (0, 0, 0), "borders are black");
        // Odd sides are rounded up to even: one 3×3 tile gives 7×7 → 8×8.
        let odd = tile_grid(&[vec![Frame::new(3, 3, vec![1; 27])]]);
        assert_eq!((odd[0].width, odd[0].height), (8, 8));
        assert!(tile_grid(&[]).is_empty());
    }

    #[test]
    fn explicit_columns_make_rows() {
        let still = |v: u8| vec![Frame::new(3, 2, vec![v; 3 * 2 * 3])];
        let sheet = tile_columns(&[still(1), still(2), still(3), still(4), still(5)], 3);
        // 3 columns × 2 rows of 3×2 with 2-pixel borders: 3·5+2 = 17 → 18 wide, 2·4+2 = 10 high.
        assert_eq!((sheet[0].width, sheet[0].height), (18, 10));
        let px = |x: usize, y: usize| sheet[0].data[(y * 18 + x) * 3];
        assert_eq!((px(2, 2), px(12, 2), px(2, 6), px(7, 6), px(12, 6)), (1, 3, 4, 5, 0), "row-major, the sixth cell black");
        assert_eq!(tile_columns(&[still(9)], 0)[0].width, 8, "zero columns means one");
    }
}
