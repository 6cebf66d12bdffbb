//! Reading the tool's and the client's stderr: which lines are errors, which
//! server error codes they carry, and whether a retry may help.

/// Server/client error codes a retry will not fix: privileges, unknown
/// database, bad credentials, invalid definer or view, syntax.
const FATAL_CODES: [u32; 11] = [
    1044, // access denied to database
    1045, // access denied (credentials)
    1049, // unknown database
    1064, // syntax error
    1142, // command denied for table
    1143, // command denied for column
    1227, // needs a privilege (SUPER, ...)
    1356, // view references invalid tables or definer
    1370, // command denied for routine
    1449, // definer does not exist
    1698, // access denied (no password / socket auth)
];

/// `ERROR 1142`: a command denied on a table (e.g. `SELECT` on `mysql.proc`).
pub(crate) const COMMAND_DENIED: u32 = 1142;

/// The grant that lets a login read every routine's body (MariaDB).
pub(crate) fn proc_grant(account: Option<&str>) -> String {
    format!(
        "GRANT SELECT ON mysql.proc TO {}",
        account.map_or_else(|| "<the dump login>".to_owned(), quote_account)
    )
}

/// `user@host` (as `CURRENT_USER()` prints it) as `'user'@'host'`.
fn quote_account(account: &str) -> String {
    match account.rsplit_once('@') {
        Some((user, host)) => format!("'{user}'@'{host}'"),
        None => format!("'{account}'"),
    }
}

/// What to grant when the tool's stderr shows a known privilege gap, as a
/// suffix for its failure message (empty when nothing is known).
/// `insufficient privileges to SHOW CREATE FUNCTION|PROCEDURE` (MariaDB
/// 10.11, exit 2): the login may see a routine of another definer but not
/// its body, which needs `SELECT ON mysql.proc`.
pub(crate) fn hint(stderr: &str, account: Option<&str>) -> String {
    if stderr.contains("insufficient privileges to SHOW CREATE") {
        format!(
            " — routines of another definer need {} (see README: dump grants)",
            proc_grant(account)
        )
    } else {
        String::new()
    }
}

/// Whether a stderr line reports an error: it names an error (`error`,
/// `insufficient privileges`, `couldn't execute`) before any `warning`.
pub(crate) fn is_error_line(line: &str) -> bool {
    let lower = line.to_ascii_lowercase();
    let error = ["error", "insufficient privileges", "couldn't execute"]
        .iter()
        .filter_map(|k| lower.find(k))
        .min();
    match (error, lower.find("warning")) {
        (Some(e), Some(w)) => e < w,
        (e, _) => e.is_some(),
    }
}

/// The error lines of `stderr`.
pub(crate) fn error_lines(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| is_error_line(l)).collect()
}

/// Error codes found in `text`: `ERROR 1142 (42000)`, `Got error: 2002:`,
/// `Error 1412:` and a trailing `(1142)`.
pub(crate) fn error_codes(text: &str) -> Vec<u32> {
    let mut codes = Vec::new();
    for line in text.lines() {
        for key in ["ERROR ", "Got error: ", "Error: ", "Error "] {
            let mut rest = line;
            while let Some(i) = rest.find(key) {
                rest = &rest[i + key.len()..];
                if let Some(code) = leading_number(rest) {
                    codes.push(code);
                }
            }
        }
        let t = line.trim_end();
        if let Some(inner) = t
            .strip_suffix(')')
            .and_then(|t| t.rsplit_once('('))
            .map(|(_, c)| c)
            && let Ok(code) = inner.parse::<u32>()
        {
            codes.push(code);
        }
    }
    codes.sort_unstable();
    codes.dedup();
    codes
}

fn leading_number(s: &str) -> Option<u32> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    if !(4..=5).contains(&end) {
        return None;
    }
    s[..end].parse().ok()
}

/// Whether the failure told by `text` may pass on a retry: privilege and
/// similar errors will not; connection trouble, lock waits and anything
/// unknown may.
pub(crate) fn retryable(text: &str) -> bool {
    if text
        .to_ascii_lowercase()
        .contains("insufficient privileges")
    {
        return false;
    }
    !error_codes(text).iter().any(|c| FATAL_CODES.contains(c))
}

/// The message for a failure: the error lines (else the last lines),
/// bounded to about 2 KiB.
pub(crate) fn summary(stderr: &str) -> String {
    let lines = error_lines(stderr);
    let text = if lines.is_empty() {
        let all: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        all[all.len().saturating_sub(3)..].join("; ")
    } else {
        lines.join("; ")
    };
    let text = text.trim();
    if text.len() <= 2048 {
        return text.to_owned();
    }
    let mut cut = 2048;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &text[..cut])
}

#[cfg(test)]
mod tests;
