//! Where a repository is, as the user wrote it: a local path (or
//! `file:///path`) or `s3://BUCKET/PREFIX`, parsed and checked, and written
//! back the same way for the commands pitr hands to Postgres.

use std::path::PathBuf;

use super::store::ObjectKey;
use super::RepoError;

/// Where a repository is, as the user wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RepoLocation {
    Local(PathBuf),
    /// `s3://BUCKET/PREFIX` (prefix may be empty).
    S3 {
        bucket: String,
        prefix: String,
    },
}

impl RepoLocation {
    /// Accepts `/path`, `relative/path`, `file:///path` and
    /// `s3://BUCKET/PREFIX`.
    pub fn parse(s: &str) -> Result<RepoLocation, RepoError> {
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let bucket_ok = (3..=63).contains(&bucket.len())
                && bucket.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'
                });
            let prefix = prefix.trim_matches('/');
            let prefix_ok = prefix.is_empty() || ObjectKey::new(prefix).is_ok();
            if !bucket_ok || !prefix_ok {
                return Err(RepoError::UnsupportedScheme(s.to_string()));
            }
            return Ok(RepoLocation::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.to_string(),
            });
        }
        if let Some(rest) = s.strip_prefix("file://") {
            if !rest.starts_with('/') {
                return Err(RepoError::UnsupportedScheme(s.to_string()));
            }
            return Ok(RepoLocation::Local(PathBuf::from(rest)));
        }
        if s.is_empty() || s.contains("://") {
            return Err(RepoError::UnsupportedScheme(s.to_string()));
        }
        let p = PathBuf::from(s);
        let abs = if p.is_absolute() {
            p
        } else {
            std::env::current_dir().map(|d| d.join(&p)).unwrap_or(p)
        };
        Ok(RepoLocation::Local(abs))
    }

    /// The form to hand to another pitr process (restore_command).
    pub fn to_arg(&self) -> String {
        match self {
            RepoLocation::Local(p) => p.display().to_string(),
            RepoLocation::S3 { bucket, prefix } if prefix.is_empty() => format!("s3://{bucket}"),
            RepoLocation::S3 { bucket, prefix } => format!("s3://{bucket}/{prefix}"),
        }
    }

    pub fn local_path(&self) -> Option<&std::path::Path> {
        match self {
            RepoLocation::Local(p) => Some(p),
            RepoLocation::S3 { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        assert_eq!(
            RepoLocation::parse("file:///srv/repo").unwrap(),
            RepoLocation::Local(PathBuf::from("/srv/repo"))
        );
        assert_eq!(
            RepoLocation::parse("/srv/repo").unwrap().to_arg(),
            "/srv/repo"
        );
        assert_eq!(
            RepoLocation::parse("s3://my-bucket/team/db1/").unwrap(),
            RepoLocation::S3 {
                bucket: "my-bucket".into(),
                prefix: "team/db1".into()
            }
        );
        assert_eq!(
            RepoLocation::parse("s3://my-bucket").unwrap().to_arg(),
            "s3://my-bucket"
        );
        assert!(RepoLocation::parse("s3://B/x").is_err());
        assert!(RepoLocation::parse("s3://bucket/../x").is_err());
        assert!(RepoLocation::parse("gs://bucket/x").is_err());
        assert!(RepoLocation::parse("file://relative").is_err());
        assert!(RepoLocation::parse("").is_err());
        let rel = RepoLocation::parse("some/dir").unwrap();
        assert!(rel.local_path().unwrap().is_absolute());
    }
}
