use super::*;

#[test]
fn codes_map_to_causes() {
    assert_eq!(Cause::of_code(13), Some(Cause::DiskFull));
    // SQLITE_IOERR_WRITE (778) and SQLITE_IOERR_FSYNC (1034).
    assert_eq!(Cause::of_code(778), Some(Cause::Io));
    assert_eq!(Cause::of_code(1034), Some(Cause::Io));
    // SQLITE_READONLY_DBMOVED (1032).
    assert_eq!(Cause::of_code(1032), Some(Cause::ReadOnly));
    assert_eq!(Cause::of_code(14), Some(Cause::CannotOpen));
    assert_eq!(Cause::of_code(11), Some(Cause::Corrupt));
    // Constraint violations and busy are the request's or the moment's.
    assert_eq!(Cause::of_code(2067), None);
    assert_eq!(Cause::of_code(5), None);
}
