use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A 32-byte WireGuard key (private, public or preshared), base64 on the wire and in files.
///
/// `Debug` never prints the bytes, so a key cannot leak into a log by accident, and the bytes
/// are wiped (`zeroize`) when a key is dropped, so a private key does not linger in freed
/// memory (a core dump, a swapped page) after its tunnel is gone.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Key(pub [u8; 32]);

impl Drop for Key {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("not valid base64")]
    Base64,
    #[error("decodes to {0} bytes; a WireGuard key is 32 bytes (44 base64 characters)")]
    Length(usize),
}

impl Key {
    pub fn from_base64(s: &str) -> Result<Key, KeyError> {
        let bytes = STANDARD.decode(s.trim()).map_err(|_| KeyError::Base64)?;
        let arr: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::Length(bytes.len()))?;
        Ok(Key(arr))
    }

    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    pub fn is_zero(&self) -> bool {
        self.0.iter().all(|b| *b == 0)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Serialize for Key {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_base64())
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        let s = String::deserialize(d)?;
        Key::from_base64(&s).map_err(serde::de::Error::custom)
    }
}

/// In TypeScript a key is its base64 text, as it is serialized.
#[cfg(feature = "ts")]
impl ts_rs::TS for Key {
    type WithoutGenerics = Self;
    type OptionInnerType = Self;

    fn name(_: &ts_rs::Config) -> String {
        "string".into()
    }

    fn inline(cfg: &ts_rs::Config) -> String {
        Self::name(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_round_trips_through_base64() {
        let k = Key([7; 32]);
        assert_eq!(Key::from_base64(&k.to_base64()).unwrap(), k);
    }

    #[test]
    fn short_key_is_rejected_with_its_length() {
        assert_eq!(Key::from_base64("AAAA"), Err(KeyError::Length(3)));
        assert_eq!(Key::from_base64("!!"), Err(KeyError::Base64));
    }

    #[test]
    fn debug_never_prints_key_material() {
        assert_eq!(format!("{:?}", Key([1; 32])), "Key(..)");
        let mut c = crate::TunnelConfig::example();
        c.private_key = Key([0x5a; 32]);
        let secret = c.private_key.to_base64();
        let text = format!("{c:?} {c:#?}");
        assert!(
            !text.contains(&secret) && !text.contains("90, 90, 90"),
            "{text}"
        );
    }

    #[test]
    fn a_dropped_key_is_wiped() {
        let mut k = std::mem::ManuallyDrop::new(Key([0x5a; 32]));
        // SAFETY: dropped once, in place; the storage stays owned by the ManuallyDrop, and
        // [u8; 32] has no invalid bit patterns to read afterwards.
        unsafe { std::ptr::drop_in_place(&mut *k) };
        assert_eq!(k.0, [0; 32]);
    }
}
