use super::*;

#[test]
fn backup_statement_follows_the_contract() {
    assert_eq!(
        backup_statement(false),
        "BACKUP DATABASE @P1 TO DISK = @P2 WITH CHECKSUM, COPY_ONLY, INIT, STATS = 5"
    );
    assert_eq!(
        backup_statement(true),
        "BACKUP DATABASE @P1 TO DISK = @P2 WITH CHECKSUM, COPY_ONLY, INIT, STATS = 5, \
             COMPRESSION"
    );
    assert_eq!(
        SERVER_INFO,
        "SELECT CAST(SERVERPROPERTY('ProductVersion') AS nvarchar(128)) AS product_version, \
             CAST(SERVERPROPERTY('Edition') AS nvarchar(128)) AS edition, @@VERSION AS banner"
    );
}
