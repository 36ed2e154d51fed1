use zarrs::array::builder::ArrayBuilderFillValue;
use zarrs::array::{data_type, DataType};

/// The element types a ragged store holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    U8,
    F16,
    F32,
}

impl Dtype {
    pub fn name(self) -> &'static str {
        match self {
            Dtype::U8 => "uint8",
            Dtype::F16 => "float16",
            Dtype::F32 => "float32",
        }
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for u8 {}
    impl Sealed for half::f16 {}
    impl Sealed for f32 {}
}

/// An element type of a ragged array: `u8`, `half::f16` or `f32`.
pub trait FrameElement: sealed::Sealed + zarrs::array::ElementOwned + bytemuck::Pod + Send + Sync + 'static {
    const DTYPE: Dtype;
    /// NaN for floats so that frames that were never written read back as NaN, not as data.
    fn fill() -> Self;
    #[doc(hidden)]
    fn zarr_data_type() -> DataType;
    #[doc(hidden)]
    fn zarr_fill() -> ArrayBuilderFillValue;
}

impl FrameElement for u8 {
    const DTYPE: Dtype = Dtype::U8;
    fn fill() -> Self {
        0
    }
    fn zarr_data_type() -> DataType {
        data_type::uint8()
    }
    fn zarr_fill() -> ArrayBuilderFillValue {
        0u8.into()
    }
}

impl FrameElement for half::f16 {
    const DTYPE: Dtype = Dtype::F16;
    fn fill() -> Self {
        half::f16::NAN
    }
    fn zarr_data_type() -> DataType {
        data_type::float16()
    }
    fn zarr_fill() -> ArrayBuilderFillValue {
        half::f16::NAN.into()
    }
}

impl FrameElement for f32 {
    const DTYPE: Dtype = Dtype::F32;
    fn fill() -> Self {
        f32::NAN
    }
    fn zarr_data_type() -> DataType {
        data_type::float32()
    }
    fn zarr_fill() -> ArrayBuilderFillValue {
        f32::NAN.into()
    }
}
