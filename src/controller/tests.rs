use super::*;

fn no_configs() -> BTreeMap<String, String> {
    BTreeMap::new()
}

#[test]
fn partitions_spread_round_robin_across_topics() {
    let meta = ClusterMetadata::new_cluster();
    let meta = meta.create_topic("a", 3, no_configs(), 2).unwrap();
    let meta = meta.create_topic("b", 2, no_configs(), 2).unwrap();
    let shards =
        |t: &str| -> Vec<usize> { meta.topics[t].partitions.iter().map(|p| p.shard).collect() };
    assert_eq!(shards("a"), vec![0, 1, 0]);
    assert_eq!(shards("b"), vec![1, 0]);
    assert_eq!(meta.shard_of("b", 1), Some(0));
    assert_eq!(meta.shard_of("b", 2), None);
    assert_eq!(meta.shard_of("b", -1), None);
    assert_eq!(meta.version, 2);
}

#[test]
fn create_refuses_bad_names_counts_and_duplicates() {
    let meta = ClusterMetadata::new_cluster().create_topic("t", 1, no_configs(), 1).unwrap();
    let code = |r: Result<ClusterMetadata, ControlError>| r.unwrap_err().code;
    assert_eq!(code(meta.create_topic("t", 1, no_configs(), 1)), E::TopicAlreadyExists.code());
    assert_eq!(code(meta.create_topic("a/b", 1, no_configs(), 1)), E::InvalidTopicException.code());
    assert_eq!(code(meta.create_topic("..", 1, no_configs(), 1)), E::InvalidTopicException.code());
    let long = "x".repeat(250);
    assert_eq!(code(meta.create_topic(&long, 1, no_configs(), 1)), E::InvalidTopicException.code());
    assert_eq!(code(meta.create_topic("u", 0, no_configs(), 1)), E::InvalidPartitions.code());
    let bad = BTreeMap::from([("retention.ms".to_string(), "-7".to_string())]);
    assert_eq!(code(meta.create_topic("u", 1, bad, 1)), E::InvalidConfig.code());
}

#[test]
fn add_partitions_only_grows() {
    let meta = ClusterMetadata::new_cluster().create_topic("t", 2, no_configs(), 2).unwrap();
    let grown = meta.add_partitions("t", 5, 2).unwrap();
    assert_eq!(grown.topics["t"].partitions.len(), 5);
    assert_eq!(grown.topics["t"].id, meta.topics["t"].id);
    assert_eq!(meta.add_partitions("t", 2, 2).unwrap_err().code, E::InvalidPartitions.code());
    assert_eq!(
        meta.add_partitions("nope", 3, 2).unwrap_err().code,
        E::UnknownTopicOrPartition.code()
    );
}

#[test]
fn fold_shards_maps_missing_shards() {
    let meta = ClusterMetadata::new_cluster().create_topic("t", 4, no_configs(), 4).unwrap();
    let mut folded = meta.clone();
    assert_eq!(folded.fold_shards(2), 2);
    let shards: Vec<usize> = folded.topics["t"].partitions.iter().map(|p| p.shard).collect();
    assert_eq!(shards, vec![0, 1, 0, 1]);
}

#[test]
fn store_then_load_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let meta = ClusterMetadata::new_cluster().create_topic("t", 3, no_configs(), 1).unwrap();
    let path = dir.path().to_path_buf();
    let stored = meta.clone();
    glommio::LocalExecutorBuilder::default()
        .spawn(move || async move { store(&path, &stored).await })
        .unwrap()
        .join()
        .unwrap()
        .unwrap();
    assert_eq!(load(dir.path()).unwrap(), Some(meta));
    assert_eq!(load(&dir.path().join("nothing")).unwrap(), None);
}
