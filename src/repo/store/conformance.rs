//! The conformance suite every store must pass (`fs`, `s3` on s3s-fs and
//! on moto, `memory`, and `fault` wrapping any of them with no rule set):
//! create-never-replaces, overwrite, not-found, listing under a prefix
//! (the empty prefix: everything),
//! streaming puts large enough to go multipart, streaming reads, deletes.
//! It is test code in the library so that the unit tests (memory, fs,
//! fault) and the end-to-end tests (S3 servers) run the very same checks;
//! it panics with the store's description on the first difference.

use std::sync::Arc;

use tokio::io::AsyncReadExt;

use super::{ObjectKey, PutMode, Store, StoreError};

fn key(s: &str) -> ObjectKey {
    ObjectKey::new(s).expect("the suite's keys are valid")
}

/// Runs every check against `store`, which must start empty.
pub async fn suite(store: Arc<dyn Store>) {
    store.check().await.unwrap();
    let k = key("wal/00000001/000000010000000000000001.zst");
    store.put(&k, b"first", PutMode::Create).await.unwrap();
    match store.put(&k, b"second", PutMode::Create).await {
        Err(StoreError::AlreadyExists(got)) => assert_eq!(got, k),
        other => panic!(
            "{}: create over an existing object: {other:?}",
            store.describe()
        ),
    }
    assert_eq!(store.get(&k).await.unwrap(), b"first");
    store.put(&k, b"third", PutMode::Overwrite).await.unwrap();
    assert_eq!(store.get(&k).await.unwrap(), b"third");
    assert_eq!(store.head(&k).await.unwrap().unwrap().size, 5);

    let missing = key("wal/00000001/nothing");
    assert!(matches!(
        store.get(&missing).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.open_read(&missing).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(store.head(&missing).await.unwrap().is_none());

    // Listing: recursive under the prefix, sorted, nothing outside it.
    for name in [
        "catalog/b/2.json",
        "catalog/a/1.json",
        "catalogue/x",
        "catalog/a/sub/3.json",
    ] {
        store.put(&key(name), b"{}", PutMode::Create).await.unwrap();
    }
    let listed: Vec<String> = store
        .list("catalog")
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key.as_str().to_string())
        .collect();
    assert_eq!(
        listed,
        [
            "catalog/a/1.json",
            "catalog/a/sub/3.json",
            "catalog/b/2.json"
        ]
    );
    assert!(store.list("nothing-here").await.unwrap().is_empty());
    // The empty prefix: the whole store (what an emptiness check reads).
    let all: Vec<String> = store
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key.as_str().to_string())
        .collect();
    assert_eq!(
        all,
        [
            "catalog/a/1.json",
            "catalog/a/sub/3.json",
            "catalog/b/2.json",
            "catalogue/x",
            "wal/00000001/000000010000000000000001.zst",
        ],
        "{}: list of the empty prefix",
        store.describe()
    );

    // A streamed object over two multipart parts, and a small one.
    let big: Vec<u8> = (0..(20u32 << 20) / 4)
        .flat_map(|i| i.wrapping_mul(2654435761).to_le_bytes())
        .collect();
    let bk = key("backups/x/files/0.zst");
    let n = store
        .put_reader(
            &bk,
            Box::new(std::io::Cursor::new(big.clone())),
            PutMode::Overwrite,
        )
        .await
        .unwrap();
    assert_eq!(n, big.len() as u64);
    let mut back = Vec::new();
    store
        .open_read(&bk)
        .await
        .unwrap()
        .read_to_end(&mut back)
        .await
        .unwrap();
    assert!(back == big, "{}: streamed object differs", store.describe());
    let small = key("backups/x/files/1.zst");
    store
        .put_reader(
            &small,
            Box::new(std::io::Cursor::new(b"tiny".to_vec())),
            PutMode::Create,
        )
        .await
        .unwrap();
    assert_eq!(store.get(&small).await.unwrap(), b"tiny");
    assert!(matches!(
        store
            .put_reader(
                &small,
                Box::new(std::io::Cursor::new(b"again".to_vec())),
                PutMode::Create
            )
            .await,
        Err(StoreError::AlreadyExists(_))
    ));

    store.delete(&k).await.unwrap();
    assert!(store.head(&k).await.unwrap().is_none());
    store.delete(&k).await.unwrap(); // deleting what is gone is fine
    store.delete_prefix("backups/x").await.unwrap();
    assert!(store.list("backups").await.unwrap().is_empty());
    assert_eq!(store.list("catalog").await.unwrap().len(), 3);
}
