-- Drills gain the method `controller_crash` (issue 17): the replica serving
-- a named agent aborts itself (ARCHITECTURE.md "Drills").
ALTER TABLE drills DROP CONSTRAINT drills_method_check;
ALTER TABLE drills ADD CONSTRAINT drills_method_check
    CHECK (method IN ('crash','freeze','partition','controller_crash'));
