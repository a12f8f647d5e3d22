-- A hit never hands a role rows it could not have read itself.
CREATE ROLE regress_stampede_reader;
CREATE ROLE regress_stampede_alice;
CREATE ROLE regress_stampede_bob;
GRANT USAGE ON SCHEMA public TO regress_stampede_reader, regress_stampede_alice, regress_stampede_bob;
GRANT SELECT ON items TO regress_stampede_reader;
GRANT USAGE, SELECT ON SEQUENCE runs TO regress_stampede_reader, regress_stampede_alice, regress_stampede_bob;

CREATE TABLE secrets (id int, code text, note text);
INSERT INTO secrets VALUES (1, 'alpha', 'public note'), (2, 'bravo', 'another');

-- Filled by a superuser; the reader may not read secrets: the same error
-- running the query would raise.
SELECT count(*) FROM stampede_cached('sec:all', 'SELECT id, code FROM secrets', '5 minutes') AS t(id int, code text);
SET ROLE regress_stampede_reader;
SELECT err($$SELECT * FROM stampede_cached('sec:all', 'SELECT id, code FROM secrets', '5 minutes') AS t(id int, code text)$$);
SELECT err($$SELECT stampede_cached_jsonb('sec:all', 'SELECT id, code FROM secrets', '5 minutes')$$);
RESET ROLE;

-- Column privileges: the columns the query read are the ones checked.
GRANT SELECT (id, note) ON secrets TO regress_stampede_reader;
SELECT count(*) FROM stampede_cached('sec:notes', 'SELECT id, note FROM secrets', '5 minutes') AS t(id int, note text);
SELECT count(*) FROM stampede_cached('sec:codes', 'SELECT id FROM secrets WHERE code IS NOT NULL', '5 minutes') AS t(id int);
SET ROLE regress_stampede_reader;
SELECT * FROM stampede_cached('sec:notes', 'SELECT id, note FROM secrets', '5 minutes') AS t(id int, note text) ORDER BY id;
SELECT err($$SELECT * FROM stampede_cached('sec:codes', 'SELECT id FROM secrets WHERE code IS NOT NULL', '5 minutes') AS t(id int)$$);
RESET ROLE;

-- A view is checked as the view, and what it reads as its owner.
CREATE VIEW secret_ids AS SELECT id FROM secrets;
GRANT SELECT ON secret_ids TO regress_stampede_reader;
SELECT count(*) FROM stampede_cached('sec:view', 'SELECT id FROM secret_ids', '5 minutes') AS t(id int);
SET ROLE regress_stampede_reader;
SELECT count(*) FROM stampede_cached('sec:view', 'SELECT id FROM secret_ids', '5 minutes') AS t(id int);
RESET ROLE;
REVOKE SELECT ON secret_ids FROM regress_stampede_reader;
SET ROLE regress_stampede_reader;
SELECT err($$SELECT * FROM stampede_cached('sec:view', 'SELECT id FROM secret_ids', '5 minutes') AS t(id int)$$);
RESET ROLE;

-- Functions the query calls need EXECUTE for whoever gets the hit.
CREATE FUNCTION classified(int) RETURNS int LANGUAGE sql SECURITY DEFINER AS 'SELECT $1 * 2';
REVOKE EXECUTE ON FUNCTION classified(int) FROM PUBLIC;
SELECT * FROM stampede_cached('sec:func', 'SELECT classified(id) AS c FROM items WHERE id = 1', '5 minutes') AS t(c int);
SET ROLE regress_stampede_reader;
SELECT err($$SELECT * FROM stampede_cached('sec:func', 'SELECT classified(id) AS c FROM items WHERE id = 1', '5 minutes') AS t(c int)$$);
RESET ROLE;

-- Row-level security: each role gets its own rows, kept per role.
CREATE TABLE notes (owner name, body text);
INSERT INTO notes VALUES ('regress_stampede_alice', 'alice 1'), ('regress_stampede_alice', 'alice 2'),
                         ('regress_stampede_bob', 'bob 1');
ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_notes ON notes USING (owner = current_user);
GRANT SELECT ON notes TO regress_stampede_alice, regress_stampede_bob;
SET ROLE regress_stampede_alice;
SELECT * FROM stampede_cached('sec:notes-rls', 'SELECT body, nextval($$runs$$) > 0 AS ran FROM notes ORDER BY body',
    '5 minutes') AS t(body text, ran bool);
SET ROLE regress_stampede_bob;
SELECT * FROM stampede_cached('sec:notes-rls', 'SELECT body, nextval($$runs$$) > 0 AS ran FROM notes ORDER BY body',
    '5 minutes') AS t(body text, ran bool);
SET ROLE regress_stampede_alice;
SELECT last_value AS runs_before FROM runs \gset
SELECT * FROM stampede_cached('sec:notes-rls', 'SELECT body, nextval($$runs$$) > 0 AS ran FROM notes ORDER BY body',
    '5 minutes') AS t(body text, ran bool);
SELECT last_value = :runs_before AS alice_hit FROM runs;
RESET ROLE;
SELECT stampede_invalidate('sec:notes-rls');
SET ROLE regress_stampede_bob;
SELECT last_value AS runs_before FROM runs \gset
SELECT * FROM stampede_cached('sec:notes-rls', 'SELECT body, nextval($$runs$$) > 0 AS ran FROM notes ORDER BY body',
    '5 minutes') AS t(body text, ran bool);
SELECT last_value > :runs_before AS bob_ran_again FROM runs;
RESET ROLE;

-- A function that answers differently by role keeps its rows per role too.
SET ROLE regress_stampede_alice;
SELECT * FROM stampede_cached('sec:whoami', 'SELECT current_user::text AS who', '5 minutes') AS t(who text);
SET ROLE regress_stampede_bob;
SELECT * FROM stampede_cached('sec:whoami', 'SELECT current_user::text AS who', '5 minutes') AS t(who text);
RESET ROLE;

-- Who may invalidate: whoever may execute stampede_invalidate (PUBLIC by
-- default; it costs a refill, never wrong rows), which a DBA can restrict.
REVOKE EXECUTE ON FUNCTION stampede_invalidate(text) FROM PUBLIC;
SET ROLE regress_stampede_reader;
SELECT err($$SELECT stampede_invalidate('sec:notes')$$);
RESET ROLE;
GRANT EXECUTE ON FUNCTION stampede_invalidate(text) TO PUBLIC;
SET ROLE regress_stampede_reader;
SELECT err($$SELECT stampede_invalidate('sec:notes')$$);
RESET ROLE;

-- The secret that seals entries in Valkey is never shown, not even to the
-- roles that may read every setting, and may not be set where every user
-- can read it back (per role, per database, in a function).
SET stampede.valkey_secret = 'sec-s3cret';
SHOW stampede.valkey_secret;
SELECT current_setting('stampede.valkey_secret');
GRANT pg_read_all_settings TO regress_stampede_reader;
SET ROLE regress_stampede_reader;
SHOW stampede.valkey_secret;
SELECT count(*) FROM pg_settings WHERE name = 'stampede.valkey_secret';
SELECT err($$SET stampede.valkey_secret = 'mine'$$);
RESET ROLE;
REVOKE pg_read_all_settings FROM regress_stampede_reader;
SELECT err($$ALTER ROLE regress_stampede_reader SET stampede.valkey_secret = 'x'$$);
SELECT err($$ALTER DATABASE contrib_regression SET stampede.valkey_secret = 'x'$$);
SELECT err($$CREATE FUNCTION sec_f() RETURNS int LANGUAGE sql SET stampede.valkey_secret = 'x' AS 'SELECT 1'$$);
RESET stampede.valkey_secret;
SHOW stampede.valkey_secret;

DROP POLICY own_notes ON notes;
DROP TABLE notes, secrets CASCADE;
DROP FUNCTION classified(int);
REVOKE ALL ON items FROM regress_stampede_reader;
REVOKE ALL ON SEQUENCE runs FROM regress_stampede_reader, regress_stampede_alice, regress_stampede_bob;
REVOKE ALL ON SCHEMA public FROM regress_stampede_reader, regress_stampede_alice, regress_stampede_bob;
DROP ROLE regress_stampede_reader, regress_stampede_alice, regress_stampede_bob;
