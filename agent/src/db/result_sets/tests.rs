use super::*;

fn names() -> Vec<String> {
    vec!["a".into()]
}

#[test]
fn row_bound_truncates_the_set() {
    let mut s = ResultSets::new(Limits {
        max_rows: 1,
        ..Limits::default()
    });
    s.begin(names(), || vec!["int"]);
    s.push(|| vec![json!(1)]);
    s.push(|| vec![json!(2)]);
    assert!(s.truncated());
    assert_eq!(
        s.to_json(),
        json!([{"columns": ["a"], "types": ["int"], "rows": [[1]], "truncated": true}])
    );
}

#[test]
fn byte_bound_omits_later_sets_without_making_their_cells() {
    let mut s = ResultSets::new(Limits {
        max_bytes: 80,
        ..Limits::default()
    });
    s.begin(names(), || vec!["int"]);
    s.push(|| vec![json!("x".repeat(100))]);
    s.begin(names(), || vec!["int"]);
    s.push(|| panic!("cells of an omitted set are not made"));
    assert_eq!(s.omitted(), 1);
    assert!(s.truncated());
    assert_eq!(s.to_json()[0]["rows"], json!([]));
}
