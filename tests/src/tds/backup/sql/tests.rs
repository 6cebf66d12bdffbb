use super::*;

const CONTRACT: &str =
    "BACKUP DATABASE @P1 TO DISK = @P2 WITH CHECKSUM, COPY_ONLY, INIT, STATS = 5, COMPRESSION";

#[test]
fn the_contract_backup_statement_parses() {
    let s = parse_backup(CONTRACT).expect("parses");
    assert_eq!(s.database, Arg::Var("@P1".into()));
    assert_eq!(s.disks, vec![Arg::Var("@P2".into())]);
    let names: Vec<String> = s.options.iter().map(Opt::display).collect();
    assert_eq!(
        names,
        ["CHECKSUM", "COPY_ONLY", "INIT", "STATS = 5", "COMPRESSION"]
    );
    assert_eq!(stats(&s.options, &[]), Some(5));
    let lit =
        parse_backup("backup database [my db] to disk = N'C:\\b\\x''y.bak';").expect("literals");
    assert_eq!(lit.database, Arg::Ident("my db".into()));
    assert_eq!(lit.disks, vec![Arg::Str("C:\\b\\x'y.bak".into())]);
    assert!(lit.options.is_empty());
}

#[test]
fn sql_server_errors_for_bad_statements() {
    let num = |t: &str| parse_backup(t).expect_err(t).number;
    assert_eq!(num("BACKUP DATABASE @P1 TO DISK @P2"), 102);
    assert_eq!(num("BACKUP DATABASE @P1 TO DISK = @P2 WITH FASTER"), 155);
    assert_eq!(
        num("BACKUP DATABASE @P1 TO DISK = @P2 WITH INIT, NOINIT"),
        3031
    );
    assert_eq!(num("BACKUP DATABASE @P1 TO DISK = N'x WITH INIT"), 105);
    assert_eq!(num("BACKUP DATABASE @P1 TO DISK = @P2 WITH NAME"), 102);
    let verify = parse_verify("RESTORE VERIFYONLY FROM DISK = @P1 WITH CHECKSUM").expect("ok");
    assert_eq!(verify.disks, vec![Arg::Var("@P1".into())]);
    let err = parse_verify("RESTORE VERIFYONLY FROM DISK = @P1 WITH COPY_ONLY")
        .expect_err("not a restore option");
    assert_eq!(err.number, 155);
    assert_eq!(
        err.message,
        "'COPY_ONLY' is not a recognized RESTORE option."
    );
}

#[test]
fn selects_with_one_filter_parse() {
    let s =
        parse_select("SELECT percent_complete FROM sys.dm_exec_requests WHERE session_id = @P1")
            .expect("parses");
    assert_eq!(s.columns, ["percent_complete"]);
    assert_eq!(s.table, "sys.dm_exec_requests");
    assert_eq!(s.filter_column, "session_id");
    assert_eq!(s.filter, Arg::Var("@P1".into()));
    assert!(parse_select("SELECT a FROM t WHERE b > 1").is_none());
    let args = [Param {
        name: "@P1".into(),
        ty: super::super::super::types::SqlType::Int,
        value: Value::Int(52),
        output: false,
    }];
    assert_eq!(s.filter.resolve(&args).expect("bound"), Value::Int(52));
    assert_eq!(
        Arg::Var("@P2".into())
            .resolve(&args)
            .expect_err("undeclared")
            .number,
        137
    );
}
