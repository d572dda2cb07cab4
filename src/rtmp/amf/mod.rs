//! AMF0 and AMF3 (Action Message Format) codecs for RTMP command, data and AMF3 ("flex") messages.
//! Sans-IO and allocation-bounded: decoders read byte slices under [`AmfLimits`], encoders append to a `Vec<u8>`.

pub mod amf0;
pub mod amf3;
mod decoder;

pub use amf0::{
    Amf0Value, decode_amf0, decode_amf0_all, decode_amf3_message, encode_amf0, encode_amf0_all,
    encode_amf3_message,
};
pub use amf3::{Amf3Value, decode_amf3, encode_amf3};
pub use decoder::{AmfError, AmfLimits};

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn all_decoders(bytes: &[u8], limits: &AmfLimits) {
        let _ = decode_amf0_all(bytes, limits);
        let _ = decode_amf0(bytes, limits);
        let _ = decode_amf3(bytes, limits);
        let _ = decode_amf3_message(bytes, limits);
    }

    #[test]
    fn empty_input() {
        let l = AmfLimits::default();
        assert_eq!(decode_amf0_all(&[], &l), Ok(vec![]));
        assert_eq!(decode_amf3_message(&[], &l), Ok(vec![]));
        assert_eq!(decode_amf0(&[], &l), Err(AmfError::Truncated));
        assert_eq!(decode_amf3(&[], &l), Err(AmfError::Truncated));
    }

    /// Byte soup biased towards markers, small lengths and reference headers, so that random
    /// inputs reach deep decoder paths instead of failing on the first byte.
    fn amf_soup() -> impl Strategy<Value = Vec<u8>> {
        let byte = prop_oneof![
            4 => 0u8..=0x12,
            2 => any::<u8>(),
            1 => Just(0x80u8),
            1 => Just(0xFFu8),
        ];
        proptest::collection::vec(byte, 0..256)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            all_decoders(&bytes, &AmfLimits::default());
        }

    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn marker_soup_never_panics(bytes in amf_soup()) {
            all_decoders(&bytes, &AmfLimits::default());
            let tight = AmfLimits { max_depth: 3, max_collection_len: 4, max_nodes: 50, max_string_len: 8 };
            all_decoders(&bytes, &tight);
        }

        #[test]
        fn mutated_amf0_never_panics(
            value in amf0::tests::arb_amf0(),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut bytes = encode_amf0_all(std::slice::from_ref(&value));
            for (at, b) in flips {
                let i = at.index(bytes.len());
                bytes[i] = b;
            }
            all_decoders(&bytes, &AmfLimits::default());
            let end = cut.index(bytes.len() + 1);
            all_decoders(&bytes[..end], &AmfLimits::default());
        }

        #[test]
        fn mutated_amf3_never_panics(
            value in amf3::tests::arb_amf3(),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        ) {
            let mut bytes = Vec::new();
            encode_amf3(&value, &mut bytes);
            for (at, b) in flips {
                let i = at.index(bytes.len());
                bytes[i] = b;
            }
            all_decoders(&bytes, &AmfLimits::default());
        }
    }
}
