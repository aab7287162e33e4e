//! Zeroed locals used in place. The BPF target's `memset` is a byte loop, and a zeroed value
//! that is moved compiles back into one; zeroing the final slot word by word avoids both.

/// `zeroed_local!(name: Type)` binds `name: &mut Type` to a zeroed stack slot.
macro_rules! zeroed_local {
    ($name:ident : $ty:ty) => {
        let mut $name = core::mem::MaybeUninit::<$ty>::uninit();
        // SAFETY: a local slot of the right type and alignment, and all-zero bytes are a valid
        // value of every `Zeroable` type.
        let $name = unsafe {
            <$ty as flowd_common::Zeroable>::zero_at($name.as_mut_ptr());
            $name.assume_init_mut()
        };
    };
}
pub(crate) use zeroed_local;
