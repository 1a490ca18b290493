use super::*;

fn framed(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode(payload, &mut out);
    out
}

#[test]
fn an_encoded_record_decodes_to_its_payload() {
    let bytes = framed(b"hello");
    assert_eq!(bytes.len(), HEADER_LEN + 5);
    assert_eq!(&bytes[..4], &5u32.to_le_bytes());
    assert_eq!(&bytes[4..8], &crc32c::crc32c(b"hello").to_le_bytes());
    assert_eq!(decode(&bytes, DEFAULT_MAX_RECORD_SIZE), Decoded::Record(b"hello"));
}

#[test]
fn decode_reads_only_the_first_of_several_frames() {
    let mut bytes = framed(b"one");
    encode(b"two", &mut bytes);
    assert_eq!(decode(&bytes, DEFAULT_MAX_RECORD_SIZE), Decoded::Record(b"one"));
    assert_eq!(decode(&bytes[HEADER_LEN + 3..], DEFAULT_MAX_RECORD_SIZE), Decoded::Record(b"two"));
}

#[test]
fn an_empty_buffer_is_the_end_not_damage() {
    assert_eq!(decode(&[], DEFAULT_MAX_RECORD_SIZE), Decoded::End);
}

#[test]
fn every_header_shorter_than_eight_bytes_is_a_truncated_header() {
    let bytes = framed(b"payload");
    for cut in 1..HEADER_LEN {
        assert_eq!(
            decode(&bytes[..cut], DEFAULT_MAX_RECORD_SIZE),
            Decoded::Damaged(Damage::TruncatedHeader { available: cut as u64 })
        );
    }
}

#[test]
fn every_cut_inside_the_payload_is_a_truncated_payload() {
    let bytes = framed(b"payload");
    for cut in HEADER_LEN..bytes.len() {
        let available = (cut - HEADER_LEN) as u64;
        assert_eq!(
            decode(&bytes[..cut], DEFAULT_MAX_RECORD_SIZE),
            Decoded::Damaged(Damage::TruncatedPayload { len: 7, available })
        );
    }
}

#[test]
fn zero_filled_space_is_damage_rather_than_an_empty_record() {
    // The CRC32C of no bytes is 0, so an all-zero header would otherwise check out.
    assert_eq!(crc32c::crc32c(&[]), 0);
    assert_eq!(decode(&[0; 64], DEFAULT_MAX_RECORD_SIZE), Decoded::Damaged(Damage::ZeroLength));
}

#[test]
fn a_length_above_the_maximum_is_too_large_even_when_the_bytes_exist() {
    let bytes = framed(&[7; 100]);
    assert_eq!(decode(&bytes, 99), Decoded::Damaged(Damage::TooLarge { len: 100, max: 99 }));
    assert_eq!(decode(&bytes, 100), Decoded::Record(&[7; 100]));
}

#[test]
fn a_hostile_length_is_reported_before_the_bytes_are_looked_at() {
    let mut bytes = u32::MAX.to_le_bytes().to_vec();
    bytes.extend_from_slice(&[0xAB; 12]);
    assert_eq!(
        decode(&bytes, DEFAULT_MAX_RECORD_SIZE),
        Decoded::Damaged(Damage::TooLarge { len: u32::MAX, max: DEFAULT_MAX_RECORD_SIZE })
    );
}

#[test]
fn any_flipped_bit_is_damage() {
    let bytes = framed(b"some payload");
    for bit in 0..bytes.len() * 8 {
        let mut damaged = bytes.clone();
        damaged[bit / 8] ^= 1 << (bit % 8);
        assert!(
            matches!(decode(&damaged, DEFAULT_MAX_RECORD_SIZE), Decoded::Damaged(_)),
            "bit {bit} flipped went unnoticed"
        );
    }
}

#[test]
fn damage_says_what_is_wrong() {
    let cases = [
        (Damage::TruncatedHeader { available: 3 }, "only 3 of the 8 header bytes"),
        (Damage::TruncatedPayload { len: 10, available: 4 }, "announces 10 payload bytes but only 4"),
        (Damage::ZeroLength, "zero"),
        (Damage::TooLarge { len: 9, max: 8 }, "maximum record size of 8"),
        (Damage::Checksum { stored: 1, computed: 2 }, "checksum mismatch"),
    ];
    for (damage, text) in cases {
        assert!(damage.to_string().contains(text), "{damage}");
    }
    assert!(Damage::TruncatedHeader { available: 0 }.is_truncation());
    assert!(!Damage::ZeroLength.is_truncation());
}
