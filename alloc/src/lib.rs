//! The global allocator of Pier's binaries (`pier`, and the zero-work limits in `benches/`,
//! so that Pier and its limits differ only in their work): mimalloc, asked the way its fast
//! path wants.
//!
//! `mimalloc::MiMalloc` hands every allocation to `mi_malloc_aligned`, even one that needs no
//! more than the alignment every block has. That call's fast path covers a block of at most
//! 1 KiB, and only when the free block at hand happens to sit at the alignment asked. Anything
//! larger (a connection's buffers, a response, a tensor) and any size whose free list is empty
//! goes through its generic path, which (unless the size is a power of two) over-allocates and
//! aligns by hand: in callgrind, about 10 of a one-row HTTP invocation's 34 allocations took
//! it, at about 170 instructions each against about 40 for a plain one
//! (`benches/http_callgrind.sh`).
//!
//! mimalloc's blocks of 16 bytes or more start on a 16-byte boundary, smaller ones on an
//! 8-byte one, the guarantee glibc's `malloc` gives. So, as Rust's `System` allocator does on
//! glibc, a layout whose alignment is at most 16 and at most its size is served by plain
//! `mi_malloc` (`mi_zalloc`, `mi_realloc`); only a larger alignment takes the aligned calls.
//! Every block is freed by `mi_free`, which takes either kind.

#![no_std]

use core::alloc::{GlobalAlloc, Layout};
use core::ffi::c_void;

use libmimalloc_sys as mi;

/// The alignment every mimalloc block of at least this many bytes has (`MI_MAX_ALIGN_SIZE`
/// on 64-bit targets); a block smaller than it is aligned to its word size.
const MIN_ALIGN: usize = 16;

/// mimalloc as a global allocator: `#[global_allocator] static A: pier_alloc::Allocator =
/// pier_alloc::Allocator;`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Allocator;

/// Whether a block of `size` bytes from the plain calls is aligned to `align`: sizes of at
/// least 16 are 16-aligned, and an alignment no larger than a smaller size is at most 8.
#[inline]
fn plain_fits(align: usize, size: usize) -> bool {
    align <= MIN_ALIGN && align <= size
}

/// A block for `layout` from `plain(size)` where [`plain_fits`], else from
/// `aligned(size, align)`.
///
/// # Safety
///
/// `layout`'s size is not 0; `plain` and `aligned` are mimalloc's allocation calls.
#[inline(always)]
unsafe fn allocate(
    layout: Layout,
    plain: unsafe extern "C" fn(usize) -> *mut c_void,
    aligned: unsafe extern "C" fn(usize, usize) -> *mut c_void,
) -> *mut u8 {
    // SAFETY: plain FFI calls with the caller's non-zero size.
    unsafe {
        if plain_fits(layout.align(), layout.size()) {
            plain(layout.size()).cast()
        } else {
            aligned(layout.size(), layout.align()).cast()
        }
    }
}

// SAFETY: every pointer returned comes from mimalloc, aligned as `plain_fits` reasons or as
// the aligned calls promise, or is null on failure; `dealloc` and `realloc` receive only
// pointers this allocator returned, which `mi_free` and both reallocs accept whichever call
// made them.
unsafe impl GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: a size of 0 is never asked (GlobalAlloc's contract).
        unsafe { allocate(layout, mi::mi_malloc, mi::mi_malloc_aligned) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `alloc`.
        unsafe { allocate(layout, mi::mi_zalloc, mi::mi_zalloc_aligned) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator (GlobalAlloc's contract).
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from this allocator with `layout`; the new block keeps its
        // alignment by the same reasoning as `alloc`.
        unsafe {
            if plain_fits(layout.align(), new_size) {
                mi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
            } else {
                mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALIGNS: [usize; 9] = [1, 2, 4, 8, 16, 32, 64, 4096, 65536];
    const SIZES: [usize; 16] = [
        1, 3, 7, 8, 12, 15, 16, 24, 40, 100, 1000, 1025, 3000, 8192, 70_000, 600_000,
    ];

    fn fill(ptr: *mut u8, size: usize, seed: u8) {
        for i in 0..size {
            // SAFETY: `ptr` holds `size` bytes.
            unsafe { ptr.add(i).write(seed.wrapping_add(i as u8)) };
        }
    }

    fn holds(ptr: *const u8, size: usize, seed: u8) -> bool {
        // SAFETY: `ptr` holds `size` bytes.
        (0..size).all(|i| unsafe { ptr.add(i).read() } == seed.wrapping_add(i as u8))
    }

    #[test]
    fn every_block_has_the_alignment_asked_and_holds_its_bytes() {
        let a = Allocator;
        for align in ALIGNS {
            for size in SIZES {
                let layout = Layout::from_size_align(size, align).unwrap();
                // Several at once, so blocks come from within pages, not only their starts.
                let blocks: [*mut u8; 8] = core::array::from_fn(|k| {
                    // SAFETY: a non-zero size.
                    let p = unsafe { a.alloc(layout) };
                    assert!(!p.is_null(), "{layout:?}");
                    assert_eq!(p as usize % align, 0, "{layout:?}");
                    fill(p, size, k as u8);
                    p
                });
                for (k, p) in blocks.into_iter().enumerate() {
                    assert!(holds(p, size, k as u8), "{layout:?}");
                    // SAFETY: allocated above with `layout`.
                    unsafe { a.dealloc(p, layout) };
                }
            }
        }
    }

    #[test]
    fn zeroed_blocks_are_zero_and_aligned() {
        let a = Allocator;
        for align in ALIGNS {
            for size in SIZES {
                let layout = Layout::from_size_align(size, align).unwrap();
                // Dirty a block of this layout first, so a reused one would show it.
                // SAFETY: a non-zero size; freed at once.
                unsafe {
                    let dirty = a.alloc(layout);
                    fill(dirty, size, 0xA5);
                    a.dealloc(dirty, layout);
                }
                // SAFETY: a non-zero size.
                let p = unsafe { a.alloc_zeroed(layout) };
                assert!(!p.is_null());
                assert_eq!(p as usize % align, 0, "{layout:?}");
                // SAFETY: `p` holds `size` bytes.
                assert!(
                    (0..size).all(|i| unsafe { p.add(i).read() } == 0),
                    "{layout:?}"
                );
                // SAFETY: allocated above with `layout`.
                unsafe { a.dealloc(p, layout) };
            }
        }
    }

    #[test]
    fn realloc_keeps_the_bytes_and_the_alignment_growing_and_shrinking() {
        let a = Allocator;
        for align in ALIGNS {
            for from in SIZES {
                for to in [1, 9, 16, 17, 1024, 5000, 300_000] {
                    let layout = Layout::from_size_align(from, align).unwrap();
                    // SAFETY: a non-zero size.
                    let p = unsafe { a.alloc(layout) };
                    fill(p, from, 7);
                    // SAFETY: `p` came from `a` with `layout`; `to` is non-zero.
                    let q = unsafe { a.realloc(p, layout, to) };
                    assert!(!q.is_null());
                    assert_eq!(q as usize % align, 0, "{layout:?} -> {to}");
                    assert!(holds(q, from.min(to), 7), "{layout:?} -> {to}");
                    fill(q, to, 9);
                    // SAFETY: `q` is a block of `to` bytes at `align`.
                    unsafe { a.dealloc(q, Layout::from_size_align(to, align).unwrap()) };
                }
            }
        }
    }
}
