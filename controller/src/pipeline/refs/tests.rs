use super::*;

fn r(step: &str, path: Path, raw: &str) -> Piece {
    Piece::Ref(Reference {
        raw: raw.into(),
        step: step.into(),
        path,
    })
}

#[test]
fn text_and_references_are_cut_apart() {
    assert_eq!(
        parse("--file=${steps.dump.result.file} -n ${steps.check.data.out.p_count}"),
        Ok(vec![
            Piece::Text("--file=".into()),
            r("dump", Path::File, "${steps.dump.result.file}"),
            Piece::Text(" -n ".into()),
            r(
                "check",
                Path::Data(vec!["out".into(), "p_count".into()]),
                "${steps.check.data.out.p_count}"
            ),
        ])
    );
    assert_eq!(parse(""), Ok(vec![]));
    assert_eq!(parse("plain"), Ok(vec![Piece::Text("plain".into())]));
}

#[test]
fn every_path_parses() {
    for (text, path) in [
        ("result.exit_code", Path::ExitCode),
        ("result.stdout", Path::Stdout),
        ("result.stderr", Path::Stderr),
        ("result.file", Path::File),
        ("result.manifest", Path::Manifest),
        ("agent", Path::Agent),
        ("job_id", Path::JobId),
        (
            "data.x.0.y",
            Path::Data(vec!["x".into(), "0".into(), "y".into()]),
        ),
    ] {
        let raw = format!("${{steps.s.{text}}}");
        assert_eq!(parse(&raw), Ok(vec![r("s", path, &raw)]), "{text}");
    }
}

#[test]
fn a_step_name_may_hold_dots() {
    let raw = "${steps.db.nightly-1.result.file}";
    assert_eq!(parse(raw), Ok(vec![r("db.nightly-1", Path::File, raw)]));
}

#[test]
fn dollar_escapes() {
    assert_eq!(
        parse("$${x} $$ $5 $"),
        Ok(vec![Piece::Text("${x} $$ $5 $".into())])
    );
    assert_eq!(
        parse("$$${steps.a.agent}"),
        Ok(vec![Piece::Text("$${steps.a.agent}".into())]),
        "a lone `$`, then `$${{`: both literal"
    );
}

#[test]
fn malformed_references() {
    for (text, why) in [
        ("${", "unclosed"),
        ("${steps.a.agent", "unclosed"),
        ("${}", "${steps.<step>.<path>}"),
        ("${env.HOME}", "${steps.<step>.<path>}"),
        ("${steps.a}", "no path"),
        ("${steps.agent}", "no path"),
        ("${steps.a.result}", "unknown path"),
        ("${steps.a.agent.x}", "unknown path"),
        ("${steps.a.job_id.x}", "unknown path"),
        ("${steps.a b.agent}", "not a name"),
    ] {
        let e = parse(text).expect_err(text);
        assert!(e.contains(why), "{text}: {e}");
    }
}

#[test]
fn plain_fields_refuse_only_step_references() {
    assert!(names_a_step("SELECT '${steps.a.agent}'"));
    assert!(!names_a_step("SELECT '${x}'"));
}

#[test]
fn an_export_step_offers_its_file_manifest_and_data() {
    let spec = JobSpec::Export(baton_proto::ExportSpec {
        connection: "shop".into(),
        query: "SELECT 1".into(),
        params: vec![ParamValue::Date("${steps.day.result.stdout}".into())],
        format: Default::default(),
        compression: Default::default(),
        prefix: None,
    });
    assert_eq!(check_path(&Path::File, &spec), Ok(()));
    assert_eq!(check_path(&Path::Manifest, &spec), Ok(()));
    assert_eq!(check_path(&Path::Data(vec!["rows".into()]), &spec), Ok(()));
    assert_eq!(
        check_path(&Path::Data(vec!["sha256".into()]), &spec),
        Ok(())
    );
    let e = check_path(&Path::Data(vec!["nope".into()]), &spec).expect_err("unknown");
    assert!(e.contains("export"), "{e}");
    assert!(check_path(&Path::Stdout, &spec).is_err());
    // Parameter values take references; the query never does.
    let mut seen = Vec::new();
    let mut spec = spec;
    each_string::<()>(&mut spec, &mut |field, slot, _| {
        seen.push((field.to_owned(), slot));
        Ok(())
    })
    .expect("walk");
    assert!(seen.contains(&("spec.params[0]".to_owned(), Slot::Templated)));
    assert!(seen.contains(&("spec.query".to_owned(), Slot::Plain(SQL))));
}
