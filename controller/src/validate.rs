//! Validation of job submissions: every refusal names the field at fault.

use baton_proto::{JobSpec, JobSubmit, SqlType, limits, valid_name};

/// A refused field: `(dotted field path, message)`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Error {
    /// Dotted path of the field.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

fn err(field: &str, message: impl Into<String>) -> Error {
    Error {
        field: field.to_owned(),
        message: message.into(),
    }
}

/// Check a list of worker groups (`groups`, `groups[i]` named on error).
pub fn groups(groups: &[String]) -> Result<(), Error> {
    if groups.is_empty() {
        return Err(err("groups", "at least one group"));
    }
    match groups.iter().position(|g| !valid_name(g)) {
        Some(i) => Err(err(
            &format!("groups[{i}]"),
            "must be 1-128 characters of A-Z a-z 0-9 _ . -",
        )),
        None => Ok(()),
    }
}

/// Check a submission; returns the effective lease TTL.
pub fn submission(s: &JobSubmit, default_ttl_ms: u64) -> Result<u64, Error> {
    if !valid_name(&s.group) {
        return Err(err(
            "group",
            "must be 1-128 characters of A-Z a-z 0-9 _ . -",
        ));
    }
    let ttl = s.lease_ttl_ms.unwrap_or(default_ttl_ms);
    if ttl < limits::MIN_LEASE_TTL_MS {
        return Err(err("lease_ttl_ms", "must be at least 2000 (2 s)"));
    }
    if ttl > limits::MAX_LEASE_TTL_MS {
        return Err(err("lease_ttl_ms", "must be at most 3600000 (1 h)"));
    }
    if s.timeout_ms == Some(0) {
        return Err(err("timeout_ms", "must be positive"));
    }
    let r = &s.retry;
    if r.max_attempts == 0 || r.max_attempts > limits::MAX_ATTEMPTS {
        return Err(err("retry.max_attempts", "must be between 1 and 100"));
    }
    if !(1.0..=10.0).contains(&r.multiplier) {
        return Err(err("retry.multiplier", "must be between 1 and 10"));
    }
    if !(0.0..=1.0).contains(&r.jitter) {
        return Err(err("retry.jitter", "must be between 0 and 1"));
    }
    if r.initial_backoff_ms > r.max_backoff_ms {
        return Err(err(
            "retry.initial_backoff_ms",
            "must not exceed retry.max_backoff_ms",
        ));
    }
    for (k, v) in &s.labels {
        if !valid_name(k) {
            return Err(err(
                &format!("labels.{k}"),
                "label keys must be valid names",
            ));
        }
        if v.len() > 256 {
            return Err(err(
                &format!("labels.{k}"),
                "label values are at most 256 bytes",
            ));
        }
    }
    match &s.spec {
        JobSpec::Command(c) => {
            if c.program.trim().is_empty() {
                return Err(err("spec.program", "must not be empty"));
            }
            if c.program.contains('\0') || c.args.iter().any(|a| a.contains('\0')) {
                return Err(err("spec.args", "must not contain NUL bytes"));
            }
            for k in c.env.keys() {
                if k.is_empty() || k.contains('=') || k.contains('\0') {
                    return Err(err(&format!("spec.env.{k}"), "invalid variable name"));
                }
            }
        }
        JobSpec::Procedure(p) => {
            if !valid_routine_name(&p.procedure) {
                return Err(err(
                    "spec.procedure",
                    "must be `name`, `schema.name` or `database.schema.name`, each part 1-128 \
                     characters of A-Z a-z 0-9 _ @ # $",
                ));
            }
            let mut seen = std::collections::BTreeSet::new();
            for (i, param) in p.params.iter().enumerate() {
                if !valid_param_name(&param.name) {
                    return Err(err(
                        &format!("spec.params[{i}].name"),
                        "must be 1-127 characters of A-Z a-z 0-9 _",
                    ));
                }
                if !seen.insert(param.name.to_ascii_lowercase()) {
                    return Err(err(
                        &format!("spec.params[{i}].name"),
                        format!(
                            "{:?} is given twice (names are case-insensitive)",
                            param.name
                        ),
                    ));
                }
                if let Some(t) = &param.sql_type
                    && let Err(e) = SqlType::parse(t)
                {
                    return Err(err(&format!("spec.params[{i}].sql_type"), e));
                }
            }
        }
        JobSpec::Sql(q) => {
            if q.sql.trim().is_empty() {
                return Err(err("spec.sql", "must not be empty"));
            }
        }
        JobSpec::Dump(d) => {
            if !valid_name(&d.database) {
                return Err(err("spec.database", "must be a valid name"));
            }
        }
        JobSpec::Noop(n) => {
            if n.sleep_ms > 86_400_000 {
                return Err(err("spec.sleep_ms", "must be at most one day"));
            }
        }
    }
    if let Some(c) = s.spec.connection()
        && !valid_name(c)
    {
        return Err(err("spec.connection", "must be a valid name"));
    }
    Ok(ttl)
}

/// `name`, `schema.name` or `database.schema.name` (SQL Server's three-part
/// names), each part 1-128 characters of `[A-Za-z0-9_@#$]`. The controller
/// does not know the connection's engine: each agent executor applies its
/// engine's stricter rule (MySQL: at most two parts of 1-64 `[A-Za-z0-9_$]`).
pub fn valid_routine_name(name: &str) -> bool {
    let parts: Vec<&str> = name.split('.').collect();
    parts.len() <= 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.len() <= 128
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'@' | b'#' | b'$'))
        })
}

/// A parameter name: 1-127 characters of `[A-Za-z0-9_]` (sent as `@name` on
/// SQL Server; MySQL's executor allows 64).
pub fn valid_param_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 127
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_proto::{
        CommandSpec, NoopSpec, ParamMode, ParamValue, ProcedureParam, ProcedureSpec, RetryPolicy,
    };

    fn base() -> JobSubmit {
        JobSubmit {
            group: "g".into(),
            spec: JobSpec::Noop(NoopSpec::default()),
            priority: 0,
            retry: RetryPolicy::default(),
            timeout_ms: None,
            lease_ttl_ms: None,
            labels: Default::default(),
        }
    }

    #[test]
    fn routine_names() {
        assert!(valid_routine_name("nightly"));
        assert!(valid_routine_name("app.nightly_$1"));
        assert!(valid_routine_name("shop.dbo.usp_close#2"));
        assert!(valid_routine_name(&"a".repeat(128)));
        assert!(!valid_routine_name("a.b.c.d"));
        assert!(!valid_routine_name("a..b"));
        assert!(!valid_routine_name("x`; DROP TABLE t; --"));
        assert!(!valid_routine_name("[dbo].[x]"));
        assert!(!valid_routine_name(""));
        assert!(!valid_routine_name(&"a".repeat(129)));
    }

    fn procedure(params: Vec<ProcedureParam>) -> JobSubmit {
        JobSubmit {
            spec: JobSpec::Procedure(ProcedureSpec {
                connection: "main".into(),
                procedure: "dbo.usp_x".into(),
                params,
                exactly_once: false,
            }),
            ..base()
        }
    }

    fn param(name: &str, sql_type: Option<&str>) -> ProcedureParam {
        ProcedureParam {
            name: name.into(),
            mode: ParamMode::In,
            value: ParamValue::Int(1),
            sql_type: sql_type.map(str::to_owned),
        }
    }

    #[test]
    fn procedure_params_and_sql_types_are_checked() {
        let ok = procedure(vec![
            param("id", Some("int")),
            param("amount", Some("decimal(10,2)")),
            param("note", Some("nvarchar(max)")),
            param(&"p".repeat(127), None),
        ]);
        assert_eq!(submission(&ok, 15_000), Ok(15_000));
        let field = |s: &JobSubmit| submission(s, 15_000).map_err(|e| e.field);
        let bad_type = procedure(vec![param("id", Some("int")), param("x", Some("text"))]);
        assert_eq!(field(&bad_type), Err("spec.params[1].sql_type".into()));
        let e = submission(&bad_type, 15_000).expect_err("text");
        assert!(e.message.contains("not a supported SQL type"), "{e}");
        let dup = procedure(vec![param("Id", None), param("id", None)]);
        assert_eq!(field(&dup), Err("spec.params[1].name".into()));
        let long = procedure(vec![param(&"p".repeat(128), None)]);
        assert_eq!(field(&long), Err("spec.params[0].name".into()));
        let at = procedure(vec![param("@id", None)]);
        assert_eq!(field(&at), Err("spec.params[0].name".into()));
        let mut four = procedure(vec![]);
        if let JobSpec::Procedure(p) = &mut four.spec {
            p.procedure = "srv.shop.dbo.usp_x".into();
        }
        assert_eq!(field(&four), Err("spec.procedure".into()));
    }

    #[test]
    fn fields_are_named() {
        assert_eq!(submission(&base(), 15_000), Ok(15_000));
        let mut s = base();
        s.lease_ttl_ms = Some(1999);
        assert_eq!(
            submission(&s, 15_000).map_err(|e| e.field),
            Err("lease_ttl_ms".into())
        );
        let mut s = base();
        s.group = "bad group".into();
        assert_eq!(
            submission(&s, 15_000).map_err(|e| e.field),
            Err("group".into())
        );
        let mut s = base();
        s.retry.max_attempts = 0;
        assert_eq!(
            submission(&s, 15_000).map_err(|e| e.field),
            Err("retry.max_attempts".into())
        );
        let mut s = base();
        s.spec = JobSpec::Command(CommandSpec::default());
        assert_eq!(
            submission(&s, 15_000).map_err(|e| e.field),
            Err("spec.program".into())
        );
    }
}
