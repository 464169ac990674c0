//! `StableKey` for the standard library's types. Optional crates live in `impls_ext.rs`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::encoder::{tag, Encoder};
use crate::StableKey;

macro_rules! int_impl {
    ($($t:ty => $tag:expr),* $(,)?) => {$(
        impl StableKey for $t {
            #[inline]
            fn encode(&self, enc: &mut Encoder) {
                let mut b = [0u8; 1 + std::mem::size_of::<$t>()];
                b[0] = $tag;
                b[1..].copy_from_slice(&self.to_le_bytes());
                enc.raw(&b);
            }
        }
    )*};
}

int_impl!(
    u16 => tag::U16, u32 => tag::U32, u64 => tag::U64, u128 => tag::U128,
    i8 => tag::I8, i16 => tag::I16, i32 => tag::I32, i64 => tag::I64, i128 => tag::I128,
);

impl StableKey for u8 {
    #[inline]
    fn encode(&self, enc: &mut Encoder) {
        enc.raw(&[tag::U8, *self]);
    }

    /// Byte sequences are written as one byte string, not as a sequence of tagged `u8`s.
    fn encode_slices(parts: &[&[Self]], enc: &mut Encoder) {
        let n: usize = parts.iter().map(|p| p.len()).sum();
        enc.tag(tag::BYTES);
        enc.len(n);
        for p in parts {
            enc.raw(p);
        }
    }
}

/// `usize` is written exactly like `u64`, so keys do not depend on the platform's word size.
impl StableKey for usize {
    #[inline]
    fn encode(&self, enc: &mut Encoder) {
        (*self as u64).encode(enc);
    }
}

/// `isize` is written exactly like `i64`, so keys do not depend on the platform's word size.
impl StableKey for isize {
    #[inline]
    fn encode(&self, enc: &mut Encoder) {
        (*self as i64).encode(enc);
    }
}

impl StableKey for bool {
    #[inline]
    fn encode(&self, enc: &mut Encoder) {
        enc.raw(&[tag::BOOL, u8::from(*self)]);
    }
}

impl StableKey for char {
    #[inline]
    fn encode(&self, enc: &mut Encoder) {
        let mut b = [0u8; 5];
        b[0] = tag::CHAR;
        b[1..].copy_from_slice(&u32::from(*self).to_le_bytes());
        enc.raw(&b);
    }
}

impl StableKey for f32 {
    #[inline]
    fn encode(&self, enc: &mut Encoder) {
        enc.f32(*self);
    }
}

impl StableKey for f64 {
    #[inline]
    fn encode(&self, enc: &mut Encoder) {
        enc.f64(*self);
    }
}

impl StableKey for str {
    #[inline]
    fn encode(&self, enc: &mut Encoder) {
        enc.str(self);
    }
}

impl StableKey for String {
    #[inline]
    fn encode(&self, enc: &mut Encoder) {
        enc.str(self);
    }
}

impl StableKey for () {
    #[inline]
    fn encode(&self, enc: &mut Encoder) {
        enc.tag(tag::UNIT);
    }
}

impl<T: StableKey> StableKey for Option<T> {
    #[inline]
    fn encode(&self, enc: &mut Encoder) {
        match self {
            None => enc.tag(tag::NONE),
            Some(v) => {
                enc.tag(tag::SOME);
                v.encode(enc);
            }
        }
    }
}

impl<T: StableKey, E: StableKey> StableKey for Result<T, E> {
    fn encode(&self, enc: &mut Encoder) {
        match self {
            Ok(v) => {
                enc.tag(tag::OK);
                v.encode(enc);
            }
            Err(e) => {
                enc.tag(tag::ERR);
                e.encode(enc);
            }
        }
    }
}

impl<T: StableKey> StableKey for [T] {
    #[inline]
    fn encode(&self, enc: &mut Encoder) {
        T::encode_slices(&[self], enc);
    }
}

impl<T: StableKey, const N: usize> StableKey for [T; N] {
    #[inline]
    fn encode(&self, enc: &mut Encoder) {
        T::encode_slices(&[self.as_slice()], enc);
    }
}

impl<T: StableKey> StableKey for Vec<T> {
    #[inline]
    fn encode(&self, enc: &mut Encoder) {
        T::encode_slices(&[self.as_slice()], enc);
    }
}

impl<T: StableKey> StableKey for VecDeque<T> {
    fn encode(&self, enc: &mut Encoder) {
        let (a, b) = self.as_slices();
        T::encode_slices(&[a, b], enc);
    }
}

impl<T: StableKey> StableKey for BTreeSet<T> {
    fn encode(&self, enc: &mut Encoder) {
        enc.set(self.iter());
    }
}

impl<T: StableKey, S> StableKey for HashSet<T, S> {
    fn encode(&self, enc: &mut Encoder) {
        enc.set(self.iter());
    }
}

impl<K: StableKey, V: StableKey> StableKey for BTreeMap<K, V> {
    fn encode(&self, enc: &mut Encoder) {
        enc.map(self.iter());
    }
}

impl<K: StableKey, V: StableKey, S> StableKey for HashMap<K, V, S> {
    fn encode(&self, enc: &mut Encoder) {
        enc.map(self.iter());
    }
}

impl<T: StableKey + ?Sized> StableKey for &T {
    #[inline]
    fn encode(&self, enc: &mut Encoder) {
        (**self).encode(enc);
    }
}

impl<T: StableKey + ?Sized> StableKey for &mut T {
    #[inline]
    fn encode(&self, enc: &mut Encoder) {
        (**self).encode(enc);
    }
}

impl<T: StableKey + ?Sized> StableKey for Box<T> {
    #[inline]
    fn encode(&self, enc: &mut Encoder) {
        (**self).encode(enc);
    }
}

impl<T: StableKey + ?Sized> StableKey for Rc<T> {
    #[inline]
    fn encode(&self, enc: &mut Encoder) {
        (**self).encode(enc);
    }
}

impl<T: StableKey + ?Sized> StableKey for Arc<T> {
    #[inline]
    fn encode(&self, enc: &mut Encoder) {
        (**self).encode(enc);
    }
}

impl<T: StableKey + ToOwned + ?Sized> StableKey for std::borrow::Cow<'_, T> {
    #[inline]
    fn encode(&self, enc: &mut Encoder) {
        (**self).encode(enc);
    }
}

impl StableKey for Duration {
    fn encode(&self, enc: &mut Encoder) {
        let mut b = [0u8; 13];
        b[0] = tag::DURATION;
        b[1..9].copy_from_slice(&self.as_secs().to_le_bytes());
        b[9..].copy_from_slice(&self.subsec_nanos().to_le_bytes());
        enc.raw(&b);
    }
}

impl StableKey for Ipv4Addr {
    fn encode(&self, enc: &mut Encoder) {
        enc.tag(tag::IPV4);
        enc.raw(&self.octets());
    }
}

impl StableKey for Ipv6Addr {
    fn encode(&self, enc: &mut Encoder) {
        enc.tag(tag::IPV6);
        enc.raw(&self.octets());
    }
}

/// An `IpAddr` encodes exactly like the `Ipv4Addr` or `Ipv6Addr` it holds.
impl StableKey for IpAddr {
    fn encode(&self, enc: &mut Encoder) {
        match self {
            IpAddr::V4(a) => a.encode(enc),
            IpAddr::V6(a) => a.encode(enc),
        }
    }
}

macro_rules! tuple_impl {
    ($n:expr; $($name:ident . $idx:tt),+) => {
        impl<$($name: StableKey),+> StableKey for ($($name,)+) {
            fn encode(&self, enc: &mut Encoder) {
                enc.raw(&[tag::TUPLE, $n]);
                $( self.$idx.encode(enc); )+
            }
        }
    };
}

tuple_impl!(1; A.0);
tuple_impl!(2; A.0, B.1);
tuple_impl!(3; A.0, B.1, C.2);
tuple_impl!(4; A.0, B.1, C.2, D.3);
tuple_impl!(5; A.0, B.1, C.2, D.3, E.4);
tuple_impl!(6; A.0, B.1, C.2, D.3, E.4, F.5);
tuple_impl!(7; A.0, B.1, C.2, D.3, E.4, F.5, G.6);
tuple_impl!(8; A.0, B.1, C.2, D.3, E.4, F.5, G.6, H.7);
tuple_impl!(9; A.0, B.1, C.2, D.3, E.4, F.5, G.6, H.7, I.8);
tuple_impl!(10; A.0, B.1, C.2, D.3, E.4, F.5, G.6, H.7, I.8, J.9);
tuple_impl!(11; A.0, B.1, C.2, D.3, E.4, F.5, G.6, H.7, I.8, J.9, K.10);
tuple_impl!(12; A.0, B.1, C.2, D.3, E.4, F.5, G.6, H.7, I.8, J.9, K.10, L.11);
