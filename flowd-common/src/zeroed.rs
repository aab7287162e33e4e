//! Zeroing by whole words. On the BPF target a zeroed struct otherwise becomes a call into
//! compiler-builtins' `memset`, a loop storing one byte per iteration: zeroing a packet's
//! `PacketInfo` alone cost about 50 ns per packet. Volatile word stores cannot be merged back into
//! that call.

/// Plain data for which all-zero bytes are a valid value, sized in whole 8-byte words.
///
/// # Safety
/// Implementors must be valid when every byte is zero, and their size a multiple of 8.
pub unsafe trait Zeroable: Sized {
    /// Zeroes `slot` in place, word by word.
    ///
    /// # Safety
    /// `slot` must be valid for writes of `Self` and 8-byte aligned.
    #[inline(always)]
    unsafe fn zero_at(slot: *mut Self) {
        let words = slot.cast::<u64>();
        for i in 0..core::mem::size_of::<Self>() / 8 {
            // SAFETY: in bounds (the size is a whole number of words), writable per the caller.
            unsafe { words.add(i).write_volatile(0) };
        }
    }

    /// A zeroed value. Returned by value it may be copied, and a copy of zeroes can compile back
    /// into `memset`: on hot paths zero a `MaybeUninit` with `zero_at` and use it in place.
    #[inline(always)]
    fn zeroed() -> Self {
        let mut value = core::mem::MaybeUninit::<Self>::uninit();
        // SAFETY: a local slot of the right type and alignment.
        unsafe {
            Self::zero_at(value.as_mut_ptr());
            // Every byte is zero, which the trait's contract makes a valid value.
            value.assume_init()
        }
    }
}

/// Implements `Zeroable` and a `Default` that uses it, checking size and alignment at compile
/// time.
macro_rules! zeroable {
    ($($ty:ty),*) => {$(
        const _: () = assert!(
            core::mem::size_of::<$ty>() % 8 == 0 && core::mem::align_of::<$ty>() >= 8
        );
        // SAFETY: plain integers, byte arrays and bools, for which zero is valid; size and
        // alignment checked just above.
        unsafe impl $crate::zeroed::Zeroable for $ty {}
        impl Default for $ty {
            #[inline(always)]
            fn default() -> Self {
                <Self as $crate::zeroed::Zeroable>::zeroed()
            }
        }
    )*};
}
pub(crate) use zeroable;
