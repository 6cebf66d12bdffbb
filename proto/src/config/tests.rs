use super::*;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Conf {
    slots: u32,
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    inner: Option<Inner>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Inner {
    name: String,
}

#[test]
fn wrong_type_names_key_and_line() {
    let src = "# comment\n\nslots = \"many\"\n";
    let e = parse_toml::<Conf>("/etc/baton/agent.toml", src).expect_err("must fail");
    assert_eq!(e.key, "slots");
    assert_eq!(e.line, Some(3));
    assert!(
        e.to_string()
            .contains("/etc/baton/agent.toml, line 3, key `slots`")
    );
}

#[test]
fn unknown_nested_key_names_line() {
    let src = "slots = 1\n[inner]\nname = \"x\"\ncolour = 1\n";
    let e = parse_toml::<Conf>("a.toml", src).expect_err("must fail");
    assert_eq!(e.line, Some(4), "{e}");
    assert!(e.key.starts_with("inner"), "{e}");
}

#[test]
fn syntax_error_has_line() {
    let e = parse_toml::<Conf>("a.toml", "slots = 1\nallow = [\n").expect_err("must fail");
    assert!(e.line.is_some());
}

#[test]
fn key_lookup() {
    let src = "slots = 1\nallow = [\n  \"a\",\n  \"b\",\n]\n[inner]\nname = \"x\"\n";
    assert_eq!(line_of_key(src, "slots"), Some(1));
    assert_eq!(line_of_key(src, "allow[1]"), Some(4));
    assert_eq!(line_of_key(src, "inner.name"), Some(7));
    assert_eq!(line_of_key(src, "missing"), None);
}

#[test]
fn log_format_parses_from_toml_and_text_and_names_a_bad_value() {
    #[derive(Debug, Deserialize)]
    struct F {
        log_format: Option<LogFormat>,
    }
    let f: F = parse_toml("a.toml", "log_format = \"json\"\n").expect("json");
    assert_eq!(f.log_format, Some(LogFormat::Json));
    let e = parse_toml::<F>("a.toml", "\nlog_format = \"xml\"\n").expect_err("xml");
    assert_eq!((e.key.as_str(), e.line), ("log_format", Some(2)));
    assert!(
        e.message.contains("`text`") && e.message.contains("`json`"),
        "{e}"
    );
    assert_eq!("text".parse::<LogFormat>(), Ok(LogFormat::Text));
    assert_eq!(" json ".parse::<LogFormat>(), Ok(LogFormat::Json));
    let bad = "JSON".parse::<LogFormat>().expect_err("case matters");
    assert!(bad.contains("\"text\" or \"json\""), "{bad}");
    assert_eq!(LogFormat::default(), LogFormat::Text);
    assert_eq!(LogFormat::Json.to_string(), "json");
}
