//! The store conformance suite (`pitr::repo::store::conformance`) against
//! the S3 servers; the unit tests run it against the fs, memory and fault
//! stores.

use std::sync::Arc;

use pitr::repo::store::{conformance::suite, S3Store, Store};

use crate::s3::{runtime, Kind, S3Server};

async fn s3_store(server: &S3Server, bucket: &str, prefix: &str) -> Arc<dyn Store> {
    Arc::new(S3Store::from_client(server.client(), bucket, prefix))
}

#[test]
fn conformance_s3_on_s3s_fs() {
    let server = crate::s3::shared();
    server.create_bucket("conformance");
    runtime().block_on(async {
        suite(s3_store(server, "conformance", "some/prefix").await).await;
        // The same bucket without a prefix sees the prefixed keys under it.
        let root = s3_store(server, "conformance", "").await;
        assert_eq!(root.list("some/prefix/catalog").await.unwrap().len(), 3);
        // Its empty prefix is the whole bucket: what the suite left.
        let all = root.list("").await.unwrap();
        assert_eq!(all.len(), 4, "{all:?}");
        assert!(all
            .iter()
            .all(|m| m.key.as_str().starts_with("some/prefix/")));
    });
}

#[test]
fn conformance_s3_on_moto() {
    let server = S3Server::start(Kind::Moto);
    server.create_bucket("conformance");
    runtime().block_on(async { suite(s3_store(&server, "conformance", "p").await).await });
}
