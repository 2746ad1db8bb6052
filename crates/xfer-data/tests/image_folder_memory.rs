//! The lazy image folder holds no pixels: the live heap after opening a folder of large
//! images is the same as for a folder of tiny ones (measured with a counting allocator; its
//! own test binary, one test, so nothing else allocates meanwhile).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

mod common;

use common::TempDir;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use xfer_data::formats::folder::{FolderOptions, ImageFolder};

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::SeqCst);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::SeqCst);
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn make(tag: &str, side: u32, n: usize) -> TempDir {
    let dir = TempDir::new(tag);
    let img = image::RgbImage::from_fn(side, side, |x, y| image::Rgb([x as u8, y as u8, 7]));
    let mut png = std::io::Cursor::new(Vec::new());
    img.write_to(&mut png, image::ImageFormat::Png).unwrap();
    for k in 0..n {
        dir.write(&format!("c{}/{k:04}.png", k % 2), png.get_ref());
    }
    dir
}

fn live_after_open(dir: &TempDir) -> (isize, ImageFolder) {
    let before = LIVE.load(Ordering::SeqCst);
    let f = ImageFolder::open(dir.path(), &FolderOptions::default()).unwrap();
    (LIVE.load(Ordering::SeqCst) - before, f)
}

#[test]
fn the_lazy_folder_holds_no_decoded_pixels() {
    let small = make("mem-small", 4, 40);
    let large = make("mem-large", 256, 40);
    let (s, fs) = live_after_open(&small);
    let (l, fl) = live_after_open(&large);
    // 40 decoded 256×256 RGB images would be 40 · 786,432 f32 bytes = 31 MB.
    let pixels = 40 * 3 * 256 * 256 * 4;
    assert!(
        (l - s).abs() < 4096,
        "live heap {s} B (4×4 images) vs {l} B (256×256): the folder keeps pixels?"
    );
    assert!(l < pixels / 100, "{l} B for the file list of 40 images");
    // And it grows with the number of files only by about a path and a label each.
    let many = make("mem-many", 4, 400);
    let (m, _fm) = live_after_open(&many);
    assert!(m < 400 * 400, "{m} B for 400 files");
    drop((fs, fl));
}
