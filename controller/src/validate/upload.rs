//! Checks of an `upload` spec (`baton_proto::upload`): the store's name,
//! the file (the agent decides whether it is under its dump or backup
//! directories), the key template and the retention.

use baton_proto::upload::{UploadSpec, check_template};
use baton_proto::valid_name;

use super::{Error, err, rule};

/// Longest `spec.file`.
const MAX_FILE: usize = 4096;

/// Check an upload spec, naming the field at fault.
pub(super) fn check(u: &UploadSpec) -> Result<(), Error> {
    if !valid_name(&u.store) {
        return Err(err("spec.store", "must be a valid name"));
    }
    if u.file.trim().is_empty() || u.file.len() > MAX_FILE || u.file.contains('\0') {
        return Err(rule(
            "spec.file",
            format!("must be a path of 1-{MAX_FILE} bytes without NUL"),
        ));
    }
    if let Some(t) = &u.key {
        check_template(t).map_err(|m| rule("spec.key", m))?;
    }
    if let Some(r) = &u.retention {
        if r.keep_last == Some(0) {
            return Err(err(
                "spec.retention.keep_last",
                "must be at least 1 (the object just written is always kept)",
            ));
        }
        if let Some(a) = &r.max_age {
            humantime::parse_duration(a)
                .map_err(|e| rule("spec.retention.max_age", format!("not a duration: {e}")))?;
        }
        if r.keep_last.is_none() && r.max_age.is_none() {
            return Err(rule(
                "spec.retention",
                "set keep_last, max_age or both (or leave retention out)",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
