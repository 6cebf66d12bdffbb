//! A schedule's trigger computed on this machine, with the controller's own
//! code (`baton_controller::trigger`): the offline preview of
//! `schedule next --cron ..` and the local times of `show` and `history`.

use baton_controller::trigger::{Error, Trigger};
use baton_proto::schedule::{NextList, ScheduleSpec};
use chrono::{DateTime, Utc};

use crate::render_schedule::utc;

/// Up to `count` occurrences of `spec` at or after `from` (an interval
/// without an anchor or start is anchored at `from`).
pub fn preview(spec: &ScheduleSpec, from: DateTime<Utc>, count: usize) -> Result<NextList, Error> {
    let from_ms = from.timestamp_millis();
    let trigger = Trigger::new(spec, from_ms)?;
    Ok(NextList {
        tz: trigger.tz_name().to_owned(),
        occurrences: trigger.preview(&spec.name, from_ms.saturating_sub(1), count),
    })
}

/// Writes instants in the zone of `spec`; in UTC if the spec does not
/// build a trigger here (an older controller's definition).
pub fn local_writer(
    spec: &ScheduleSpec,
    created: DateTime<Utc>,
) -> Box<dyn Fn(DateTime<Utc>) -> String> {
    match Trigger::new(spec, created.timestamp_millis()) {
        // To the second, as the UTC column (a manual occurrence's nominal
        // time carries milliseconds).
        Ok(t) => Box::new(move |at: DateTime<Utc>| {
            let ms = at.timestamp_millis();
            t.local(ms - ms.rem_euclid(1000))
        }),
        Err(_) => Box::new(utc),
    }
}

#[cfg(test)]
mod tests;
