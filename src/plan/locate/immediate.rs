//! `--immediate`: recovery stops as soon as the chosen backup is
//! consistent, so the stop is that backup's own consistency point (the
//! route picks the backup first: `route::self_contained`).

use super::{Located, StartBy};
use crate::catalog::BackupRecord;
use crate::plan::timeline::Timeline;
use crate::plan::StopPoint;

pub(in crate::plan) fn locate(line: &Timeline<'_>, chosen: &BackupRecord) -> Located {
    let segno = chosen.stop_lsn.prev_segno(line.size);
    let name = line
        .segment(segno)
        .map(|r| r.name.clone())
        .unwrap_or_default();
    Located {
        segno,
        stop: StopPoint {
            segment: name.clone(),
            description: format!(
                "backup {} becomes consistent at {} in segment {name}: recovery stops there",
                chosen.id, chosen.stop_lsn
            ),
            lsn: Some(chosen.stop_lsn),
            time: Some(chosen.stop_time),
            xid: None,
        },
        start_by: StartBy::Any,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::testkit::{at, lsn, seg_name, tli, Kit};

    #[test]
    fn stops_at_the_backups_consistency_point() {
        let c = Kit::new()
            .segments(1, 1..=6)
            .backup_at("b", 1, 2, 17, 1)
            .build();
        let line = Timeline::new(&c, tli(1)).unwrap();
        let l = locate(&line, &c.backups[0]);
        assert_eq!(l.segno, crate::pg::SegNo::new(2));
        assert_eq!(l.stop.segment, seg_name(1, 2));
        assert_eq!(l.stop.lsn, Some(lsn(2, 0x100)));
        assert_eq!(l.stop.time, Some(at(17)));
        assert_eq!(l.start_by, StartBy::Any);
    }
}
