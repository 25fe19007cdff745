//! The policy's global allocator: dlmalloc (the allocator std uses on wasm32) whose first 64 KiB come from an
//! arena inside the module's initial memory instead of a `memory.grow`.
//!
//! std's allocator grows linear memory on the first allocation of every call (an instance lives for one call),
//! and each growth costs the host two `mprotect` calls: one to grow, one to shrink the pool slot back when the
//! instance is dropped (docs/PERFORMANCE.md, "Custom allocation's fixed cost"). A policy whose heap fits in the
//! arena never grows memory; a larger one grows it as before. Memory use is unchanged: std's allocator grows
//! by 64 KiB at once too.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::{Cell, UnsafeCell};
use std::ptr;

const PAGE_BYTES: usize = 64 << 10;
const ARENA_BYTES: usize = 64 << 10;

/// Zeroed memory in the module's data section (`.bss`: it costs no bytes in the module).
#[repr(C, align(16))]
struct Arena(UnsafeCell<[u8; ARENA_BYTES]>);

// SAFETY: wasm32-unknown-unknown policies run on one thread (no threads, no shared memory); the arena is only
// handed out once, to dlmalloc, which then owns it.
unsafe impl Sync for Arena {}

static ARENA: Arena = Arena(UnsafeCell::new([0; ARENA_BYTES]));

/// dlmalloc's source of memory: the arena once, then pages from `memory.grow`.
struct Pages {
    arena_taken: Cell<bool>,
}

// SAFETY: `alloc` returns memory nobody else uses (the arena once, else fresh pages) and never frees it, as
// std's wasm32 allocator does; everything else declines, which dlmalloc handles.
unsafe impl dlmalloc::Allocator for Pages {
    fn alloc(&self, size: usize) -> (*mut u8, usize, u32) {
        if !self.arena_taken.get() && size <= ARENA_BYTES {
            self.arena_taken.set(true);
            return (ARENA.0.get().cast(), ARENA_BYTES, 0);
        }
        let pages = size.div_ceil(PAGE_BYTES);
        let previous = core::arch::wasm32::memory_grow(0, pages);
        if previous == usize::MAX {
            return (ptr::null_mut(), 0, 0);
        }
        ((previous * PAGE_BYTES) as *mut u8, pages * PAGE_BYTES, 0)
    }

    fn remap(&self, _ptr: *mut u8, _old: usize, _new: usize, _can_move: bool) -> *mut u8 {
        ptr::null_mut()
    }

    fn free_part(&self, _ptr: *mut u8, _old: usize, _new: usize) -> bool {
        false
    }

    fn free(&self, _ptr: *mut u8, _size: usize) -> bool {
        false
    }

    fn can_release_part(&self, _flags: u32) -> bool {
        false
    }

    fn allocates_zeros(&self) -> bool {
        // The arena starts zeroed (each call has a fresh instance) and so do new pages.
        true
    }

    fn page_size(&self) -> usize {
        PAGE_BYTES
    }
}

struct Heap(UnsafeCell<dlmalloc::Dlmalloc<Pages>>);

// SAFETY: one thread (see `Arena`), and the allocator is never re-entered (dlmalloc does not allocate).
unsafe impl Sync for Heap {}

#[global_allocator]
static HEAP: Heap =
    Heap(UnsafeCell::new(dlmalloc::Dlmalloc::new_with_allocator(Pages { arena_taken: Cell::new(false) })));

// SAFETY: each method forwards to dlmalloc with the layout the caller promises, as std's wasm32 allocator does.
unsafe impl GlobalAlloc for Heap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe { (*self.0.get()).malloc(layout.size(), layout.align()) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        unsafe { (*self.0.get()).calloc(layout.size(), layout.align()) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { (*self.0.get()).free(ptr, layout.size(), layout.align()) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        unsafe { (*self.0.get()).realloc(ptr, layout.size(), layout.align(), new_size) }
    }
}
