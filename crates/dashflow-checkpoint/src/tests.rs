use super::*;

#[test]
fn sealed_blobs_open_with_both_codecs() {
    for codec in [Codec::Bincode, Codec::Json] {
        let blob = seal(codec, 7, &("state", 42u64)).unwrap();
        assert_eq!(open::<(String, u64)>(&blob, 7).unwrap(), ("state".to_owned(), 42));
    }
}

#[test]
fn a_blob_of_another_schema_is_a_version_mismatch() {
    let blob = seal(Codec::Bincode, 1, &5u8).unwrap();
    assert!(matches!(open::<u8>(&blob, 2), Err(CheckpointError::VersionMismatch { .. })));
}

#[test]
fn a_blob_of_another_format_version_is_a_version_mismatch() {
    let mut blob = seal(Codec::Bincode, 1, &5u8).unwrap();
    blob[4] = FORMAT_VERSION + 1;
    assert!(matches!(open::<u8>(&blob, 1), Err(CheckpointError::VersionMismatch { .. })));
}

#[test]
fn foreign_bytes_are_corrupt() {
    assert!(matches!(open::<u8>(b"not a checkpoint", 1), Err(CheckpointError::Corrupt { .. })));
    assert!(matches!(open::<u8>(b"", 1), Err(CheckpointError::Corrupt { .. })));
}

#[test]
fn a_damaged_payload_is_corrupt_not_garbage() {
    let mut blob = seal(Codec::Bincode, 1, &vec![1u64, 2, 3]).unwrap();
    blob.truncate(blob.len() - 1);
    assert!(matches!(open::<Vec<u64>>(&blob, 1), Err(CheckpointError::Corrupt { .. })));
    let mut blob = seal(Codec::Bincode, 1, &3u8).unwrap();
    blob.push(0);
    assert!(matches!(open::<u8>(&blob, 1), Err(CheckpointError::Corrupt { .. })));
}

#[test]
fn a_huge_length_prefix_is_rejected_without_allocating_it() {
    // A Vec length prefix claiming u64::MAX / 2 elements in a 20-byte blob.
    let mut blob = seal(Codec::Bincode, 1, &0u8).unwrap();
    blob.truncate(14);
    blob.extend_from_slice(&[0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
    assert!(matches!(open::<Vec<u64>>(&blob, 1), Err(CheckpointError::Corrupt { .. })));
}

#[test]
fn checkpoint_ids_increase_and_parse_back() {
    let ids: Vec<CheckpointId> = (0..1000).map(|_| CheckpointId::new()).collect();
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]));
    let parsed: CheckpointId = ids[0].as_str().parse().unwrap();
    assert_eq!(parsed, ids[0]);
    assert!("not-an-id".parse::<CheckpointId>().is_err());
}

#[test]
fn list_options_filter_by_namespace_before_and_metadata() {
    let older = CheckpointId::new();
    let newer = CheckpointId::new();
    let record = CheckpointRecord {
        thread_id: "t".into(),
        namespace: "".into(),
        checkpoint_id: older.clone(),
        parent_id: None,
        step: 0,
        kind: CheckpointKind::Snapshot,
        blob: Vec::new(),
        metadata: [("source".to_owned(), serde_json::json!("loop"))].into_iter().collect(),
        next_nodes: Vec::new(),
        created_at_ms: now_ms(),
    };
    assert!(ListOptions::new().matches(&record));
    assert!(ListOptions::new().before(newer).matches(&record));
    assert!(!ListOptions::new().before(older).matches(&record));
    assert!(ListOptions::new().metadata("source", "loop").matches(&record));
    assert!(!ListOptions::new().metadata("source", "input").matches(&record));
    assert!(!ListOptions::new().namespace("child").matches(&record));
}
