//! Tablespaces on restore: every tablespace the backup carries (its
//! manifest's `tablespace_map`, `<oid> <path>` lines) goes back where it
//! was, or where `--tablespace-map OLD=NEW` says. Before anything is
//! fetched, `plan` refuses a target directory that exists and is not
//! empty (naming it and the flag), a mapping the backup has no
//! tablespace for, and two tablespaces sharing one directory. `create`
//! then makes each directory (0700, by the user pitr runs as: as root,
//! the CLI created mapped ones for `--os-user` before giving up root) and
//! the `pg_tblspc/<oid>` link to it, so the backup's
//! `pg_tblspc/<oid>/PG_…` files are written through the link; the
//! `tablespace_map` written into the data directory names the new
//! locations, because recovery recreates the links from it at start
//! (xlogrecovery.c: read_tablespace_map, then remove_tablespace_symlink
//! and symlink for each line).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::pg::tablespace_map::{self, MapError, TablespaceLink};
use crate::pg::PgMajor;

#[derive(Debug, thiserror::Error)]
pub enum TablespaceError {
    #[error("the backup's tablespace_map")]
    Map(#[source] MapError),
    #[error("tablespace {oid} would be restored into {dir}, which exists and is not empty: empty it, or restore the tablespace elsewhere with --tablespace-map {old}=NEW_DIR")]
    NotEmpty { oid: u32, dir: String, old: String },
    #[error("--tablespace-map {old}=…: the backup has no tablespace at {old} (it has: {has})")]
    Unmapped { old: String, has: String },
    #[error("tablespaces {a} and {b} would both be restored into {dir}: map them to different directories")]
    Shared { a: u32, b: u32, dir: String },
    #[error("--tablespace-map {0:?}: give OLD=NEW, both absolute directories")]
    BadMapping(String),
    #[error("creating tablespace directory {path}")]
    Create {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// `--tablespace-map OLD=NEW` as a pair of absolute paths (the first `=`
/// splits them).
pub fn parse_mapping(text: &str) -> Result<(PathBuf, PathBuf), TablespaceError> {
    let bad = || TablespaceError::BadMapping(text.to_string());
    let (old, new) = text.split_once('=').ok_or_else(bad)?;
    let (old, new) = (PathBuf::from(old), PathBuf::from(new));
    if !old.is_absolute() || !new.is_absolute() {
        return Err(bad());
    }
    Ok((old, new))
}

/// Where each tablespace of the backup goes, checked (see the module
/// comment); nothing is created.
pub fn plan(
    map: Option<&str>,
    major: PgMajor,
    mappings: &[(PathBuf, PathBuf)],
) -> Result<Vec<TablespaceLink>, TablespaceError> {
    let links = match map {
        Some(text) => tablespace_map::parse(text, major).map_err(TablespaceError::Map)?,
        None => Vec::new(),
    };
    for (old, _) in mappings {
        if !links.iter().any(|l| same(&l.path, old)) {
            return Err(TablespaceError::Unmapped {
                old: old.display().to_string(),
                has: if links.is_empty() {
                    "none".into()
                } else {
                    links
                        .iter()
                        .map(|l| l.path.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            });
        }
    }
    let mut out: Vec<TablespaceLink> = Vec::new();
    for l in links {
        let new = mappings
            .iter()
            .rev()
            .find(|(old, _)| same(&l.path, old))
            .map_or_else(|| l.path.clone(), |(_, new)| new.clone());
        if let Some(other) = out.iter().find(|o| same(&o.path, &new)) {
            return Err(TablespaceError::Shared {
                a: other.oid,
                b: l.oid,
                dir: new.display().to_string(),
            });
        }
        let occupied = std::fs::read_dir(&new)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false);
        if occupied {
            return Err(TablespaceError::NotEmpty {
                oid: l.oid,
                dir: new.display().to_string(),
                old: l.path.display().to_string(),
            });
        }
        out.push(TablespaceLink {
            oid: l.oid,
            path: new,
        });
    }
    Ok(out)
}

/// Paths equal once trailing slashes are ignored.
fn same(a: &Path, b: &Path) -> bool {
    a.components().eq(b.components())
}

/// Creates each tablespace directory (0700) and its `pg_tblspc/<oid>`
/// link in `pgdata`.
pub fn create(pgdata: &Path, links: &[TablespaceLink]) -> Result<(), TablespaceError> {
    let err = |path: &Path| {
        let path = path.display().to_string();
        move |source| TablespaceError::Create { path, source }
    };
    let tblspc = pgdata.join("pg_tblspc");
    if !links.is_empty() {
        std::fs::create_dir_all(&tblspc).map_err(err(&tblspc))?;
        std::fs::set_permissions(&tblspc, std::fs::Permissions::from_mode(0o700))
            .map_err(err(&tblspc))?;
    }
    for l in links {
        std::fs::create_dir_all(&l.path).map_err(err(&l.path))?;
        std::fs::set_permissions(&l.path, std::fs::Permissions::from_mode(0o700))
            .map_err(err(&l.path))?;
        let link = tblspc.join(l.oid.to_string());
        std::os::unix::fs::symlink(&l.path, &link).map_err(err(&link))?;
    }
    Ok(())
}

/// The `tablespace_map` naming the new locations.
pub fn render(links: &[TablespaceLink], major: PgMajor) -> Result<String, TablespaceError> {
    tablespace_map::render(links, major).map_err(TablespaceError::Map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m15() -> PgMajor {
        PgMajor::new(15).unwrap()
    }

    #[test]
    fn mappings_move_tablespaces_and_refusals_name_the_directory_and_flag() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a");
        let b = d.path().join("b");
        let map = format!("16384 {}\n16385 {}\n", a.display(), b.display());
        // Neither exists: both go back where they were.
        let links = plan(Some(&map), m15(), &[]).unwrap();
        assert_eq!(links[0].path, a);
        assert_eq!(links[1].path, b);
        // An original that is not empty is refused, naming it and the flag.
        std::fs::create_dir(&a).unwrap();
        std::fs::write(a.join("f"), b"x").unwrap();
        let e = plan(Some(&map), m15(), &[]).unwrap_err().to_string();
        assert!(e.contains(&a.display().to_string()), "{e}");
        assert!(e.contains("--tablespace-map"), "{e}");
        // Mapped elsewhere (an empty existing directory is fine).
        let a2 = d.path().join("a2");
        std::fs::create_dir(&a2).unwrap();
        let links = plan(Some(&map), m15(), &[(a.clone(), a2.clone())]).unwrap();
        assert_eq!(links[0].path, a2);
        // A mapping for no tablespace, and two sharing a directory.
        let e = plan(Some(&map), m15(), &[(d.path().join("zzz"), a2.clone())]).unwrap_err();
        assert!(matches!(e, TablespaceError::Unmapped { .. }), "{e}");
        let e = plan(Some(&map), m15(), &[(a.clone(), b.clone())]).unwrap_err();
        assert!(matches!(e, TablespaceError::Shared { .. }), "{e}");

        // create: the directories and links; the new map names them.
        let pgdata = d.path().join("data");
        std::fs::create_dir(&pgdata).unwrap();
        let links = plan(Some(&map), m15(), &[(a.clone(), a2.clone())]).unwrap();
        create(&pgdata, &links).unwrap();
        assert_eq!(
            std::fs::read_link(pgdata.join("pg_tblspc/16384")).unwrap(),
            a2
        );
        assert_eq!(
            std::fs::read_link(pgdata.join("pg_tblspc/16385")).unwrap(),
            b
        );
        assert!(b.is_dir());
        assert_eq!(
            render(&links, m15()).unwrap(),
            format!("16384 {}\n16385 {}\n", a2.display(), b.display())
        );
    }

    #[test]
    fn mapping_flag_needs_two_absolute_paths() {
        assert_eq!(
            parse_mapping("/old/ts=/new/ts").unwrap(),
            (PathBuf::from("/old/ts"), PathBuf::from("/new/ts"))
        );
        for bad in ["/old", "old=/new", "/old=new", "=/new", "/old="] {
            assert!(parse_mapping(bad).is_err(), "{bad}");
        }
    }
}
