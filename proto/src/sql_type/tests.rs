use super::*;

#[test]
fn accepted_types_parse_and_print() {
    let cases = [
        ("int", SqlType::Int),
        (" BigInt ", SqlType::BigInt),
        (
            "decimal(10, 2)",
            SqlType::Decimal {
                precision: 10,
                scale: 2,
            },
        ),
        (
            "numeric",
            SqlType::Decimal {
                precision: 18,
                scale: 0,
            },
        ),
        (
            "numeric(5)",
            SqlType::Decimal {
                precision: 5,
                scale: 0,
            },
        ),
        ("nvarchar(max)", SqlType::NVarChar(None)),
        ("NVARCHAR(40)", SqlType::NVarChar(Some(40))),
        ("varchar(8000)", SqlType::VarChar(Some(8000))),
        ("varbinary(max)", SqlType::VarBinary(None)),
        ("time", SqlType::Time(7)),
        ("datetime2(3)", SqlType::DateTime2(3)),
        ("datetime", SqlType::DateTime),
        ("uniqueidentifier", SqlType::UniqueIdentifier),
    ];
    for (text, want) in cases {
        assert_eq!(SqlType::parse(text), Ok(want), "{text}");
        assert_eq!(SqlType::parse(&want.to_string()), Ok(want), "{want}");
    }
}

#[test]
fn refused_types_say_why() {
    for bad in [
        "",
        "text",
        "int(4)",
        "nvarchar",
        "nvarchar(4001)",
        "nvarchar(0)",
        "varbinary(9000)",
        "decimal(39,2)",
        "decimal(5,6)",
        "datetime2(8)",
        "int; DROP TABLE t",
        "nvarchar(10",
        "sql_variant",
    ] {
        let e = SqlType::parse(bad).expect_err(bad);
        assert!(e.contains(&format!("{bad:?}")), "{bad}: {e}");
    }
    assert!(
        SqlType::parse("money")
            .expect_err("money")
            .contains("supported: bit, tinyint")
    );
}
