//! The restore statement and the MOVE plan.
use super::*;

fn file(logical: &str, physical: &str, kind: &str) -> BackupFile {
    BackupFile {
        logical: logical.into(),
        physical: physical.into(),
        kind: kind.into(),
    }
}

#[test]
fn the_statement_binds_every_name_and_asks_replace_only_when_told() {
    assert_eq!(
        restore_statement(2, false),
        "RESTORE DATABASE @P1 FROM DISK = @P2 WITH CHECKSUM, STATS = 5, MOVE @P3 TO @P4, MOVE @P5 TO @P6"
    );
    assert!(restore_statement(1, true).ends_with("MOVE @P3 TO @P4, REPLACE"));
    assert_eq!(drop_statement("a]b"), "DROP DATABASE IF EXISTS [a]]b]");
    assert!(figures_statement("copy").contains("[copy].sys.partitions"));
}

#[test]
fn files_move_to_the_instance_paths_under_new_names() {
    let files = [
        file("shop", "C:\\Data\\shop.mdf", "D"),
        file("shop_log", "C:\\Logs\\shop_log.ldf", "L"),
        file("shop 2/../x", "C:\\Data\\shop2.ndf", "D"),
        file("fs", "C:\\Data\\fs", "S"),
    ];
    let moves = plan_moves(
        &files,
        "copy",
        Some("D:\\SQL\\Data\\"),
        Some("E:\\SQL\\Log"),
    );
    let physical: Vec<&str> = moves.iter().map(|m| m.physical.as_str()).collect();
    assert_eq!(
        physical,
        [
            "D:\\SQL\\Data\\copy_0_shop.mdf",
            "E:\\SQL\\Log\\copy_1_shop_log.ldf",
            "D:\\SQL\\Data\\copy_2_shop_2____x.ndf",
            "D:\\SQL\\Data\\copy_3_fs",
        ]
    );
    assert_eq!(
        moves[2].logical, "shop 2/../x",
        "logical names as in the backup"
    );
    // Unknown instance paths: beside the source's files (Linux paths too).
    let linux = [
        file("shop", "/var/opt/mssql/data/shop.mdf", "D"),
        file("shop_log", "/var/opt/mssql/log/shop_log.ldf", "L"),
    ];
    let moves = plan_moves(&linux, "copy", None, Some(""));
    assert_eq!(moves[0].physical, "/var/opt/mssql/data/copy_0_shop.mdf");
    assert_eq!(moves[1].physical, "/var/opt/mssql/log/copy_1_shop_log.ldf");
}
