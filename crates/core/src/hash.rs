//! The one stable hash pwt uses for everything derived from names.
//!
//! FNV-1a (64 bit) over the raw bytes: tiny, fast, and identical on every platform and Rust
//! version, unlike `std`'s `DefaultHasher`, whose output may change between releases. The
//! golden values in the tests pin it: a changed value would move every user's ports.

const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a 64 of `bytes`.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(OFFSET, |h, b| (h ^ u64::from(*b)).wrapping_mul(PRIME))
}

/// FNV-1a 64 over several parts, each followed by a NUL so that `("ab", "c")` and
/// `("a", "bc")` hash differently.
pub fn stable_hash_parts(parts: &[&[u8]]) -> u64 {
    let mut h = OFFSET;
    for part in parts {
        for b in part.iter().chain(std::iter::once(&0u8)) {
            h = (h ^ u64::from(*b)).wrapping_mul(PRIME);
        }
    }
    h
}

/// [`stable_hash`] with every input bit spread over every output bit (the splitmix64
/// finalizer): FNV-1a alone changes only a few of its top bits when just the last byte
/// changes, so two names differing at their end would get hashes differing in one digit.
/// For hashes that are new; the ones already stored in users' names stay [`stable_hash`].
pub fn mixed_hash(bytes: &[u8]) -> u64 {
    let mut z = stable_hash(bytes);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The first `len` lowercase hex digits of the hash (at most 16).
pub fn hex_prefix(hash: u64, len: usize) -> String {
    let full = format!("{hash:016x}");
    full[..len.min(16)].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixed_hash_spreads_a_last_byte_change_over_the_digits() {
        let a = hex_prefix(mixed_hash(b"customer-portal-q1"), 8);
        let b = hex_prefix(mixed_hash(b"customer-portal-q2"), 8);
        let same = a.chars().zip(b.chars()).filter(|(x, y)| x == y).count();
        assert!(same <= 3, "{a} and {b} share {same} of 8 digits");
        // Pinned: a changed value would rename users' databases.
        assert_eq!(format!("{:016x}", mixed_hash(b"pwt")), "d9fa97bca856283d");
    }

    #[test]
    fn golden_values() {
        // Published FNV-1a 64 test vectors.
        assert_eq!(stable_hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(stable_hash(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(stable_hash(b"foobar"), 0x8594_4171_f739_67e8);
        // pwt's own uses.
        assert_eq!(hex_prefix(stable_hash("🚀".as_bytes()), 6), "ff06d3");
        assert_eq!(stable_hash_parts(&[b"ab", b"c"]), 0xad22_872f_536e_4705);
        assert_ne!(
            stable_hash_parts(&[b"ab", b"c"]),
            stable_hash_parts(&[b"a", b"bc"])
        );
    }
}
