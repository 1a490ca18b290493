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
fn a_blob_of_a_newer_format_version_is_a_version_mismatch() {
    // A whole blob of a later release: its checksum covers its version byte.
    let mut blob = seal(Codec::Bincode, 1, &5u8).unwrap();
    blob.truncate(blob.len() - 4);
    blob[4] = FORMAT_VERSION + 1;
    let checksum = crc32c::crc32c(&blob);
    blob.extend_from_slice(&checksum.to_le_bytes());
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

/// Seals `value` after its encoding was replaced by `payload`, with a valid checksum: what
/// a buggy or hostile writer could store.
fn reseal(codec: Codec, payload: &[u8]) -> Vec<u8> {
    let mut blob = seal(codec, 1, &()).unwrap();
    blob.truncate(14);
    blob.extend_from_slice(payload);
    let checksum = crc32c::crc32c(&blob);
    blob.extend_from_slice(&checksum.to_le_bytes());
    blob
}

#[test]
fn a_huge_length_prefix_is_rejected_without_allocating_it() {
    // A Vec length prefix claiming u64::MAX / 2 elements in a 23-byte blob.
    let blob = reseal(Codec::Bincode, &[0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
    assert!(matches!(open::<Vec<u64>>(&blob, 1), Err(CheckpointError::Corrupt { .. })));
}

#[test]
fn a_changed_byte_at_any_offset_is_corrupt_never_a_value() {
    let value = ("the ticket says refund".to_owned(), vec![1u32, 2, 3], Some(7u8));
    for codec in [Codec::Bincode, Codec::Json] {
        let blob = seal(codec, 0xfeed, &value).unwrap();
        for offset in 0..blob.len() {
            for mask in [0x01, 0x80, 0xff] {
                let mut damaged = blob.clone();
                damaged[offset] ^= mask;
                match open::<(String, Vec<u32>, Option<u8>)>(&damaged, 0xfeed) {
                    Err(CheckpointError::Corrupt { .. }) => {}
                    other => panic!("{codec:?}, byte {offset} ^ {mask:#x}: {other:?}"),
                }
            }
        }
    }
}

#[test]
fn a_cut_or_extended_blob_is_corrupt() {
    let blob = seal(Codec::Bincode, 3, &vec![5u64; 10]).unwrap();
    for len in 0..blob.len() {
        assert!(matches!(open::<Vec<u64>>(&blob[..len], 3), Err(CheckpointError::Corrupt { .. })), "cut at {len}");
    }
    let mut longer = blob.clone();
    longer.push(0);
    assert!(matches!(open::<Vec<u64>>(&longer, 3), Err(CheckpointError::Corrupt { .. })));
}

#[test]
fn a_blob_of_the_previous_format_version_is_a_version_mismatch_naming_it() {
    // Version 2: magic, version, codec, schema hash, payload; no checksum.
    let mut blob = MAGIC.to_vec();
    blob.extend_from_slice(&[2, Codec::Bincode.id()]);
    blob.extend_from_slice(&1u64.to_le_bytes());
    blob.push(5);
    let error = open::<u8>(&blob, 1).unwrap_err();
    assert!(matches!(error, CheckpointError::VersionMismatch { .. }), "{error}");
    assert!(error.to_string().contains("version 2"), "{error}");
}

#[test]
fn a_changed_version_byte_is_corrupt_not_an_older_version() {
    let mut blob = seal(Codec::Bincode, 1, &5u8).unwrap();
    blob[4] = FORMAT_VERSION - 1;
    assert!(matches!(open::<u8>(&blob, 1), Err(CheckpointError::Corrupt { .. })));
}

#[test]
fn errors_name_the_blob_they_are_about() {
    let mut blob = seal(Codec::Json, 1, &5u8).unwrap();
    blob[16] ^= 1;
    let id = CheckpointId::new();
    let error = open::<u8>(&blob, 1).unwrap_err().at(|| BlobLocation::pending_write("t-1", "ns", &id, "1:a:0#output"));
    let location = error.location().unwrap();
    assert_eq!((location.thread_id.as_str(), &location.checkpoint_id), ("t-1", &id));
    let message = error.to_string();
    assert!(message.contains(&format!("checkpoint {id} of thread `t-1` (namespace `ns`)")), "{message}");
    assert!(message.contains("pending write `1:a:0#output`"), "{message}");
    // A location once set is kept.
    let other = CheckpointId::new();
    let again = error.at(|| BlobLocation::checkpoint("t-2", "", &other));
    assert_eq!(again.location().unwrap().thread_id, "t-1");
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
fn checkpoint_ids_are_stored_as_their_26_characters_and_read_back_only_when_valid() {
    let id = CheckpointId::new();
    assert_eq!(id.as_str().len(), 26);
    assert_eq!(id.to_string(), id.as_str());
    assert_eq!(format!("{id:?}"), format!("CheckpointId({:?})", id.as_str()));
    // JSON and the binary codec hold the characters as a string, as they always have.
    let json = serde_json::to_string(&id).unwrap();
    assert_eq!(json, format!("\"{id}\""));
    assert_eq!(serde_json::from_str::<CheckpointId>(&json).unwrap(), id);
    let config = bincode::config::standard();
    let binary = bincode::serde::encode_to_vec(&id, config).unwrap();
    assert_eq!(binary, bincode::serde::encode_to_vec(id.as_str(), config).unwrap());
    let (decoded, _): (CheckpointId, usize) = bincode::serde::decode_from_slice(&binary, config).unwrap();
    assert_eq!(decoded, id);
    // A string that is no id is an error naming it, not an id.
    let error = serde_json::from_str::<CheckpointId>("\"c1\"").unwrap_err().to_string();
    assert!(error.contains("`c1` is not a checkpoint id"), "{error}");
    assert!(serde_json::from_str::<CheckpointId>("7").is_err());
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

/// A checkpointer that stores nothing and counts the calls that reach it, overriding two of
/// the optional operations.
#[derive(Debug, Default)]
struct Counting {
    calls: std::sync::atomic::AtomicUsize,
}

impl Counting {
    fn called(&self) -> Result<()> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
}

#[async_trait::async_trait]
impl Checkpointer for Counting {
    async fn put(&self, _: CheckpointRecord, _: Option<&CheckpointId>) -> Result<()> {
        self.called()
    }
    async fn put_writes(&self, _: &str, _: &str, _: &CheckpointId, _: Vec<PendingWrite>) -> Result<()> {
        self.called()
    }
    async fn load(&self, _: &str, _: &str, _: Option<&CheckpointId>) -> Result<Option<LoadedCheckpoint>> {
        self.called().map(|()| None)
    }
    async fn list(&self, _: &str, _: &ListOptions) -> Result<Vec<CheckpointRecord>> {
        self.called().map(|()| Vec::new())
    }
    async fn delete_thread(&self, _: &str) -> Result<()> {
        self.called()
    }
    async fn copy_thread(&self, _: &str, _: &str) -> Result<()> {
        self.called()
    }
    async fn delete_before(&self, _: &str, _: &str, _: &CheckpointId) -> Result<u64> {
        self.called().map(|()| 0)
    }
    async fn delete_idle_threads(&self, _: i64) -> Result<Vec<String>> {
        self.called().map(|()| Vec::new())
    }
    async fn rewrite_as_snapshot(&self, _: &str, _: &str, _: &CheckpointId, _: Vec<u8>) -> Result<()> {
        self.called()
    }
    async fn list_threads(&self, _: &ThreadListOptions) -> Result<Vec<ThreadSummary>> {
        self.called().map(|()| Vec::new())
    }
    fn writes_without_io(&self) -> bool {
        true
    }
}

/// Calls every operation once through `checkpointer`.
async fn call_everything(checkpointer: &impl Checkpointer) -> Vec<Result<(), CheckpointError>> {
    let id = CheckpointId::new();
    vec![
        checkpointer.put_batch(Vec::new()).await,
        checkpointer.put_writes("t", "", &id, Vec::new()).await,
        checkpointer.load("t", "", None).await.map(drop),
        checkpointer.list("t", &ListOptions::new()).await.map(drop),
        checkpointer.delete_thread("t").await,
        checkpointer.copy_thread("t", "u").await,
        checkpointer.delete_before("t", "", &id).await.map(drop),
        checkpointer.delete_idle_threads(0).await.map(drop),
        checkpointer.rewrite_as_snapshot("t", "", &id, Vec::new()).await,
        checkpointer.delete_namespace("t", "child").await.map(drop),
        checkpointer.put_schema(1, Vec::new()).await,
        checkpointer.get_schema(1).await.map(drop),
        checkpointer.list_threads(&ThreadListOptions::new()).await.map(drop),
    ]
}

#[tokio::test]
async fn an_arc_forwards_every_operation_to_the_shared_checkpointer_overrides_included() {
    let shared = std::sync::Arc::new(Counting::default());
    let as_dyn: std::sync::Arc<dyn Checkpointer> = shared.clone();
    for results in [call_everything(&shared).await, call_everything(&as_dyn).await] {
        let unsupported: Vec<_> = results
            .iter()
            .filter_map(|result| match result {
                Err(CheckpointError::NotSupported { operation }) => Some(*operation),
                _ => None,
            })
            .collect();
        // The three operations `Counting` keeps the default of stay unsupported; the two it
        // overrides reach it through the `Arc`.
        assert_eq!(unsupported, ["delete_namespace", "put_schema", "get_schema"]);
    }
    // put_batch of nothing calls nothing: 9 counted calls per pass, two passes.
    assert_eq!(shared.calls.load(std::sync::atomic::Ordering::Relaxed), 18);
    // A property the shared checkpointer overrides is its own through the `Arc` too.
    assert!(shared.writes_without_io() && as_dyn.writes_without_io());
}

#[test]
fn thread_list_options_filter_order_and_page() {
    let summary = |id: &str, at: i64, source: &str| {
        let metadata = Metadata::from([("source".to_owned(), serde_json::json!(source))]);
        ThreadSummary::new(id.to_owned(), at, CheckpointId::new(), 1, metadata, 2)
    };
    let threads = vec![
        summary("a-1", 10, "input"),
        summary("a-2", 30, "loop"),
        summary("b-1", 20, "loop"),
        summary("a-3", 30, "loop"),
    ];
    let ids = |options: &ThreadListOptions| -> Vec<String> {
        options.apply(threads.clone()).into_iter().map(|thread| thread.thread_id).collect()
    };
    assert_eq!(ids(&ThreadListOptions::new()), ["a-3", "a-2", "b-1", "a-1"]);
    assert_eq!(ids(&ThreadListOptions::new().prefix("a-")), ["a-3", "a-2", "a-1"]);
    assert_eq!(ids(&ThreadListOptions::new().updated_since_ms(20).updated_before_ms(30)), ["b-1"]);
    assert_eq!(ids(&ThreadListOptions::new().metadata("source", "loop").limit(2)), ["a-3", "a-2"]);
    let first = ThreadListOptions::new().limit(2).apply(threads.clone());
    let next = ThreadListOptions::new().limit(2).after(first[1].cursor());
    assert_eq!(ids(&next), ["b-1", "a-1"]);
    let cursor: ThreadCursor = first[1].cursor().to_string().parse().unwrap();
    assert_eq!(cursor, first[1].cursor());
    assert!("no-colon".parse::<ThreadCursor>().unwrap_err().to_string().contains("updated_at_ms"));
    assert!("x:t".parse::<ThreadCursor>().is_err());
}
