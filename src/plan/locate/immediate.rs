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
