//! The `tablespace_map` file: one line per tablespace, `<oid> <path>\n`,
//! as `pg_backup_stop` returns it (`spcmapfile`) and as recovery reads it
//! at start to recreate the `pg_tblspc/<oid>` links (xlogrecovery.c:
//! read_tablespace_map; xlog.c: do_pg_backup_start writes it).
//!
//! Escaping differs by major. From PostgreSQL 15 the writer puts a
//! backslash before `\n`, `\r` and `\` in a path and the reader takes any
//! character after a backslash literally; an unterminated last line is an
//! error. Before 15 only `\n` and `\r` are escaped, a backslash before
//! anything else is kept as it is. Empty lines (a `\r\n` pair) are
//! skipped by both.

use std::path::PathBuf;

use super::PgMajor;

/// One tablespace: its OID (the name of its `pg_tblspc` link) and the
/// directory the link points to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TablespaceLink {
    pub oid: u32,
    pub path: PathBuf,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MapError {
    #[error("tablespace_map line {line}: expected \"<oid> <path>\", found {text:?}")]
    Line { line: usize, text: String },
    #[error("tablespace_map: the last line is not terminated")]
    Unterminated,
    #[error("tablespace_map: path {0:?} is not valid UTF-8 or not absolute")]
    Path(String),
}

/// Whether paths escape backslashes (PostgreSQL 15 and later).
fn escapes_backslash(major: PgMajor) -> bool {
    major.get() >= 15
}

/// Reads a `tablespace_map` as `major`'s recovery would.
pub fn parse(text: &str, major: PgMajor) -> Result<Vec<TablespaceLink>, MapError> {
    let new = escapes_backslash(major);
    let mut out = Vec::new();
    let mut line = String::new();
    let mut lines = 0;
    let mut was_backslash = false;
    for ch in text.chars() {
        if (ch == '\n' || ch == '\r') && !was_backslash {
            if line.is_empty() {
                continue;
            }
            lines += 1;
            out.push(entry(&line, lines)?);
            line.clear();
            continue;
        }
        if new {
            if !was_backslash && ch == '\\' {
                was_backslash = true;
            } else {
                line.push(ch);
                was_backslash = false;
            }
        } else if (ch == '\n' || ch == '\r') && was_backslash {
            // The backslash was the escape: the newline replaces it.
            line.pop();
            line.push(ch);
            was_backslash = false;
        } else {
            line.push(ch);
            was_backslash = ch == '\\';
        }
    }
    if !line.is_empty() || (new && was_backslash) {
        return Err(MapError::Unterminated);
    }
    Ok(out)
}

fn entry(line: &str, n: usize) -> Result<TablespaceLink, MapError> {
    let bad = || MapError::Line {
        line: n,
        text: line.to_string(),
    };
    let (oid, path) = line.split_once(' ').ok_or_else(bad)?;
    let oid: u32 = oid.parse().map_err(|_| bad())?;
    if path.is_empty() {
        return Err(bad());
    }
    let path = PathBuf::from(path);
    if !path.is_absolute() {
        return Err(MapError::Path(line.to_string()));
    }
    Ok(TablespaceLink { oid, path })
}

/// Writes `links` as `major`'s `pg_backup_stop` would.
pub fn render(links: &[TablespaceLink], major: PgMajor) -> Result<String, MapError> {
    let new = escapes_backslash(major);
    let mut out = String::new();
    for l in links {
        let path = l
            .path
            .to_str()
            .ok_or_else(|| MapError::Path(l.path.display().to_string()))?;
        // Before 15 a backslash ending a path reads as escaping the line's
        // end: such a path cannot be written.
        if !new && path.ends_with('\\') {
            return Err(MapError::Path(path.to_string()));
        }
        out.push_str(&l.oid.to_string());
        out.push(' ');
        for ch in path.chars() {
            if ch == '\n' || ch == '\r' || (new && ch == '\\') {
                out.push('\\');
            }
            out.push(ch);
        }
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn major(m: u32) -> PgMajor {
        PgMajor::new(m).unwrap()
    }

    /// What PostgreSQL 15's pg_backup_stop returned for a cluster with two
    /// tablespaces (testdata/make-tablespace-map-fixture.sh made it).
    #[test]
    fn reads_the_map_pg_backup_stop_returned() {
        let text = include_str!("../../testdata/pg15/tablespace_map");
        let links = parse(text, major(15)).unwrap();
        assert_eq!(links.len(), 2, "{text:?}");
        assert!(links[0].path.ends_with("ts one"), "{links:?}");
        assert!(
            links[1].path.to_str().unwrap().ends_with("ts\\two"),
            "{links:?}"
        );
        // And writes it back byte for byte.
        assert_eq!(render(&links, major(15)).unwrap(), text);
    }

    #[test]
    fn escapes_round_trip_per_major() {
        let links = vec![
            TablespaceLink {
                oid: 16384,
                path: PathBuf::from("/srv/a b"),
            },
            TablespaceLink {
                oid: 16385,
                path: PathBuf::from("/srv/new\nline\\back"),
            },
        ];
        let text15 = render(&links, major(15)).unwrap();
        assert_eq!(text15, "16384 /srv/a b\n16385 /srv/new\\\nline\\\\back\n");
        assert_eq!(parse(&text15, major(15)).unwrap(), links);
        let text14 = render(&links, major(14)).unwrap();
        assert_eq!(text14, "16384 /srv/a b\n16385 /srv/new\\\nline\\back\n");
        assert_eq!(parse(&text14, major(14)).unwrap(), links);
        let trailing = [TablespaceLink {
            oid: 1,
            path: PathBuf::from("/srv/x\\"),
        }];
        assert!(render(&trailing, major(14)).is_err());
        assert_eq!(
            parse(&render(&trailing, major(15)).unwrap(), major(15)).unwrap(),
            trailing
        );
        // \r\n line ends and empty maps.
        assert_eq!(
            parse("16384 /srv/a b\r\n", major(15)).unwrap(),
            links[..1].to_vec()
        );
        assert_eq!(parse("", major(15)).unwrap(), vec![]);
    }

    #[test]
    fn refuses_what_recovery_refuses() {
        let m = major(15);
        assert!(matches!(
            parse("16384\n", m),
            Err(MapError::Line { line: 1, .. })
        ));
        assert!(matches!(parse("x /a\n", m), Err(MapError::Line { .. })));
        assert!(matches!(parse("1 \n", m), Err(MapError::Line { .. })));
        assert_eq!(parse("1 /a", m), Err(MapError::Unterminated));
        assert_eq!(parse("1 /a\\", m), Err(MapError::Unterminated));
        assert!(matches!(parse("1 rel\n", m), Err(MapError::Path(_))));
    }
}
