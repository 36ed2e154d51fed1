//! An RGB frame in memory.

/// One frame: `height × width × 3` uint8, row-major, no padding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl Frame {
    pub fn new(width: usize, height: usize, data: Vec<u8>) -> Self {
        assert_eq!(data.len(), width * height * 3, "frame buffer does not hold {width}x{height} RGB");
        Self { width, height, data }
    }

    pub fn filled(width: usize, height: usize, rgb: [u8; 3]) -> Self {
        let data = rgb.iter().copied().cycle().take(width * height * 3).collect();
        Self { width, height, data }
    }

    pub fn pixel(&self, x: usize, y: usize) -> [u8; 3] {
        let i = (y * self.width + x) * 3;
        [self.data[i], self.data[i + 1], self.data[i + 2]]
    }

    /// Mirror left-right (`torch.flip(clip, [-1])`).
    pub fn flip_horizontal(&self) -> Frame {
        let mut data = Vec::with_capacity(self.data.len());
        for row in self.data.chunks_exact(self.width * 3) {
            for px in row.chunks_exact(3).rev() {
                data.extend_from_slice(px);
            }
        }
        Frame { width: self.width, height: self.height, data }
    }

    /// The `w × h` sub-image whose top-left corner is `(x, y)`.
    pub fn crop(&self, x: usize, y: usize, w: usize, h: usize) -> Frame {
        assert!(x + w <= self.width && y + h <= self.height, "crop outside the frame");
        let mut data = Vec::with_capacity(w * h * 3);
        for r in y..y + h {
            let s = (r * self.width + x) * 3;
            data.extend_from_slice(&self.data[s..s + w * 3]);
        }
        Frame { width: w, height: h, data }
    }
}
