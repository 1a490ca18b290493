#![allow(clippy::unwrap_used, reason = "tests")]

use std::hash::{BuildHasher, BuildHasherDefault};

use super::{RunIdHasher, RunIdMap};
use crate::RunId;

#[test]
fn a_run_id_hashes_to_its_random_low_bits() {
    let id = RunId::from_u128(0x0123_4567_89ab_cdef_fedc_ba98_7654_3210);
    assert_eq!(BuildHasherDefault::<RunIdHasher>::default().hash_one(id), 0xfedc_ba98_7654_3210);
}

#[test]
fn ids_made_one_after_another_stay_apart_in_a_map() {
    let ids: Vec<RunId> = (0..1000).map(|_| RunId::new()).collect();
    let mut map = RunIdMap::default();
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(map.insert(*id, i), None);
    }
    assert_eq!(map.len(), ids.len());
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(map[id], i);
    }
}
