//! PostgreSQL connection URLs, read as libpq reads them (pure; used by the
//! config check and by the store, `store::postgres::hosts`): several hosts
//! in one URL, `target_session_attrs`, and whether a password is inside.

/// One URL per host of a libpq-style multi-host URL
/// (`postgres://u@h1:1,h2:2/db?x` → `postgres://u@h1:1/db?x`, …), with
/// `target_session_attrs` removed (always read-write here).
pub fn split_hosts(url: &str) -> Result<Vec<String>, String> {
    let bad = |why: &str| why.to_owned();
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| bad("expected postgres://…"))?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (userinfo, hostlist) = match authority.rsplit_once('@') {
        Some((u, h)) => (format!("{u}@"), h),
        None => (String::new(), authority),
    };
    let tail = strip_param(tail, "target_session_attrs");
    let urls: Vec<String> = hostlist
        .split(',')
        .filter(|h| !h.is_empty())
        .map(|h| format!("{scheme}://{userinfo}{h}{tail}"))
        .collect();
    if urls.is_empty() {
        return Err(bad("no host"));
    }
    Ok(urls)
}

/// `tail` (`/db?a=1&b=2`) without the query parameter `name`.
fn strip_param(tail: &str, name: &str) -> String {
    let Some((path, query)) = tail.split_once('?') else {
        return tail.to_owned();
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|p| p.split('=').next() != Some(name) && !p.is_empty())
        .collect();
    if kept.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", kept.join("&"))
    }
}

/// Whether a `postgres://user:password@…` URL carries a password.
pub fn url_has_password(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    authority
        .rsplit_once('@')
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
        || url.contains("password=")
}

#[cfg(test)]
mod tests;
