//! Backup ids and their claims: an id no other run can take
//! (`claims/<id>.json`, created once), and the sweep that clears what
//! killed runs left behind once their process is provably gone.

use chrono::Utc;

use super::BackupError;
use crate::capture::owner::Owner;
use crate::catalog::BackupClaim;
use crate::repo::store::{PutMode, StoreError};
use crate::repo::{layout, Repo, RepoError, KIND_CLAIM};

/// A claim on `id` by this process (who it is, to tell later whether it
/// is provably gone).
pub(crate) fn this_process(id: &str) -> BackupClaim {
    let owner = Owner::current();
    BackupClaim {
        id: id.to_string(),
        started_at: Utc::now(),
        boot_id: owner
            .as_ref()
            .map(|o| o.boot_id.clone())
            .unwrap_or_default(),
        hostname: owner
            .as_ref()
            .map(|o| o.hostname.clone())
            .unwrap_or_default(),
        pid: std::process::id(),
        pid_start: owner.as_ref().map(|o| o.pid_start).unwrap_or_default(),
    }
}

/// The process that holds `claim`.
pub(crate) fn owner_of(claim: &BackupClaim) -> Owner {
    Owner {
        boot_id: claim.boot_id.clone(),
        hostname: claim.hostname.clone(),
        pid: claim.pid,
        pid_start: claim.pid_start,
    }
}

/// Takes an id no other run can take (`claims/<id>.json`, created once):
/// `base`, else `base-<pid>`, else `base-<pid>-<k>`. An id whose record or
/// objects already exist (a backup from before claims) is skipped too.
pub(crate) async fn claim_id(repo: &Repo, base: &str) -> Result<String, BackupError> {
    let pid = std::process::id();
    let candidates = std::iter::once(base.to_string())
        .chain(std::iter::once(format!("{base}-{pid}")))
        .chain((1..=20).map(|k| format!("{base}-{pid}-{k}")));
    for id in candidates {
        if repo
            .store()
            .head(&layout::backup_record(&id)?)
            .await?
            .is_some()
            || !repo
                .store()
                .list(&layout::backup_dir(&id)?)
                .await?
                .is_empty()
        {
            continue;
        }
        let claim = this_process(&id);
        match repo
            .put_meta(
                &layout::backup_claim(&id)?,
                KIND_CLAIM,
                &claim,
                PutMode::Create,
            )
            .await
        {
            Ok(()) => return Ok(id),
            Err(RepoError::Store(StoreError::AlreadyExists(_))) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(BackupError::NoFreeId(base.to_string()))
}

/// Clears what killed runs left behind: the store's abandoned temporary
/// files, and for every backup claim without a
/// listed backup whose process is provably gone (see `owner`), its objects
/// and then its claim. Claims of listed backups (a run that died between
/// its record and removing its claim) are simply removed. Best effort.
///
/// Only unlisted backups lose objects, and an incremental only ever names
/// a listed parent, so no listed backup's chain can lose a link here; as a
/// second guard, objects that any listed record names as a parent are
/// never removed (`needed`).
pub(crate) async fn sweep_abandoned(repo: &Repo) {
    match repo.store().sweep_abandoned().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(files = n, "removed abandoned temporary files"),
        Err(e) => tracing::warn!(error = %e, "could not sweep abandoned temporary files"),
    }
    let claims = match repo.store().list(layout::CLAIMS_DIR).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "could not list backup claims");
            return;
        }
    };
    if claims.is_empty() {
        return;
    }
    // Every id a listed backup names as its parent (Catalog::dependents
    // asks the same of a whole catalog).
    let needed: std::collections::HashSet<String> = match repo.list_backups().await {
        Ok((listed, _)) => listed
            .iter()
            .filter_map(|b| b.start.parent().map(str::to_string))
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "could not list backups; nothing swept");
            return;
        }
    };
    for meta in claims {
        let claim: BackupClaim = match repo.get_meta(&meta.key, KIND_CLAIM).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, key = %meta.key, "unreadable backup claim left alone");
                continue;
            }
        };
        let swept = async {
            let listed = repo
                .store()
                .head(&layout::backup_record(&claim.id)?)
                .await?
                .is_some();
            let owner = owner_of(&claim);
            if !listed {
                if !owner.provably_gone() || needed.contains(&claim.id) {
                    return Ok::<bool, BackupError>(false);
                }
                repo.store()
                    .delete_prefix(&layout::backup_dir(&claim.id)?)
                    .await?;
            }
            repo.store().delete(&meta.key).await?;
            Ok(!listed)
        }
        .await;
        match swept {
            Ok(true) => tracing::info!(id = claim.id, "removed an abandoned backup"),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, id = claim.id, "could not remove an abandoned backup")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::catalog::StartKind;
    use crate::repo::store::MemoryStore;
    use crate::repo::{RepoLocation, KIND_BACKUP};

    async fn abandoned(repo: &Repo, id: &str, pid: u32) {
        let owner = Owner::current().expect("/proc is readable here");
        let claim = BackupClaim {
            id: id.into(),
            started_at: Utc::now(),
            boot_id: owner.boot_id,
            hostname: owner.hostname,
            pid,
            pid_start: 0,
        };
        repo.put_meta(
            &layout::backup_claim(id).unwrap(),
            KIND_CLAIM,
            &claim,
            PutMode::Create,
        )
        .await
        .unwrap();
        repo.store()
            .put(
                &layout::backup_file(id, 0).unwrap(),
                b"data",
                PutMode::Create,
            )
            .await
            .unwrap();
    }

    /// The sweep removes an unlisted backup whose run is provably gone,
    /// but never the objects a listed backup names as its parent.
    #[tokio::test]
    async fn the_sweep_never_removes_what_a_listed_backup_needs() {
        let repo = Repo::with_store(
            RepoLocation::Local("/nonexistent".into()),
            Arc::new(MemoryStore::new()),
        );
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        abandoned(&repo, "parent", pid).await;
        abandoned(&repo, "orphan", pid).await;
        let mut listed = crate::plan::testkit::Kit::new()
            .backup("child", 1, 4, 1)
            .build()
            .backups
            .remove(0);
        listed.start = StartKind::Incremental {
            parent: "parent".into(),
            changed_bytes: 1,
        };
        repo.put_meta_at(
            &layout::backup_record("child").unwrap(),
            KIND_BACKUP,
            &listed,
            PutMode::Create,
            3,
        )
        .await
        .unwrap();

        sweep_abandoned(&repo).await;
        let left = |id: &str| {
            let repo = repo.clone();
            let key = layout::backup_file(id, 0).unwrap();
            async move { repo.store().head(&key).await.unwrap().is_some() }
        };
        assert!(left("parent").await, "a listed backup's parent was swept");
        assert!(!left("orphan").await, "an abandoned backup was left");
    }
}
